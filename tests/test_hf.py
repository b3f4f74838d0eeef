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
from ssa_theory.variants import VARIANTS, all_variants, get_variant

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
                                                attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, pad_token_id=0,
                                                bos_token_id=None, eos_token_id=None, initializer_range=0.2),
        # Pythia's family: fused per-head q | k | v, partial rotary
        "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                       rotary_pct=0.5, attention_dropout=0.0, hidden_dropout=0.0,
                                                       **common),
        "gemma": lambda: transformers.GemmaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                  num_key_value_heads=1, head_dim=8, **common),
        # Gemma 2: logit soft-cap (small, so that it binds), query_pre_attn_scalar, sliding and global layers
        "gemma2": lambda: transformers.Gemma2Config(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                    num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=16,
                                                    attn_logit_softcapping=2.0, final_logit_softcapping=None,
                                                    sliding_window=4, **common),
        # Gemma 3: q_norm / k_norm, a sliding layer then a global one
        "gemma3_text": lambda: transformers.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                             num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
                                                             sliding_window=4, layer_types=["sliding_attention",
                                                                                            "full_attention"],
                                                             **common),
        "phi3": lambda: transformers.Phi3Config(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                num_key_value_heads=2, resid_pdrop=0.0, embd_pdrop=0.0,
                                                attention_dropout=0.0, **common),
    }
    config = configs[family]()
    for k, v in overrides.items():
        setattr(config, k, v)
    # Gemma 2's own attention with a logit soft-cap exists in transformers only as its eager path
    implementation = "eager" if family == "gemma2" else "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=implementation)
    return model.eval()


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "gemma", "gemma2", "gemma3_text", "phi3"]


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


@pytest.mark.parametrize("pads, length", [((2, 0, 3), 7), ((1, 0, 2), 3)], ids=["B 3 L 7", "B == L"])
def test_vanilla_equals_transformers_sdpa_under_left_padding(family, pads, length):
    """Against the model's own attention (sdpa; Gemma 2: eager), under left padding, B == L included."""
    name, base = family
    ids, mask = _batch(pads=pads, length=length)
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

def _accepted(variant: str, neutral: bool) -> bool:
    try:
        hf._check_strategies(get_variant(variant), neutral)
        return True
    except ValueError:
        return False


NEUTRAL = [v for v in all_variants() if _accepted(v, True)]
STARTS = [(v, {}) for v in NEUTRAL] + [(v, {"neutral": False}) for v in all_variants()
                                       if not _accepted(v, True) and _accepted(v, False)]


def test_the_neutral_list_is_every_variant_but_those_without_a_neutral_setting_that_trains():
    assert set(all_variants()) - set(NEUTRAL) == {"log_n", "ssmax", "asentmax", "freq", "ssa_q_pos", "ssa_released",
                                                  "sink", "qwen_gate"}
    for v in ("ssa_q_pos", "ssa_released", "sink", "qwen_gate"):
        with pytest.raises(ValueError, match=f"^{v} cannot train from its neutral start: .* pass neutral=False"):
            hf.apply(copy.deepcopy(_llama()), v)


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
@pytest.mark.parametrize("positions", ["given", "from the padding"])
def test_an_attention_layer_equals_the_packages_own_module_with_its_weights(name, variant, positions):
    """Off neutral, under left padding: the model's layer 0 against ``nn.SelectiveAttention`` (pinned to a slow
    reference in test_core_attention.py) with the same weights, on the hidden states the layer received;
    with ``position_ids`` given, and without (a plain batched forward: the positions follow the padding)."""
    model = _off_neutral(hf.apply(_tiny(name), variant, **({} if variant in NEUTRAL else {"neutral": False})))
    ids, mask = _batch(pads=(3, 0, 1))
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0) if positions == "given" else None
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
    (lambda m: hf.apply(m, "ssa", train_length=8), r"train_length is read by yarn, qwen, llama4 and ministral; ssa"),
    (lambda m: hf.apply(m, 123), r"variant must be a name \(a str, e.g. 'ssa'\) or a Variant \(got int 123\)"),
    (lambda m: hf.apply(m, ["ssa"]), r"variant must be a name .* \(got list \['ssa'\]\)"),
    (lambda m: hf.apply(m, "ssa", neutral=False, alpha_init="x"), r"alpha_init must be a finite number \(got 'x'\)"),
    (lambda m: hf.apply(m, "ssa", neutral=False, alpha_init=float("nan")), r"alpha_init must be a finite number"),
    (lambda m: hf.apply(m, "yarn", train_length="4096"), r"train_length must be an integer >= 2 \(got '4096'\)"),
    (lambda m: hf.apply(m, "yarn", train_length=2.5), r"train_length must be an integer >= 2 \(got 2.5\)"),
    (lambda m: hf.apply(m, "yarn", train_length=float("inf")), r"train_length must be an integer >= 2 \(got inf\)"),
    (lambda m: hf.apply(m, "yarn", train_length=True), r"train_length must be an integer >= 2 \(got True\)"),
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
    with pytest.raises(ValueError, match="supports the decoders llama, .*, phi3; this model is 'bert', whose attention"):
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
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "hf.md").read_text(), re.S)
    assert len(blocks) == 2  # the adapter, then PEFT
    exec(compile(blocks[0], "docs/hf.md", "exec"), {})
    if importlib.util.find_spec("peft") is not None:
        exec(compile(blocks[1], "docs/hf.md", "exec"), {})


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


# --- every start trains; positions from the padding; threads; saved configs ----------------------------------


@pytest.mark.parametrize("variant,options", STARTS, ids=[f"{v}{'-off' if o else ''}" for v, o in STARTS])
def test_every_start_apply_accepts_trains(family, variant, options):
    """One optimiser step from the start ``apply`` gives (its default, or neutral=False where the neutral start
    is refused): finite gradients, and at least one temperature parameter moves (parameter-free laws aside)."""
    name, base = family
    model = hf.apply(copy.deepcopy(base), variant, **options).train()
    params = hf.temperature_parameters(model)
    if not params:
        pytest.skip(f"{variant} has no parameter: nothing to train")
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-2)
    ids, mask = _batch(pads=(0, 2), length=8)
    model(ids, attention_mask=mask, labels=ids).loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in params), (name, variant)
    opt.step()
    moved = [float((p.detach() - b).abs().max()) for p, b in zip(params, before)]
    assert max(moved) > 0, (name, variant, "no temperature parameter moved")


@pytest.mark.parametrize("variant", ["ssa", "ssa_k", "ssa_v"])
def test_a_plain_left_padded_forward_equals_each_row_alone(family, variant):
    """Batched scoring without position_ids: each padded row's logits at its real tokens equal the same prompt
    alone (transformers' default positions count the pad slots; the temperatures must not)."""
    name, base = family
    if name == "gpt2":
        pytest.skip("GPT-2's own learned absolute positions count the pad slots (the model, not the temperatures)")
    model = _off_neutral(hf.apply(copy.deepcopy(base), variant))
    ids, mask = _batch(pads=(3, 0, 1))
    batched = _logits(model, ids, mask)
    worst = 0.0
    for b in range(ids.shape[0]):
        real = mask[b].bool()
        alone = _logits(model, ids[b:b + 1, real], mask[b:b + 1, real])[0]
        worst = max(worst, float((batched[b, real] - alone).abs().max()))
    assert worst <= TOL, (name, variant, worst)


def test_threads_sharing_one_patched_model_get_what_each_gets_alone():
    from concurrent.futures import ThreadPoolExecutor

    model = _off_neutral(hf.apply(copy.deepcopy(_llama()), "ssa"))
    inputs = [_batch(pads=(p % 3, 0), length=5 + p % 4, seed=p) for p in range(24)]
    alone = [_logits(model, ids, mask) for ids, mask in inputs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda im: _logits(model, *im), inputs * 5))
    assert all(torch.equal(t, alone[i % len(inputs)]) for i, t in enumerate(together))


def test_apply_refuses_a_config_that_records_a_saved_strategy(tmp_path):
    model = hf.apply(copy.deepcopy(_llama()), "ssa")
    model.save_pretrained(tmp_path)
    plain = transformers.LlamaForCausalLM.from_pretrained(tmp_path)  # the plain class: the temperatures left out
    with pytest.raises(ValueError, match=r"records a strategy saved by ssa_theory\.hf.*ssa_theory\.hf\.from_pretrained"):
        hf.apply(plain, "ssa")


def test_the_train_length_reads_the_original_context_of_a_rescaled_model():
    config = transformers.LlamaConfig(max_position_embeddings=262144)
    assert hf._train_length(config) == 262144
    config.original_max_position_embeddings = 16384
    assert hf._train_length(config) == 16384
    config = transformers.LlamaConfig(max_position_embeddings=4096,
                                      rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 1024})
    assert hf._train_length(config) == 1024


# --- PEFT ------------------------------------------------------------------------------------------------------


def _lora(model):
    peft = pytest.importorskip("peft", reason="the PEFT tests need peft (pip install peft)")
    return peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      lora_dropout=0.0, init_lora_weights=False))


def _train(model, steps=3):
    for p in hf.temperature_parameters(model):
        p.requires_grad_(True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = _batch(pads=(0, 2), length=8)
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("order", ["lora then apply", "apply then lora"])
def test_lora_in_either_order_equals_its_merge(order):
    base = copy.deepcopy(_llama())
    if order == "lora then apply":
        model = hf.apply(_lora(base), "ssa")
    else:
        model = _lora(hf.apply(base, "ssa"))
    _train(model.train()).eval()
    ids, mask = _batch()
    before = _logits(model, ids, mask)
    merged = model.merge_and_unload()  # the LoRA layers replaced by plain linears: the hooks follow them
    after = _logits(merged, ids, mask)
    assert (before - after)[mask.bool()].abs().max() <= TOL


def test_the_temperatures_train_under_peft_and_travel_with_the_adapter(tmp_path):
    peft = pytest.importorskip("peft", reason="the PEFT tests need peft (pip install peft)")
    model = _lora(hf.apply(copy.deepcopy(_llama()), "ssa"))
    start = [p.detach().clone() for p in hf.temperature_parameters(model)]
    _train(model.train()).eval()
    assert any(not torch.equal(p, s) for p, s in zip(hf.temperature_parameters(model), start))
    model.save_pretrained(tmp_path)
    hf.save_temperatures(model, tmp_path)
    ids, mask = _batch()
    expected = _logits(model, ids, mask)
    again = peft.PeftModel.from_pretrained(hf.apply(copy.deepcopy(_llama()), "ssa"), tmp_path)
    hf.load_temperatures(again, tmp_path)
    assert torch.equal(_logits(again.eval(), ids, mask), expected)


def test_loading_an_ssa_checkpoint_with_the_plain_class_warns_in_one_line(tmp_path, caplog):
    hf.apply(copy.deepcopy(_llama()), "ssa").save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="ssa_theory.hf"):
        transformers.LlamaForCausalLM.from_pretrained(tmp_path)
    ours = [r.getMessage() for r in caplog.records if r.name == "ssa_theory.hf"]
    assert ours == [hf.PLAIN_LOAD] and "\n" not in ours[0] and "hf.from_pretrained" in ours[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="ssa_theory.hf"):
        hf.from_pretrained(transformers.LlamaForCausalLM, tmp_path)  # the right way: no such line
    assert not [r for r in caplog.records if r.name == "ssa_theory.hf"]
