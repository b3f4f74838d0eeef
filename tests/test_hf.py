"""ssa_theory.hf against transformers' own attention, on tiny random-weight models built offline.

The reference nobody here wrote: transformers' ``sdpa`` path. ``apply(model, "vanilla")`` must equal
it under left padding and grouped-query heads; every strategy at its neutral setting must leave the
logits as they were; off neutral, cached generation must equal a full recompute, and a batch of
left-padded prompts must equal each prompt alone."""

import copy
import functools
import importlib
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst

from ssa_theory import hf
from ssa_theory.variants import VARIANTS, get_variant

if importlib.util.find_spec("transformers") is None:
    pytest.skip("ssa_theory.hf needs the [hf] extra (transformers): pip install -e '.[hf]'", allow_module_level=True)

# transformers is imported by the first test that runs, not when the suite is collected (every test
# process collects every module), and the whole file runs in one test process
pytestmark = pytest.mark.xdist_group("hf")


class _Transformers:
    def __getattr__(self, name):
        return getattr(importlib.import_module("transformers"), name)


transformers = _Transformers()

ROOT = Path(__file__).resolve().parent.parent
V = 61  # vocabulary
TOL = 2e-5  # float32 logits of O(1) through 2 layers: the same arithmetic up to the order of a few sums


def _tiny(family: str, **overrides) -> torch.nn.Module:
    """A 2-layer random-weight model of ``family``, made from a config (no download), seeded locally."""
    # initializer_range 0.2 (transformers' default is 0.02): attention scores of order 1, so that a temperature
    # visibly moves the outputs and the cache and batching checks compare sharp attention, not uniform rows
    common = dict(vocab_size=V, num_hidden_layers=2, max_position_embeddings=64, pad_token_id=0, initializer_range=0.2)
    configs = {
        "llama": lambda: transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                  num_key_value_heads=2, **common),
        "mistral": lambda: transformers.MistralConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                      num_key_value_heads=1, **common),
        "qwen2": lambda: transformers.Qwen2Config(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                  num_key_value_heads=2, **common),
        "qwen3": lambda: transformers.Qwen3Config(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                  num_key_value_heads=2, head_dim=8, **common),
        "gpt2": lambda: transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, pad_token_id=0, bos_token_id=None, eos_token_id=None,
                                                initializer_range=0.2),
    }
    config = configs[family]()
    for k, v in overrides.items():
        setattr(config, k, v)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.eval()


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gpt2"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param, _tiny(request.param)


def _batch(pads=(2, 0, 3), length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (len(pads), length), generator=g)
    mask = torch.ones(len(pads), length, dtype=torch.long)
    for i, p in enumerate(pads):
        mask[i, :p] = 0
        ids[i, :p] = 0
    return ids, mask


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits


def _off_neutral(model, seed=0):
    """Every new parameter moved off its neutral value (a fixed draw), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ssa_temp." in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g).to(p.dtype))
    return model


def test_vanilla_equals_transformers_sdpa_under_left_padding(family):
    name, base = family
    ids, mask = _batch()
    ref = _logits(base, ids, mask)
    model = hf.apply(copy.deepcopy(base), "vanilla")
    assert model.config._attn_implementation == hf.NAME
    got = _logits(model, ids, mask)
    real = mask.bool()
    assert (got - ref)[real].abs().max() <= TOL, name


@settings(max_examples=25, deadline=None)
@given(pads=hst.lists(hst.integers(0, 4), min_size=1, max_size=5), length=hst.integers(1, 6), seed=hst.integers(0, 9))
def test_vanilla_equals_sdpa_for_any_padding_and_batch(pads, length, seed):
    """Llama with grouped heads; batch sizes and lengths of every kind, B == L among them."""
    pads = [min(p, length - 1) for p in pads]
    ids, mask = _batch(pads, length, seed)
    real = mask.bool()
    assert (_logits(_llama_vanilla(), ids, mask) - _logits(_llama(), ids, mask))[real].abs().max() <= TOL


@functools.cache
def _llama():
    return _tiny("llama")


@functools.cache
def _llama_vanilla():
    return hf.apply(copy.deepcopy(_llama()), "vanilla")

NEUTRAL = [v for v in VARIANTS if all(s.neutral is not None and not (s.needs - {"train_length"})
                                      for _, s, _ in get_variant(v).placements())]


def test_the_neutral_list_is_every_variant_but_those_without_a_neutral_setting():
    assert set(VARIANTS) - set(NEUTRAL) == {"log_n", "ssmax", "asentmax", "freq"}


@pytest.mark.parametrize("variant", NEUTRAL)
def test_every_strategy_at_its_neutral_setting_leaves_the_logits(family, variant):
    name, base = family
    ids, mask = _batch()
    ref = _logits(base, ids, mask)
    got = _logits(hf.apply(copy.deepcopy(base), variant), ids, mask)
    assert (got - ref)[mask.bool()].abs().max() <= TOL, (name, variant)


def _reference_layer(model, family: str, variant: str):
    """Layer 0 of ``model`` (after ``apply``) as the package's own ``nn.SelectiveAttention``: the same
    projections, RoPE and strategy parameters (both name them prefix + the table's name)."""
    from ssa_theory.nn import SelectiveAttention

    c = model.config
    if family == "gpt2":
        m = model.transformer.h[0].attn
        D = c.n_embd
        ref = SelectiveAttention(D, c.n_head, variant=variant, bias=True)
        W, b = m.c_attn.weight.detach(), m.c_attn.bias.detach()  # Conv1D: x @ W + b, W (D, 3D)
        for i, proj in enumerate((ref.q_proj, ref.k_proj, ref.v_proj)):
            proj.weight.data.copy_(W[:, i * D:(i + 1) * D].T)
            proj.bias.data.copy_(b[i * D:(i + 1) * D])
        ref.o_proj.weight.data.copy_(m.c_proj.weight.detach().T)
        ref.o_proj.bias.data.copy_(m.c_proj.bias.detach())
    else:
        m = model.model.layers[0].self_attn
        theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", getattr(c, "rope_theta", 10000.0))
        ref = SelectiveAttention(c.hidden_size, c.num_attention_heads, n_kv_heads=c.num_key_value_heads,
                                 variant=variant, rope_base=float(theta))
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            getattr(ref, name).weight.data.copy_(getattr(m, name).weight.detach())
    assert set(ref.temp) == set(m.ssa_temp)
    for k, p in m.ssa_temp.items():
        ref.temp[k].data.copy_(p.detach())
    return m, ref.eval()


@pytest.mark.parametrize("name", ["llama", "gpt2"])
@pytest.mark.parametrize("variant", ["ssa", "ssa_k", "ssa_noshare", "log_n", "qwen_gate", "sink", "ssa_qkv"])
def test_an_attention_layer_equals_the_packages_own_module_with_its_weights(name, variant):
    """Off neutral, under left padding: the model's layer 0 against ``nn.SelectiveAttention`` (pinned to a slow
    reference in test_core_attention.py) with the same weights, on the hidden states the layer received."""
    model = _off_neutral(hf.apply(_tiny(name), variant, **({"neutral": False} if variant == "log_n" else {})))
    ids, mask = _batch(pads=(3, 0, 1))
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    module, ref = _reference_layer(model, name, variant)
    seen = {}
    handle = module.register_forward_hook(lambda mod, args, kwargs, out: seen.update(x=args[0] if args else
                                                                                      kwargs["hidden_states"], out=out[0]),
                                          with_kwargs=True)
    with torch.no_grad():
        model(ids, attention_mask=mask, position_ids=position_ids)
        handle.remove()
        expected = ref(seen["x"], attention_mask=mask)
    real = mask.bool()
    assert (seen["out"] - expected)[real].abs().max() <= TOL, (name, variant)


def _generate(model, ids, mask, cache=True):
    return model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0,
                          use_cache=cache)[:, ids.shape[1]:]


@pytest.mark.parametrize("variant,options", [("ssa", {}), ("ssa_k", {}), ("log_n", {"neutral": False})])
def test_off_neutral_the_logits_change_and_cached_and_batched_generation_agree(family, variant, options):
    name, base = family
    model = _off_neutral(hf.apply(copy.deepcopy(base), variant, **options))
    ids, mask = _batch(pads=(3, 0, 1))
    real = mask.bool()
    assert (_logits(model, ids, mask) - _logits(base, ids, mask))[real].abs().max() > 1e-2, (name, variant)
    batched = _generate(model, ids, mask)
    assert torch.equal(batched, _generate(model, ids, mask, cache=False)), (name, variant)
    for i in range(ids.shape[0]):  # each prompt alone, without its padding
        row = ids[i, mask[i].bool()][None]
        alone = _generate(model, row, torch.ones_like(row))
        assert torch.equal(alone[0], batched[i]), (name, variant, i)


def test_the_cached_logits_equal_the_full_recompute_at_every_step():
    model = _off_neutral(hf.apply(copy.deepcopy(_llama()), "ssa"))
    ids, mask = _batch(pads=(2, 0))
    out = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0,
                         output_logits=True, return_dict_in_generate=True)
    full_mask = torch.cat([mask, torch.ones(2, 4, dtype=mask.dtype)], 1)
    position_ids = (full_mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        full = model(out.sequences, attention_mask=full_mask, position_ids=position_ids).logits
    for step, logits in enumerate(out.logits):
        assert (logits - full[:, ids.shape[1] - 1 + step]).abs().max() <= TOL


def test_gradients_reach_every_new_parameter_and_a_plain_loop_trains():
    model = hf.apply(copy.deepcopy(_llama()), "ssa", neutral=False).train()
    new = {n: p for n, p in model.named_parameters() if ".ssa_temp." in n}
    assert len(new) == 2 * 2 * 2  # 2 layers x (q, v) x (u, alpha)
    ids, mask = _batch(pads=(0, 0, 0), length=12)
    loss0 = model(ids, labels=ids).loss
    loss0.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in new.values())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
    assert model(ids, labels=ids).loss < loss0


def test_at_neutral_ssas_position_term_gets_no_gradient_as_documented():
    model = hf.apply(copy.deepcopy(_llama()), "ssa").train()
    ids, _ = _batch(pads=(0, 0), length=8)
    model(ids, labels=ids).loss.backward()
    grads = {n.rsplit(".", 1)[1]: p.grad for n, p in model.named_parameters() if ".ssa_temp." in n}
    assert grads["q_alpha"].abs().sum() == 0 and grads["q_u"].abs().sum() > 0


def test_transformers_trainer_runs_and_moves_the_new_parameters(tmp_path):
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (the [hf] extra)")
    model = hf.apply(copy.deepcopy(_llama()), "ssa", neutral=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".ssa_temp." in n}
    ids, _ = _batch(pads=(0,) * 8, length=10)
    data = [{"input_ids": r, "labels": r} for r in ids]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                          learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True,
                                          logging_strategy="no", disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=data).train()
    after = dict(model.named_parameters())
    assert all(not torch.equal(after[n], p) for n, p in before.items())


@pytest.mark.parametrize("name", ["llama", "qwen3", "gpt2"])
def test_save_and_from_pretrained_round_trip_the_logits_exactly(name, tmp_path):
    base = _tiny(name)
    model = _off_neutral(hf.apply(copy.deepcopy(base), "ssa", neutral=False, alpha_init=-2.0))
    ids, mask = _batch()
    model.save_pretrained(tmp_path)
    loaded = hf.from_pretrained(type(base), tmp_path)
    assert loaded.config.ssa_theory["variant"] == "ssa" and loaded.config.ssa_theory["neutral"] is False
    assert torch.equal(_logits(loaded, ids, mask), _logits(model, ids, mask))


def test_from_pretrained_refuses_a_model_saved_without_a_strategy(tmp_path):
    _llama().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="saved without a strategy of ssa_theory.hf.*call ssa_theory.hf.apply"):
        hf.from_pretrained(transformers.LlamaForCausalLM, tmp_path)


def test_remove_restores_the_models_own_attention():
    ids, mask = _batch()
    model = _off_neutral(hf.apply(copy.deepcopy(_llama()), "ssa"))
    hf.remove(model)
    assert model.config._attn_implementation == "sdpa" and not hasattr(model.config, "ssa_theory")
    assert not any(".ssa_temp." in k for k in model.state_dict())
    assert torch.equal(_logits(model, ids, mask), _logits(_llama(), ids, mask))
    hf.apply(model, "global")  # and a strategy can be applied again
    with pytest.raises(ValueError, match="already has a strategy applied; call ssa_theory.hf.remove"):
        hf.apply(model, "ssa")


@pytest.mark.parametrize("call,message", [
    (lambda m: hf.apply(m, "sssa"), r"unknown attention variant 'sssa'; did you mean 'ssa'"),
    (lambda m: hf.apply(m, "log_n"), r"'log_n' has no neutral setting .* pass neutral=False"),
    (lambda m: hf.apply(m, "freq", neutral=False), r"'freq' needs k_freq per token, which a transformers model"),
    (lambda m: hf.apply(m, "global", alpha_init=-3.0), r"alpha_init is SSA's position term's start; global places"),
    (lambda m: hf.apply(m, "ssa", train_length=8), r"train_length is read by yarn, qwen and llama4; ssa reads none"),
    (lambda m: hf.apply(m, "ssa", alpha_init=-3.0), r"alpha_init sets where .* when neutral=False"),
    (lambda m: hf.apply(m, "ssa", temperature=2), r"unknown option 'temperature' of ssa_theory.hf.apply"),
    (lambda m: hf.apply(m, "ssa", neutral="yes"), r"neutral must be True or False"),
    (lambda m: hf.remove(m), r"no strategy applied"),
])
def test_bad_input_is_one_line_naming_the_fix(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call(copy.deepcopy(_llama()))
    assert "\n" not in str(e.value)


def test_an_unsupported_model_is_refused_with_the_supported_list():
    config = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64)
    with pytest.raises(ValueError, match="supports the decoders llama, mistral, qwen2, qwen3, gpt2; this model is 'bert'"):
        hf.apply(transformers.BertModel(config), "ssa")


def test_attention_dropout_in_training_is_refused_in_one_line():
    model = hf.apply(_tiny("gpt2", attn_pdrop=0.1), "ssa").train()
    ids, _ = _batch(pads=(0,), length=5)
    with pytest.raises(ValueError, match=r"attention dropout \(0.1\) is not supported; set .* attn_pdrop\) to 0"):
        model(ids, labels=ids)
    model.eval()
    model(ids)  # no dropout at evaluation: runs


def test_the_readme_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves under runs/
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it in a Hugging Face model", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    exec(compile(code, "README.md", "exec"), {})


def test_the_example_runs_at_smoke_size(tmp_path, capsys):
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["hf_passkey_finetune.py", "--smoke", "--out", str(tmp_path / "result.csv")]
    try:
        runpy.run_path(str(ROOT / "examples" / "hf_passkey_finetune.py"), run_name="__main__")
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "exact match" in out and (tmp_path / "result.csv").is_file()
    rows = (tmp_path / "result.csv").read_text().splitlines()
    assert rows[0].startswith("strategy,") and len(rows) > 2
    assert not math.isnan(float(rows[1].split(",")[-1]))
