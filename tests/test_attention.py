"""The attention module: limit identities, masks, the fused path, gradients (STYLE habit 2)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssa_theory.attention import SCORES, VARIANTS, Attention, Variant, all_variants, get_variant
from ssa_theory.seeding import torch_generators

E, B, L, D, H = 2, 3, 7, 12, 3


NO_NEUTRAL = {"log_n", "ssmax", "asentmax"}  # strategies with no setting that equals vanilla attention


def make(variant, score="dot", bound=None, seeds=(0, 1), **kw):
    torch.manual_seed(0)  # nothing in the layer may depend on it; inputs below use their own generator
    kw.setdefault("train_length", L)  # yarn and qwen: neutral up to the training length
    kw.setdefault("causal", False)  # these tests attend over the whole row unless they say causal=True
    return Attention(variant, D, generators=torch_generators(list(seeds), "init"), n_heads=H, score=score,
                     score_bound=bound, **kw).double()


def freq(length=L):
    """Token frequencies for the 'freq' strategy: (B, length) in (0, 1]."""
    return torch.rand(B, length, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 0.9 + 0.05


def inputs(seed=0, length=L):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(E, B, length, D, generator=g, dtype=torch.float64)


def neutralise(layer):
    """u = 0 and alpha = -inf: every temperature is exactly 1."""
    with torch.no_grad():
        for name, p in layer.temp.items():
            if name.endswith("_u") or name == "scale_g":
                p.zero_()
            elif name.endswith("_alpha"):
                p.fill_(-math.inf)
            elif name == "scale_beta":
                p.fill_(math.inf)  # exp(-exp(beta)) = 0
        if layer.w_gate is not None:
            layer.w_gate.zero_()
    return layer


def copy_weights(src, dst):
    with torch.no_grad():
        for name in ("w_q", "w_k", "w_v", "w_o"):
            if getattr(src, name) is not None:
                getattr(dst, name).copy_(getattr(src, name))


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - NO_NEUTRAL))
@pytest.mark.parametrize("score", SCORES)
def test_neutral_ssa_equals_vanilla(name, score):
    x = inputs()
    vanilla = make("vanilla", score, 2.0)
    ssa = neutralise(make(name, score, 2.0))
    copy_weights(vanilla, ssa)
    out_v, p_v = vanilla(x, causal=True, return_probs=True)
    out_s, p_s = ssa(x, causal=True, return_probs=True, extras={"k_freq": freq()})
    torch.testing.assert_close(p_s, p_v, rtol=0, atol=1e-12)
    torch.testing.assert_close(out_s, out_v, rtol=0, atol=1e-12)


def test_same_seed_same_weights_regardless_of_variant():
    a, b = make("vanilla"), make("ssa")
    torch.testing.assert_close(a.w_q, b.w_q)
    torch.testing.assert_close(a.w_o, b.w_o)


@pytest.mark.parametrize("name", ["ssa", "global", "log_n", "ssmax", "yarn", "qwen", "ssa_released", "asentmax", "freq"])
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("causal", [False, True])
def test_rows_are_distributions_and_causal_mask_holds(name, score, causal):
    layer = make(name, score, 2.0, train_length=3)
    with torch.no_grad():  # non-trivial temperatures
        for p in layer.temp.values():
            p.normal_(0, 1, generator=torch.Generator().manual_seed(3))
    _, probs = layer(inputs(), causal=causal, return_probs=True, extras={"k_freq": freq()})
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    assert (probs >= 0).all()
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
    if causal:
        assert probs[..., future].abs().max() == 0
    else:
        assert probs[..., future].abs().max() > 0


def test_causal_output_ignores_the_future():
    layer = make("ssa")
    x = inputs()
    y = x.clone()
    y[:, :, -1] += 5.0  # change only the last position
    out_x, out_y = layer(x, causal=True), layer(y, causal=True)
    torch.testing.assert_close(out_x[:, :, :-1], out_y[:, :, :-1])
    assert not torch.allclose(out_x[:, :, -1], out_y[:, :, -1])


@pytest.mark.parametrize("name", sorted(all_variants()))
@pytest.mark.parametrize("causal", [False, True])
def test_fused_path_matches_explicit(name, causal):
    layer = make(name, train_length=3)
    with torch.no_grad():
        for p in layer.temp.values():
            p.normal_(0, 1, generator=torch.Generator().manual_seed(4))
    x = inputs()
    fused = layer(x, causal=causal, extras={"k_freq": freq()})
    explicit, _ = layer(x, causal=causal, return_probs=True, extras={"k_freq": freq()})
    torch.testing.assert_close(fused, explicit)


def test_vanilla_matches_scaled_dot_product_attention_by_hand():
    layer = make("vanilla", value_proj=True, out_proj=False)
    x = inputs()
    q = (x @ layer.w_q[:, None]).reshape(E, B, L, H, -1).transpose(2, 3)
    k = (x @ layer.w_k[:, None]).reshape(E, B, L, H, -1).transpose(2, 3)
    v = (x @ layer.w_v[:, None]).reshape(E, B, L, H, -1).transpose(2, 3)
    ref = F.scaled_dot_product_attention(q.reshape(E * B, H, L, -1), k.reshape(E * B, H, L, -1),
                                         v.reshape(E * B, H, L, -1), is_causal=True)
    ref = ref.reshape(E, B, H, L, -1).transpose(2, 3).reshape(E, B, L, -1)
    torch.testing.assert_close(layer(x, causal=True), ref)
    # and the textbook formula, softmax(q k^T / sqrt(d)) v
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), -math.inf)
    manual = (torch.softmax(s, -1) @ v).transpose(2, 3).reshape(E, B, L, -1)
    torch.testing.assert_close(layer(x, causal=True, return_probs=True)[0], manual)


def test_query_temperature_scales_logit_rows():
    """tau_q multiplies row i of the logits: a larger tau gives a spikier (lower-entropy) row."""
    layer = make("ssa_q_tok")  # same seeds, so the same W_q, W_k as the vanilla layer
    x = inputs()
    base = make("vanilla").logits(x)
    with torch.no_grad():
        layer.parameters_of("ssa_tok", "q")["u"].normal_(0, 1, generator=torch.Generator().manual_seed(5))
    tau = layer.temperature("q", x)
    logits = layer.logits(x)
    torch.testing.assert_close(logits, base * tau[..., None])

    def entropy(z):
        p = torch.softmax(z, -1)
        return -(p * torch.log(p)).sum(-1)

    h, h0 = entropy(logits), entropy(base)
    sharper, flatter = tau > 1 + 1e-6, tau < 1 - 1e-6
    assert sharper.any() and flatter.any()  # both directions are exercised
    assert (h[sharper] < h0[sharper]).all()
    assert (h[flatter] > h0[flatter]).all()


def test_token_term_is_one_plus_tanh_of_u_dot_gelu_of_the_query():
    """Against an independent formula: GELU(h) = h Phi(h) written with erf, tanh applied by hand."""
    layer = make("ssa_q_tok")
    with torch.no_grad():
        layer.parameters_of("ssa_tok", "q")["u"].normal_(0, 1, generator=torch.Generator().manual_seed(9))
    x = inputs()
    q = (x @ layer.w_q[:, None]).reshape(E, B, L, H, -1)  # (E,B,L,H,d), by hand
    gelu = 0.5 * q * (1 + torch.erf(q / math.sqrt(2)))
    u = layer.parameters_of("ssa_tok", "q")["u"]  # (E, H, d)
    s = (gelu * u[:, None, None]).sum(-1)  # (E, B, L, H)
    expected = 1 + (torch.exp(2 * s) - 1) / (torch.exp(2 * s) + 1)
    torch.testing.assert_close(layer.temperature("q", x), expected.transpose(2, 3))


def test_position_term_is_one_plus_sigmoid_alpha_log_n():
    layer = make("ssa_q_pos")
    with torch.no_grad():
        layer.parameters_of("ssa_pos", "q")["alpha"].fill_(0.3)
    tau = layer.temperature("q", inputs())
    expected = 1 + torch.sigmoid(torch.tensor(0.3, dtype=torch.float64)) * torch.log(torch.arange(1, L + 1, dtype=torch.float64))
    torch.testing.assert_close(tau, expected.expand_as(tau))


def test_value_temperature_scales_values():
    layer = make("ssa_v_tok", value_proj=True, out_proj=False)
    with torch.no_grad():
        layer.parameters_of("ssa_tok", "v")["u"].normal_(0, 1, generator=torch.Generator().manual_seed(6))
    x = inputs()
    out, probs = layer(x, return_probs=True)
    v = (x @ layer.w_v[:, None]).reshape(E, B, L, H, -1).transpose(2, 3)
    tau = layer.temperature("v", x)
    manual = (probs @ (v * tau[..., None])).transpose(2, 3).reshape(E, B, L, -1)
    torch.testing.assert_close(out, manual)


@pytest.mark.parametrize("name", ["ssa", "ssa_noshare", "ssa_qkv", "global", "global_free", "ssmax", "ssa_released",
                                  "asentmax", "freq"])
def test_gradients_reach_temperature_parameters(name):
    layer = make(name)
    with torch.no_grad():  # at u = 0 an unshared projection gets no gradient yet: move off it
        for pname, p in layer.temp.items():
            if pname.endswith("_u") or pname.startswith("scale_w"):
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(7))
    out = layer(inputs(), causal=True, extras={"k_freq": freq()})
    out.pow(2).sum().backward()
    assert layer.temp, "variant has no temperature parameters"
    for pname, p in layer.temp.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_members_are_independent():
    """Member 1's output does not change when member 0's weights do."""
    layer = make("ssa")
    x = inputs()
    before = layer(x)
    with torch.no_grad():
        layer.w_q[0].mul_(3.0)
        layer.parameters_of("ssa_tok", "q")["u"][0].add_(1.0)
    after = layer(x)
    torch.testing.assert_close(after[1], before[1])
    assert not torch.allclose(after[0], before[0])


@pytest.mark.parametrize("score,bound", [("softcap", 1.5), ("cosine", 1.5)])
def test_bounded_scores_stay_in_range(score, bound):
    layer = make("vanilla", score, bound)
    with torch.no_grad():
        layer.w_q.mul_(50)
    logits = layer.logits(inputs())
    assert logits.abs().max() <= bound + 1e-9


def test_rownorm_rows_have_norm_bound_over_visible_keys():
    layer = make("vanilla", "rownorm", 2.5)
    logits = layer.logits(inputs(), causal=True)
    vis = torch.tril(torch.ones(L, L, dtype=torch.bool))
    finite = torch.where(vis, logits, torch.zeros_like(logits))
    # row 0 sees one key: its centred row is 0; all others have norm exactly B
    norms = finite.norm(dim=-1)[..., 1:]
    torch.testing.assert_close(norms, torch.full_like(norms, 2.5))
    centred = finite.sum(-1)[..., 1:]
    torch.testing.assert_close(centred, torch.zeros_like(centred))


def test_output_gate_scales_each_querys_output():
    layer = make("gated", out_proj=False)
    with torch.no_grad():
        layer.w_gate.normal_(0, 1, generator=torch.Generator().manual_seed(8))
    x = inputs()
    vanilla = make("vanilla", out_proj=False)(x)
    gate = 2 * torch.sigmoid(x @ layer.w_gate[:, None])
    torch.testing.assert_close(layer(x), vanilla * gate)
    out = layer(x)
    out.sum().backward()
    assert layer.w_gate.grad.abs().sum() > 0


# --- temperature strategies: each factor against its formula, n counted per query ------------------


def _factor(name, n, **kw):
    layer = make(name, **kw)
    return layer, layer.strategy_scale(torch.as_tensor(n, dtype=torch.float64))


def test_strategy_factors_follow_their_formulas():
    n = torch.tensor([1.0, 2.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    ln = torch.log(n)
    torch.testing.assert_close(_factor("log_n", n)[1], ln)
    layer, f = _factor("ssmax", n)
    torch.testing.assert_close(f, torch.ones(E, 1, H, 1, dtype=torch.float64) * ln)  # s starts at 1
    f = _factor("yarn", n, train_length=10)[1]
    torch.testing.assert_close(f, torch.tensor([1.0, 1.0, 1.0, (1 + 0.1 * math.log(10)) ** 2, (1 + 0.1 * math.log(100)) ** 2],
                                               dtype=torch.float64))
    f = _factor("qwen", n, train_length=10)[1]
    torch.testing.assert_close(f, torch.tensor([1.0, 1.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    layer, f = _factor("ssa_released", n)
    torch.testing.assert_close(f, 1 + math.exp(-math.exp(2.0)) * ln.expand(E, 1, 1, -1))
    layer, f = _factor("global", n)
    torch.testing.assert_close(f, torch.ones(E, 1, H, len(n), dtype=torch.float64))


def test_asentmax_factor_against_its_formula():
    layer = make("asentmax")
    with torch.no_grad():
        layer.parameters_of("asentmax")["w"].normal_(0, 1, generator=torch.Generator().manual_seed(13))
        layer.parameters_of("asentmax")["w2"].normal_(0, 1, generator=torch.Generator().manual_seed(14))
    q = torch.randn(E, B, H, L, D // H, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    n = torch.arange(1, L + 1, dtype=torch.float64) + 5
    a = (q * layer.parameters_of("asentmax")["w"][:, None, :, None, :]).sum(-1)
    b = (q * layer.parameters_of("asentmax")["w2"][:, None, :, None, :]).sum(-1)
    expected = 1 + torch.log1p(torch.exp(a)) * torch.log(n) ** (2 * torch.tanh(b))
    torch.testing.assert_close(layer.strategy_scale(n, q), expected)


@pytest.mark.parametrize("name", ["log_n", "ssmax", "yarn", "qwen", "ssa_released", "asentmax"])
def test_changing_n_changes_the_output(name):
    """A length-aware strategy sees how many keys a query attends over: more distractors, another scale."""
    layer = make(name, train_length=2)
    with torch.no_grad():  # move the learned strategies off settings where n drops out
        for pname, p in layer.temp.items():
            p.fill_(-1.0 if pname == "scale_beta" else 0.3)
    x = inputs()
    q = x[:, :, :1]
    short, long = x[:, :, :3], torch.cat([x[:, :, :3]] * 3, dim=2)  # same keys, repeated: n = 3 vs 9
    _, p_short = layer(q, short, return_probs=True)
    _, p_long = layer(q, long, return_probs=True)
    # vanilla attention's mass on the first three keys together is unchanged by repeating them thrice
    # (each copy gets a third); a strategy whose scale moves with n changes the row's sharpness
    mass_short = p_short[..., :3]
    mass_long = p_long[..., :3] + p_long[..., 3:6] + p_long[..., 6:9]
    assert not torch.allclose(mass_short, mass_long)
    vanilla = make("vanilla")
    _, v_short = vanilla(q, short, return_probs=True)
    _, v_long = vanilla(q, long, return_probs=True)
    torch.testing.assert_close(v_short, v_long[..., :3] + v_long[..., 3:6] + v_long[..., 6:9])


def test_n_is_counted_per_query_under_a_causal_mask():
    """Under a causal mask query i sees i keys: log_n scales row i by log i, not by the row length."""
    layer, base = make("log_n"), make("vanilla")
    x = inputs()
    got, ref = layer.logits(x, causal=True), base.logits(x, causal=True)
    scale = torch.log(torch.arange(1, L + 1, dtype=torch.float64))[:, None]
    torch.testing.assert_close(torch.nan_to_num(got, neginf=0.0), torch.nan_to_num(ref * scale, neginf=0.0))
    # with an explicit mask of the same shape, the same counts
    tril = torch.tril(torch.ones(L, L, dtype=torch.bool))
    torch.testing.assert_close(torch.nan_to_num(layer.logits(x, mask=tril), neginf=0.0),
                               torch.nan_to_num(got, neginf=0.0))


def test_freq_scales_each_keys_logits_by_its_rarity():
    layer, base = make("freq"), make("vanilla")
    with torch.no_grad():
        layer.parameters_of("freq")["g"].fill_(0.5)
    x, f = inputs(), freq()
    expected = base.logits(x) * (1 + 0.5 * torch.log(1 / f))[None, :, None, None, :]
    torch.testing.assert_close(layer.logits(x, extras={"k_freq": f}), expected)
    with pytest.raises(ValueError, match="k_freq"):
        layer.logits(x)


@pytest.mark.parametrize("name", ["freq", "ssa_k", "ssa_qkv", "vanilla"])
def test_query_and_key_inverse_temperatures_are_every_factor_on_the_logits(name):
    """logits = scores x tau_q (rows) x tau_k (columns), with the two public accessors (what the
    ablation prices); vanilla and query-only variants have no key factor."""
    layer, base = make(name), make("vanilla")
    with torch.no_grad():
        for p in layer.temp.values():
            p.uniform_(-0.8, 0.8, generator=torch.Generator().manual_seed(5))
    x, f = inputs(), freq()
    L = x.shape[2]
    tq = layer.query_inverse_temperature(x, L)
    tk = layer.key_inverse_temperature(x, extras={"k_freq": f})
    assert (tk is None) == (name == "vanilla")
    expected = base.logits(x) * tq[..., :, None] * (1.0 if tk is None else tk[..., None, :])
    torch.testing.assert_close(layer.logits(x, extras={"k_freq": f}), expected)


def test_strategies_that_need_a_training_length_say_so():
    with pytest.raises(ValueError, match="train_length"):
        Attention("yarn", D, generators=torch_generators([0], "init"), n_heads=H)


def test_unknown_names_are_refused_with_suggestions():
    with pytest.raises(ValueError, match="did you mean 'ssa_q'"):
        get_variant("ssa_qq")
    with pytest.raises(ValueError, match="score geometry"):
        make("vanilla", "softcapp", 1.0)
    with pytest.raises(ValueError, match="score_bound"):
        make("vanilla", "softcap", None)
    with pytest.raises(ValueError, match="unknown q terms"):
        Variant("bad", q=frozenset({"posn"}))


def test_cross_attention_with_explicit_positions():
    layer = make("ssa_q")
    x, ctx = inputs(0, 2), inputs(1, 5)
    out, probs = layer(x, ctx, q_pos=torch.tensor([6, 7]), k_pos=torch.arange(1, 6), return_probs=True)
    assert out.shape == (E, B, 2, D) and probs.shape == (E, B, H, 2, 5)


@pytest.mark.parametrize("name", ["vanilla", "ssa", "ssa_q_pos"])
def test_plain_causal_fast_path_equals_an_explicit_mask(name):
    """is_causal=True (no mask tensor) and an explicit lower-triangular mask give the same layer."""
    layer = make(name)
    with torch.no_grad():
        for p in layer.temp.values():
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(10))
    x = inputs()
    tril = torch.tril(torch.ones(L, L, dtype=torch.bool))
    torch.testing.assert_close(layer(x, causal=True), layer(x, mask=tril))


def test_changing_the_position_changes_the_position_term():
    layer = make("ssa_q_pos")
    with torch.no_grad():
        layer.parameters_of("ssa_pos", "q")["alpha"].fill_(0.0)
    x = inputs()
    a = layer(x, x, q_pos=torch.arange(1, L + 1), k_pos=torch.arange(1, L + 1))
    b = layer(x, x, q_pos=torch.arange(1, L + 1) + 100, k_pos=torch.arange(1, L + 1))
    assert not torch.allclose(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_fused_matches_cpu_explicit(name, causal):
    layer = make(name, train_length=3).float()
    with torch.no_grad():
        for p in layer.temp.values():
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(11))
    x, f = inputs().float(), freq().float()
    cpu, _ = layer(x, causal=causal, return_probs=True, extras={"k_freq": f})
    gpu = layer.to("cuda")(x.to("cuda"), causal=causal, extras={"k_freq": f.to("cuda")}).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    layer = make("ssa").float()
    x = inputs().float()
    cpu = layer(x, causal=True)
    gpu = layer.to("cuda")(x.to("cuda"), causal=True).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


# --- the fused kernel's row limit -------------------------------------------------------------------


def test_fused_calls_stay_within_the_row_limit_and_give_the_same_numbers(monkeypatch):
    """With the limit lowered to 5 (batch x head) rows, a 2-member, 4-context, 2-head batch (16 rows) goes
    to SDPA in calls of at most 4 rows, and the output equals the one-call output exactly."""
    import ssa_theory.functional as attention_module

    layer = Attention("ssa", 8, generators=[torch.Generator().manual_seed(i) for i in range(2)], n_heads=2)
    x = torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(1))
    pad = torch.ones(4, 1, 6, 6, dtype=torch.bool).tril()  # (B, H, Lq, Lk), broadcast over members and heads
    pad[1, :, 5, 0] = False
    whole = [layer(x, causal=True), layer(x, mask=pad)]
    rows = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(q, k, v, **kw):
        rows.append(q.shape[0] * q.shape[1])
        return real(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    monkeypatch.setattr(attention_module, "SDPA_ROW_LIMIT", 5)
    split = [layer(x, causal=True), layer(x, mask=pad)]
    assert rows and max(rows) <= 5 and sum(rows) == 2 * 16
    for a, b in zip(whole, split):
        assert torch.equal(a, b)


def test_denoising_evaluation_stays_within_the_row_limit_at_8_seeds(monkeypatch):
    """The case that exceeded the limit: the default regimes (9) x 8 seeds x 1024 contexts gave one SDPA
    call 73,728 rows. Every call now has at most 65,535 (counted on the CPU)."""
    from ssa_theory.attention import SDPA_ROW_LIMIT
    from ssa_theory.experiments import denoising as dn
    from ssa_theory.skeleton import ModelSpec

    cfg = dn.DenoisingConfig()
    members = dn.members_of(cfg, list(range(8)))
    pv = dn.regimes_of(cfg, members)
    assert len(members) == 72
    rows = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(q, k, v, **kw):
        rows.append(q.shape[0] * q.shape[1])
        return real(q, k, v, **kw)

    net = dn.DenoisingModel(ModelSpec.of("vanilla"), cfg, [torch.Generator().manual_seed(i) for i in range(72)])
    batch = dn.sample([torch.Generator().manual_seed(i) for i in range(72)], pv, cfg, 1024, torch.device("cpu"))
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        errors = dn.model_errors(net, batch)
    assert errors.shape == (72, 1024)
    assert rows and max(rows) <= SDPA_ROW_LIMIT and sum(rows) == 72 * 1024 * net.attn.n_heads


# --- strategies added through the table: llama4, sink, qwen_gate -------------------------------------------


def test_llama4_factor_against_its_formula():
    """1 + 0.1 log(1 + floor((p + 1) / L0)) with p the 0-based position: 1 until p + 1 reaches L0."""
    layer = make("llama4", train_length=3)
    x = inputs(length=10)
    tau = layer.query_inverse_temperature(x, 10)[0, 0, 0]  # (L,)
    p = torch.arange(10, dtype=torch.float64)
    torch.testing.assert_close(tau, 1 + 0.1 * torch.log(1 + torch.floor((p + 1) / 3)))
    assert tau[1] == 1 and tau[2] > 1


def test_the_sink_takes_its_share_of_every_row():
    """A sink logit s gives each row's keys exp(z) / (sum exp(z) + exp(s)): the probabilities sum to
    1 - p_sink, and at s = -inf the layer is vanilla attention."""
    layer = make("sink")
    with torch.no_grad():
        layer.parameters_of("sink")["s"].fill_(0.5)
    x = inputs()
    _, probs = layer(x, causal=True, return_probs=True)
    logits = layer.logits(x, causal=True)
    expected = 1 - math.exp(0.5) / (torch.exp(logits).sum(-1) + math.exp(0.5))
    torch.testing.assert_close(probs.sum(-1), expected)


def test_a_query_with_no_visible_key_gets_zero_on_both_paths():
    layer = make("ssa")
    x = inputs()
    mask = torch.ones(B, L, L, dtype=torch.bool)  # (B, Lq, Lk): a batch axis
    mask[1, 2] = False  # batch row 1, query 2 sees nothing
    fused = layer(x, mask=mask)
    explicit, probs = layer(x, mask=mask, return_probs=True)
    for out in (fused, explicit):
        assert torch.isfinite(out).all() and (out[:, 1, 2] == 0).all() and (out[:, 0, 2] != 0).any()
    assert (probs[:, 1, :, 2] == 0).all() and torch.isfinite(probs).all()
    torch.testing.assert_close(fused, explicit)
    explicit.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_a_batch_mask_is_never_broadcast_onto_heads():
    """(B, Lq, Lk) with B == H: masking batch row 0's last key changes row 0 on every head, not head 0 of
    every row (the bug of the landed layer)."""
    layer = Attention("vanilla", D, generators=torch_generators([0], "init"), n_heads=B, causal=False).double()
    x = inputs()[:1]
    keep = torch.ones(B, L, L, dtype=torch.bool)
    keep[0, :, -1] = False
    _, probs = layer(x, mask=keep, return_probs=True)
    assert (probs[0, 0, :, :, -1] == 0).all()  # every head of row 0
    assert (probs[0, 1:, :, :, -1] > 0).all()  # no head of the other rows
