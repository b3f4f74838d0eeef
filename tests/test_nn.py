"""The public layer, ssa_theory.nn: selective_sdpa against SDPA, SelectiveAttention against a nanoGPT-style
module, masks in every accepted shape (never broadcast onto heads), 0-based positions, cached decoding,
RoPE, grouped-query heads, QK-norm, empty rows; the strategy table and its registry; the conformance kit
over every built-in strategy, and a broken plug-in it must reject."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssa_theory import cli, functional as core, nn as ssa_nn, strategies as st
from ssa_theory.attention import VARIANTS, all_variants, get_variant
from ssa_theory.nn import SelectiveAttention, normalise_mask, parameter_counts, selective_sdpa
from ssa_theory.testing import StrategyError, assert_conforms, check_strategy

ROOT = Path(__file__).resolve().parent.parent
B, L, D, H = 3, 7, 16, 4


def x_(seed=0, length=L, batch=B):
    return torch.randn(batch, length, D, generator=torch.Generator().manual_seed(seed))


class NanoGPTAttention(nn.Module):
    """The reference: nanoGPT's CausalSelfAttention (qkv, SDPA is_causal, output projection)."""

    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


def _same_weights(ref: NanoGPTAttention, m: SelectiveAttention) -> None:
    with torch.no_grad():
        wq, wk, wv = ref.c_attn.weight.split(D, 0)
        m.q_proj.weight.copy_(wq)
        m.k_proj.weight.copy_(wk)
        m.v_proj.weight.copy_(wv)
        m.o_proj.weight.copy_(ref.c_proj.weight)


# --- the functional core -------------------------------------------------------------------------------


def test_selective_sdpa_is_sdpa_with_scales_folded_in():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, H, 5, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(selective_sdpa(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True))
    tq, tk, tv = (torch.rand(2, H, 5, generator=g) + 0.5 for _ in range(3))
    expected = F.scaled_dot_product_attention(q * tq[..., None], k * tk[..., None], v * tv[..., None], is_causal=True)
    torch.testing.assert_close(selective_sdpa(q, k, v, q_scale=tq, k_scale=tk, v_scale=tv, is_causal=True), expected)
    # by hand: logits_ij = tau_q,i tau_k,j q.k / sqrt(d); out_i = sum_j p_ij tau_v,j v_j
    logits = tq[..., :, None] * tk[..., None, :] * (q @ k.transpose(-1, -2)) / math.sqrt(8)
    logits = logits.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), -math.inf)
    torch.testing.assert_close(selective_sdpa(q, k, v, q_scale=tq, k_scale=tk, v_scale=tv, is_causal=True),
                               torch.softmax(logits, -1) @ (v * tv[..., None]))


def test_selective_sdpa_grouped_heads_and_empty_rows():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 3, 8, generator=g)
    k, v = torch.randn(2, 2, 5, 8, generator=g), torch.randn(2, 2, 5, 8, generator=g)
    full = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1))
    torch.testing.assert_close(selective_sdpa(q, k, v), full)
    mask = torch.ones(2, 1, 3, 5, dtype=torch.bool)
    mask[1, 0, 2] = False  # batch row 1's last query sees no key
    out = selective_sdpa(q, k, v, attn_mask=mask)
    assert torch.isfinite(out).all() and (out[1, :, 2] == 0).all() and (out[0] != 0).any()


# --- masks -------------------------------------------------------------------------------------------


def test_every_mask_shape_means_the_same_and_never_the_head_axis():
    """The bug this layer fixes: a (B, Lq, Lk) mask with B == H went onto the head axis. Here B == H == 4:
    masking batch row 0's last key must change row 0 only, on every head, and leave row 1 alone."""
    torch.manual_seed(0)
    m = SelectiveAttention(D, 4, variant="vanilla", causal=False)
    x = x_(batch=4, length=5)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[0, -1] = False
    outs = {shape: m(x, attn_mask=mask) for shape, mask in {
        "(B, Lq, Lk)": keep[:, None, :].expand(4, 5, 5),
        "(B, 1, Lq, Lk)": keep[:, None, None, :].expand(4, 1, 5, 5),
        "(B, H, Lq, Lk)": keep[:, None, None, :].expand(4, 4, 5, 5),
    }.items()}
    # padding by its own keyword, not by shape; positions then count real tokens (key 4 is the last: none move)
    outs["key padding (B, Lk)"] = m(x, attention_mask=keep)
    plain = m(x)
    for name, out in outs.items():
        torch.testing.assert_close(out, outs["key padding (B, Lk)"], msg=name)
        torch.testing.assert_close(out[1:], plain[1:], msg=name)  # other rows: nothing masked
        assert not torch.allclose(out[0], plain[0])
    # the key really is invisible: row 0 equals the same row without that token
    torch.testing.assert_close(outs["(B, Lq, Lk)"][0, :4], m(x[:1, :4])[0], atol=1e-6, rtol=0)
    # an (Lq, Lk) mask applies to every row
    lk = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(m(x, attn_mask=lk), _causal_copy(m)(x))


def _causal_copy(m):
    c = SelectiveAttention(D, 4, variant="vanilla", causal=True)
    c.load_state_dict(m.state_dict())
    return c


def test_a_mask_of_another_shape_is_refused_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"not one of \(Lq, Lk\) = \(5, 5\), \(B, Lq, Lk\)"):
        normalise_mask(torch.ones(2, 3, 5, 5, dtype=torch.bool), 2, 5, 5)
    with pytest.raises(ValueError, match=r"is a padding mask: pass it as attention_mask="):
        normalise_mask(torch.ones(2, 5, dtype=torch.bool), 2, 4, 5)
    with pytest.raises(ValueError, match="must be boolean"):
        normalise_mask(torch.zeros(5, 5), 2, 5, 5)


# --- the module against nanoGPT's --------------------------------------------------------------------


def test_vanilla_selective_attention_is_nanogpts_causal_attention():
    torch.manual_seed(0)
    ref, m = NanoGPTAttention(D, H), SelectiveAttention(D, H, variant="vanilla")
    _same_weights(ref, m)
    x = x_()
    torch.testing.assert_close(m(x), ref(x))


def test_ssa_at_init_is_nearly_vanilla_and_exactly_so_at_neutral():
    torch.manual_seed(0)
    ref, m = NanoGPTAttention(D, H), SelectiveAttention(D, H, variant="ssa")
    _same_weights(ref, m)
    x = x_()
    assert (m(x) - ref(x)).abs().max() < 0.1  # alpha starts at -4 (c = 0.018), u at 0
    with torch.no_grad():
        for name, p in m.temp.items():
            p.fill_(-math.inf if name.endswith("alpha") else 0.0)
    torch.testing.assert_close(m(x), ref(x), atol=1e-6, rtol=0)


def test_positions_are_zero_based_and_a_decode_step_sees_every_cached_key():
    """The other bug: with a query shorter than the keys, default positions aligned top-left, so a new
    token saw 1 of 5 keys. With a cache, token t sees keys 0..t and its position term is log(t + 1)."""
    torch.manual_seed(0)
    m = SelectiveAttention(D, H, variant="ssa_q_pos")
    with torch.no_grad():
        m.parameters_of("ssa_pos", "q")["alpha"].fill_(1.0)
    x = x_()
    full = m(x)
    cache = m.new_cache(B, L)
    m(x[:, :4], cache=cache)
    step = m(x[:, 4:5], cache=cache)
    torch.testing.assert_close(step, full[:, 4:5], atol=1e-5, rtol=0)
    torch.testing.assert_close(m(x, positions=torch.arange(L)), full)  # 0-based positions are the default


def test_rope_is_relative_and_the_token_term_reads_the_pre_rope_projection():
    torch.manual_seed(0)
    m = SelectiveAttention(D, H, variant="ssa_q_tok", rope_base=10000.0)
    with torch.no_grad():
        m.parameters_of("ssa_tok", "q")["u"].normal_(0, 1, generator=torch.Generator().manual_seed(2))
    x = x_()
    # shifting every position by 5 leaves the (relative) rotary scores, so the outputs, unchanged
    torch.testing.assert_close(m(x, positions=torch.arange(L) + 5), m(x), atol=1e-5, rtol=0)
    # the same token at two positions gets the same token temperature (it reads q before RoPE)
    same = x[:, :1].expand(B, L, D)
    q = m.q_proj(same).view(B, L, H, -1).transpose(1, 2)[None]
    s = m.strategies()
    tau = s.tau("q", s.inputs("q", same[None], proj=q, positions=torch.arange(L), n=torch.arange(1.0, L + 1), q=q))
    torch.testing.assert_close(tau, tau[..., :1].expand_as(tau))


def test_grouped_query_heads_equal_repeated_key_value_heads():
    torch.manual_seed(0)
    gqa = SelectiveAttention(D, 4, variant="vanilla", n_kv_heads=2)
    mha = SelectiveAttention(D, 4, variant="vanilla")
    d = D // 4
    with torch.no_grad():
        mha.q_proj.weight.copy_(gqa.q_proj.weight)
        mha.o_proj.weight.copy_(gqa.o_proj.weight)
        for name in ("k_proj", "v_proj"):
            w = getattr(gqa, name).weight.view(2, d, D).repeat_interleave(2, 0).reshape(4 * d, D)
            getattr(mha, name).weight.copy_(w)
    x = x_()
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-6, rtol=0)
    cache = gqa.new_cache(B, L)
    steps = torch.cat([gqa(x[:, t:t + 1], cache=cache) for t in range(L)], 1)
    torch.testing.assert_close(steps, gqa(x), atol=1e-5, rtol=0)


def test_the_query_temperature_acts_after_qk_norm():
    torch.manual_seed(0)
    m = SelectiveAttention(D, H, variant="global", qk_norm=True)
    x = x_()
    before = m(x)
    with torch.no_grad():
        m.q_proj.weight.mul_(10.0)  # QK-norm removes the scale of q ...
    torch.testing.assert_close(m(x), before, atol=1e-5, rtol=0)
    with torch.no_grad():
        m.parameters_of("global")["g"].fill_(0.8)  # ... but not the temperature applied after it
    assert (m(x) - before).abs().max() > 1e-3


# --- a small causal LM built from the layer (the acceptance) -----------------------------------


def readme_snippet(k: int = 0) -> str:
    """Code block k of the public layer's guide, ``docs/nn.md`` (the README links it)."""
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "nn.md").read_text(), re.S)[k]


def test_the_readmes_model_trains_and_decodes_with_the_cache_as_without():
    """The README's nanoGPT-style two-layer model with SSA: it trains a few steps (the loss falls) and
    greedy decoding with the cache gives the same tokens as the uncached forward pass."""
    namespace: dict = {}
    exec(compile(readme_snippet(), "docs/nn.md", "exec"), namespace)
    assert namespace["losses"][-1] < namespace["losses"][0]
    assert namespace["cached"] == namespace["uncached"] and len(namespace["cached"]) >= 8


def test_the_readmes_left_padded_batch_generates_what_each_row_generates_alone():
    namespace: dict = {}
    exec(compile(readme_snippet(0), "docs/nn.md", "exec"), namespace)
    exec(compile(readme_snippet(1), "docs/nn.md", "exec"), namespace)
    assert [len(t) for t in namespace["alone"]] == [8, 8, 8]
    assert namespace["together"].tolist() == [t.tolist() for t in namespace["alone"]]


# --- the strategy table, the registry, plug-ins ----------------------------------------------------------


def test_every_strategy_is_declared_once_with_its_source_and_range():
    names = [s.name for s in st.table()]
    assert len(names) == len(set(names))
    for s in st.BUILTINS:
        assert s.source and s.about and s.range[0] <= s.range[1], s.name
    assert {"llama4", "sink", "qwen_gate", "ssa_pos", "ssa_tok", "ssa_tok_own"} <= set(names)
    assert VARIANTS["global"].query_range() == (0.0, 2.0) == VARIANTS["ssa_q_tok"].query_range()


def test_register_strategy_refuses_duplicates_and_suggests_names():
    with pytest.raises(ValueError, match="already registered"):
        st.register(st.resolve("global"))
    with pytest.raises(ValueError, match="did you mean 'global'"):
        st.resolve("globl")
    with pytest.raises(ValueError, match="did you mean 'ssa_q'"):
        get_variant("ssa_qq")


@pytest.mark.parametrize("name", [s.name for s in st.BUILTINS])
def test_every_built_in_strategy_passes_the_conformance_kit(name):
    report = check_strategy(name)
    assert report.ok, str(report)
    assert report.passed


def _full_row_length(inputs, params):
    """A broken strategy: log of the full row length, not of the keys each query sees."""
    return torch.log(torch.full_like(inputs.n, float(inputs.x.shape[-2]) + 1.0)) * (1 + params["g"].view(-1, 1, 1, 1))


BROKEN = st.Strategy("broken_row_length", "q", "mul", _full_row_length, {"g": st.Param((), 0.0, math.nan)},
                     range=(0.0, math.inf), neutral=None, source="a test", about="log(L + 1): wrong under a causal mask")


def test_a_broken_plugin_fails_the_kit_naming_the_property():
    st.register(BROKEN)
    try:
        with pytest.raises(StrategyError) as e:
            assert_conforms("broken_row_length")
    finally:
        st.unregister("broken_row_length")
    lines = str(e.value).splitlines()
    assert lines[0] == "strategy 'broken_row_length' fails the conformance kit:"
    failed = [line.strip().split(":")[0] for line in lines[1:]]
    assert "n per query" in failed and "cache" in failed
    assert "neutral" not in failed and "gradients" not in failed


def test_register_strategy_decorator_and_a_variant_by_strategy_name():
    @st.register_strategy("test_half", side="q", params={"g": st.Param((), 0.0, 0.0)}, range=(0.0, 2.0),
                          source="a test", about="(1 + tanh g) on every query")
    def half(inputs, params):
        return (1 + torch.tanh(params["g"])).view(-1, 1, 1, 1) * torch.ones_like(inputs.n)

    try:
        assert check_strategy("test_half").ok
        m = SelectiveAttention(D, H, variant="test_half")
        assert "scale_g" in m.temp and m(x_()).shape == (B, L, D)
        with pytest.raises(ValueError, match="already registered"):
            st.register_strategy("test_half", side="q")(half)
    finally:
        st.unregister("test_half")


def test_list_strategies_shows_every_one_with_its_origin(capsys):
    assert cli.main(["list", "--strategies"]) == 0
    out = capsys.readouterr().out
    for s in st.table():
        assert f"| {s.name} |" in out
    assert "| built-in |" in out and "Llama 4" in out


def test_new_variants_stay_out_of_the_committed_ablation():
    assert set(all_variants()) - set(VARIANTS) == {"llama4", "sink", "qwen_gate", "ministral", "global_v"}


def test_parameter_counts_for_gpt2_small():
    rows = {r["variant"]: r for r in parameter_counts(["vanilla", "ssa", "ssa_noshare", "global"])}
    assert rows["vanilla"]["new_parameters"] == 0
    # ssa: u (12 x 64) and alpha (12) on q and on v
    assert rows["ssa"]["new_parameters"] == 2 * (12 * 64 + 12)
    assert rows["ssa"]["share_percent"] < 0.5  # the paper's "under 0.5%"
    assert rows["global"]["new_parameters"] == 12


@pytest.fixture(scope="session")  # not module: a test process interleaves other modules' tests, and a module
# fixture is torn down and built again each time it comes back to this one
def installed_plugin(tmp_path_factory):
    """examples/uniform_scale_plugin pip-installed into a folder of its own (not this environment)."""
    target = tmp_path_factory.mktemp("plugin")
    try:
        import setuptools  # noqa: F401
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target",
                           str(target), str(ROOT / "examples" / "uniform_scale_plugin")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return target


# A plug-in's way into an experiment is the subject of the tests that train one, not what it learns:
# dilution at a tenth of its quick steps, one evaluation length and no noisy-flag row (3 s a model less).
SMALL = ("--set", "steps=15", "--set", "eval_lengths=16", "--set", "n_eval=16", "--set", "noise_check=0")


def _with_path(path, *args):
    env = {**__import__("os").environ, "PYTHONPATH": str(path)}
    return subprocess.run([sys.executable, "-m", "ssa_theory", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


@pytest.mark.xdist_group("plugin")  # one process pip-installs the plug-in
def test_the_installed_plugin_runs_in_an_experiment_and_passes_the_kit(installed_plugin, tmp_path):
    """(Training it in an experiment: the README's commands, test_the_readmes_plugin_commands_run.)"""
    proc = _with_path(installed_plugin, "list", "--strategies")
    assert proc.returncode == 0 and "| uniform_scale |" in proc.stdout and "entry point" in proc.stdout
    check = subprocess.run([sys.executable, "-c", "from ssa_theory.testing import assert_conforms; "
                            "print(assert_conforms('uniform_scale'))"], capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONPATH": str(installed_plugin)}, timeout=300)
    assert check.returncode == 0 and "conforms" in check.stdout, check.stderr


# --- reading the attention a layer applies -----------------------------------------------------


@pytest.mark.parametrize("variant", ["vanilla", "ssa", "ssmax", "sink", "freq"])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_weights_are_what_the_layer_applies(variant, masked):
    """``attention_weights`` times the values is the layer's attention output (before the gate and
    o_proj), for the plain causal path and under a padding mask; a subset of rows is those rows."""
    torch.manual_seed(0)
    m = SelectiveAttention(D, H, variant=variant, train_length=8)
    with torch.no_grad():
        for p in m.temp.values():
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    x = x_()
    B, L, _ = x.shape
    mask = None
    if masked:  # row 0 left-padded by two tokens
        mask = torch.ones(B, L, dtype=torch.bool)
        mask[0, :2] = False
    kf = torch.rand(B, L, generator=torch.Generator().manual_seed(4)) * 0.9 + 0.05
    w = m.attention_weights(x, attention_mask=mask, extras={"k_freq": kf})
    assert w.shape == (B, H, L, L)
    assert torch.all(w[..., torch.triu_indices(L, L, 1)[0], torch.triu_indices(L, L, 1)[1]] == 0)  # causal
    captured = {}
    real = core.fused
    with pytest.MonkeyPatch.context() as mp:
        def spy(q, k, v, *args):
            captured["v"], captured["out"] = v[0], real(q, k, v, *args)[0]  # v: tau_v applied, no sink column yet
            return captured["out"][None]
        mp.setattr(core, "fused", spy)
        m(x, attention_mask=mask, extras={"k_freq": kf})
    sees = w.sum(-1, keepdim=True) > 0  # the kernel's rows before a query with no key is zeroed
    torch.testing.assert_close(w @ captured["v"], captured["out"] * sees, rtol=1e-5, atol=1e-6)
    rows = torch.tensor([L - 1, 2])
    torch.testing.assert_close(m.attention_weights(x, rows=rows, attention_mask=mask, extras={"k_freq": kf}), w[:, :, rows])
    sums = w.sum(-1)
    assert torch.all(sums <= 1 + 1e-6) and (variant == "sink" or torch.allclose(sums[sums > 0], torch.ones(1)))


def test_sdpa_weights_times_values_is_selective_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    tau = torch.rand(2, 4, 5, generator=g) + 0.5
    keep = torch.rand(2, 1, 5, 5, generator=g) > 0.3
    keep[0, 0, 1] = False  # a query that sees no key
    for kw in ({"is_causal": True}, {"attn_mask": keep}, {}):
        torch.testing.assert_close(ssa_nn.sdpa_weights(q, k, q_scale=tau, **kw) @ v,
                                   ssa_nn.selective_sdpa(q, k, v, q_scale=tau, **kw), rtol=1e-5, atol=1e-6)


# --- plug-ins, checked where they enter ---------------------------------------------------------------


def _readme_block(heading: str, lang: str, k: int = 0) -> str:
    """Code block k in ``lang`` after ``heading`` in the strategies guide, ``docs/strategies.md``."""
    text = (ROOT / "docs" / "strategies.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)[k]


def test_the_readmes_own_strategy_block_runs_as_written(capsys):
    namespace: dict = {}
    try:
        exec(compile(_readme_block("**Your own strategy.**", "python"), "docs/strategies.md", "exec"), namespace)
    finally:
        st.unregister("half_log_n")
    printed = capsys.readouterr().out
    assert printed.count("conforms (9 passed, 0 failed") == 2, printed
    assert "half_log_n_obj" not in {s.name for s in st.table()}  # checked, then removed


@pytest.mark.xdist_group("plugin")  # one process pip-installs the plug-in
def test_the_readmes_plugin_commands_run(installed_plugin, tmp_path):
    lines = [ln.split("#")[0].split() for ln in _readme_block("**Your own strategy.**", "bash").splitlines() if ln.strip()]
    assert lines[0][:4] == ["python", "-m", "pip", "install"]  # done by the fixture, into a folder of its own
    entry_point, dotted = lines[1:]
    assert "strategies=vanilla,uniform_scale" in entry_point and ":UNIFORM_SCALE" in dotted[-1]
    # by its entry point where it is installed; by its dotted path from its source folder, not installed
    for line, path in ((entry_point, installed_plugin), (dotted, ROOT / "examples" / "uniform_scale_plugin")):
        assert line[:3] == ["python", "-m", "ssa_theory"], line
        proc = _with_path(path, *line[3:], "--quiet", *SMALL, "--out", str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        strategy = line[-1].split(",")[-1]  # strategies=vanilla,PLUGIN: the plug-in trained beside vanilla
        assert "| vanilla |" in proc.stdout and f"| {strategy} |" in proc.stdout


_PEEKING = '''
import math, torch
from ssa_theory.strategies import Param, Strategy

def peek(inputs, params):  # reads the mean of every token, future ones included: not causal
    return 1 + torch.sigmoid(params["c"]).view(-1, 1, 1, 1) * torch.tanh(inputs.x.mean((-2, -1)))[..., None, None]

PEEK = Strategy("peek", "q", "mul", peek, {"c": Param((), 0.0, -math.inf)}, range=(0, 2), source="a broken plug-in")
'''


def test_a_plugin_that_reads_the_future_is_stopped_before_training_unless_no_check(tmp_path):
    (tmp_path / "peeking.py").write_text(_PEEKING)
    args = ["run", "dilution", "--quick", "--quiet", "--set", "strategies=vanilla,peeking:PEEK", *SMALL,
            "--out", str(tmp_path / "runs")]
    proc = _with_path(tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "fails the conformance check (causal:" in proc.stderr
    assert "--no-check" in proc.stderr and not (tmp_path / "runs").exists()
    proc = _with_path(tmp_path, *args, "--no-check")
    assert proc.returncode == 0, proc.stderr
    assert "| peeking:PEEK |" in proc.stdout


def test_check_strategy_takes_the_function_the_object_and_the_name():
    from ssa_theory.testing.conformance import FAST

    ns: dict = {}
    exec(_PEEKING, ns)
    report = check_strategy(ns["PEEK"], fast=True)
    assert [f.split(":")[0] for f in report.failures] == ["causal", "padding"]  # it reads every token, padding too
    assert report.passed == ["declared reads", "gradients"] and len(FAST) == 4
    assert "peek" not in {s.name for s in st.table()}
    assert check_strategy("log_n").ok and check_strategy(st.resolve("log_n")).ok
    with pytest.raises(ValueError, match="not the formula of a registered strategy"):
        check_strategy(ns["peek"])


def test_a_learned_sink_trains_in_the_vmapped_language_model():
    """The sink reaches the fused kernel as a float mask that needs a gradient; under vmap torch's CPU picks
    a kernel that cannot give one, and the core falls back to the explicit path: the members' gradients are
    each member's alone (computed outside vmap, on the fused path)."""
    from ssa_theory import lm

    shape = lm.LMShape(vocab=12, variant="sink", d_model=16, n_layers=1, n_heads=2)
    tokens = torch.randint(0, 12, (2, 3, 10), generator=torch.Generator().manual_seed(0))
    net = lm.Ensemble(shape, [0, 1])
    net(tokens).logsumexp(-1).sum().backward()
    grads = {k: p.grad for k, p in zip(net.names, net.stacked)}
    sink = next(k for k in grads if k.endswith("temp.scale_s"))
    alone = lm.member(shape, 1)
    alone(tokens[1]).logsumexp(-1).sum().backward()
    torch.testing.assert_close(grads[sink][1], dict(alone.named_parameters())[sink].grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["ssa", "ssa_q_pos", "ssa_v_tok_noshare", "vanilla"])
def test_the_layer_s_temperature_is_ssa_s_formula_at_each_token(variant):
    """``SelectiveAttention.temperature`` against SSA's formula written here: 1 + sigmoid(alpha) log(p + 1)
    + tanh(u . GELU(h)), h the side's projection (or the term's own); None on a side without a term."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = SelectiveAttention(16, 2, variant=variant)
    with torch.no_grad():
        for p in m.temp.values():
            p.normal_()
    x = torch.randn(3, 5, 16)
    for side in ("q", "v"):
        terms = m.variant.terms(side)
        got = m.temperature(x, side)
        if not terms:
            assert got is None
            continue
        want = torch.ones(3, 2, 5)
        if "pos" in terms:
            want = want + torch.sigmoid(m.parameters_of("ssa_pos", side)["alpha"])[None, :, None] * torch.log(
                torch.arange(1, 6.0))
        if "tok" in terms:
            if m.variant.share:
                h = (m.q_proj if side == "q" else m.v_proj)(x).view(3, 5, 2, 8).transpose(1, 2)
                u = m.parameters_of("ssa_tok", side)["u"]
            else:
                own = m.parameters_of("ssa_tok_own", side)
                h, u = (x @ own["w"]).view(3, 5, 2, 8).transpose(1, 2), own["u"]
            want = want + torch.tanh((F.gelu(h) * u[None, :, None]).sum(-1))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
