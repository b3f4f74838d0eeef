"""The one attention core (``ssa_theory.functional``) through the public layer: masks by name, positions
that follow the padding, a cache that holds under batching, no data-dependent control flow on the
masked path, and a property test of the layer against a slow reference written once, here.

The reference (``reference``) knows nothing of the core: it takes each row alone, without its padding,
and computes every query's attention by hand, with an explicit float mask, from the module's own
projections and the strategy table's formulas (``strategies.apply``), composed as the paper writes
tau: 1 + the additive terms, times every factor."""

import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs

from ssa_theory import strategies as st
from ssa_theory.attention import Attention
from ssa_theory.nn import SelectiveAttention
from ssa_theory.variants import all_variants

D = 16


def _x(B, L, seed=0, d=D):
    return torch.randn(B, L, d, generator=torch.Generator().manual_seed(seed))


def _moved(m, seed=3):
    """Every strategy parameter moved off its neutral (initial) value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.temp.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (0.5 if p.dim() <= 1 else 0.0))
    return m


# --- the slow reference ------------------------------------------------------------------------------------


def _contract(p: torch.Tensor, shape: tuple) -> torch.Tensor:
    """A parameter as the formula contract hands it (strategies' module docstring), written here from that
    text: ("H", ...) -> (1, H, 1, ...), () -> (1, 1, 1), a matrix as it is."""
    if not shape:
        return p.reshape(1, 1, 1)
    return p.reshape(1, p.shape[0], 1, *p.shape[1:]) if shape[0] == "H" else p


def _params(m, s, prefix):
    return {p: _contract(m.temp[prefix + p], spec.shape) for p, spec in s.params.items()}


def _tau(m, side, x, proj, positions, n, q, extras):
    """tau of one side for one row alone (1, H_side, L) from the table's formulas: 1 + add terms, x factors."""
    heads = m.n_kv_heads if side in ("k", "v") else m.n_heads
    inputs = st.Inputs(x=x, proj=proj, positions=positions, n=n, q=q, train_length=m.train_length,
                       heads=lambda t: t.reshape(*t.shape[:-1], heads, -1).transpose(-2, -3),
                       linear=lambda a, w: a @ w, extras=extras, dtype=x.dtype)
    placed = [(s, _params(m, s, prefix)) for sd, s, prefix in m.placements if sd == side]
    add = [t for t in placed if t[0].combine == "add"]
    tau = None
    if add:
        tau = 1.0 + sum(st.apply(s, inputs, p) for s, p in add)
    for s, p in placed:
        if s.combine == "mul":
            f = st.apply(s, inputs, p)
            tau = f if tau is None else tau * f
    return tau


def _rot(t, pos, base):
    """RoPE by hand: channel pairs (i, i + d/2) rotated by angle pos * base^(-i / (d/2))."""
    half = t.shape[-1] // 2
    out = t.clone()
    for i in range(half):
        ang = pos.double() * base ** (-i / half)
        c, s = torch.cos(ang).to(t.dtype), torch.sin(ang).to(t.dtype)
        a, b = t[..., i], t[..., half + i]
        out[..., i], out[..., half + i] = a * c - b * s, a * s + b * c
    return out


def _score(m, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """One query-key score in the layer's geometry, by its definition."""
    dot = (q @ k) / math.sqrt(q.shape[-1])
    if m.score == "cosine":
        return m.score_bound * (q @ k) / (q.norm() * k.norm())
    if m.score == "softcap":
        return m.score_bound * torch.tanh(dot / m.score_bound)
    assert m.score in ("dot", "rownorm"), m.score  # rownorm: the dot score here, the row's step in reference()
    return dot


def reference(m: SelectiveAttention, x: torch.Tensor, kf: torch.Tensor | None = None) -> torch.Tensor:
    """One row alone (L, D), causal, positions 0..L-1: the layer's output (L, D), query by query."""
    L = x.shape[0]
    H, Hk, d = m.n_heads, m.n_kv_heads, m.d_head
    X = x[None]  # (1, L, D): one row, no leading axes
    q = m.q_proj(x).view(L, H, d).transpose(0, 1)  # (H, L, d)
    k = m.k_proj(x).view(L, Hk, d).transpose(0, 1)
    v = m.v_proj(x).view(L, Hk, d).transpose(0, 1)
    if m.q_norm is not None:
        q, k = m.q_norm(q), m.k_norm(k)
    positions = torch.arange(L)[None, None]  # (1, 1, L), 0-based
    n = torch.arange(1, L + 1, dtype=x.dtype)  # query i sees keys 0..i; token j, as a query, j + 1
    extras = {} if kf is None else {"k_freq": kf[None]}
    tq = _tau(m, "q", X, q[None], positions, n, q[None], extras)
    tk = _tau(m, "k", X, k[None], positions, n, None, extras)
    tv = _tau(m, "v", X, v[None], positions, n, None, extras)
    tq, tk, tv = (torch.ones(heads, L) if t is None else torch.broadcast_to(t, (1, heads, L))[0]
                  for t, heads in ((tq, H), (tk, Hk), (tv, Hk)))
    if m.rope_base is not None:
        q, k = _rot(q, torch.arange(L), m.rope_base), _rot(k, torch.arange(L), m.rope_base)
    sink = [(s, prefix) for sd, s, prefix in m.placements if sd == "sink"]
    gate = [(s, _params(m, s, prefix)) for sd, s, prefix in m.placements if sd == "out"]
    heads_out = []
    for h in range(H):
        g = h // (H // Hk)
        rows = []
        for i in range(L):
            logits = torch.full((L,), -math.inf, dtype=x.dtype)
            row = torch.stack([_score(m, q[h, i], k[g, j]) for j in range(i + 1)])
            if m.score == "rownorm":  # the row of dot scores centred over the keys it sees, scaled to norm B
                c = row - row.mean()
                row = m.score_bound * c / c.norm().clamp_min(1e-12)
            for j in range(i + 1):
                logits[j] = row[j] * tq[h, i] * tk[g, j]
            if sink:
                s, prefix = sink[0]
                logits = torch.cat([logits, m.temp[prefix + "s"][h].reshape(1).to(x.dtype)])
            p = torch.softmax(logits, -1)[:L]
            rows.append((p[:, None] * tv[g][:, None] * v[g]).sum(0))
        heads_out.append(torch.stack(rows))
    out = torch.stack(heads_out)[None]  # (1, H, L, d)
    for s, p in gate:
        inputs = st.Inputs(x=X, proj=None, positions=None, n=None, q=None, train_length=m.train_length,
                           heads=lambda t: t.reshape(*t.shape[:-1], H, -1).transpose(-2, -3),
                           linear=lambda a, w: a @ w, dtype=x.dtype)
        out = out * st.apply(s, inputs, p)
    return m.o_proj(out[0].transpose(0, 1).reshape(L, H * d))


def _padded(rows: list[torch.Tensor], side: str, fill: float = 3.0):
    """Rows of different lengths as one batch (B, Lmax, .), padded on ``side`` with junk, and the mask."""
    Lmax = max(r.shape[0] for r in rows)
    out = torch.full((len(rows), Lmax, *rows[0].shape[1:]), fill)
    real = torch.zeros(len(rows), Lmax, dtype=torch.bool)
    for b, r in enumerate(rows):
        sl = slice(Lmax - r.shape[0], Lmax) if side == "left" else slice(0, r.shape[0])
        out[b, sl], real[b, sl] = r, True
    return out, real


def _real(out: torch.Tensor, real: torch.Tensor, b: int) -> torch.Tensor:
    return out[b][real[b]]


# --- the reference is itself checked -----------------------------------------------------------------------


def test_the_reference_is_nanogpts_attention_for_vanilla():
    torch.manual_seed(0)
    m = SelectiveAttention(D, 4, variant="vanilla")
    x = _x(1, 6)[0]
    q, k, v = (p(x).view(6, 4, 4).transpose(0, 1) for p in (m.q_proj, m.k_proj, m.v_proj))
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(reference(m, x), m.o_proj(y.transpose(0, 1).reshape(6, D)))


def test_the_reference_sees_a_strategy_that_reads_the_row_length():
    """The check must be able to fail: a layer that gave log_n the full row length, not n, differs."""
    torch.manual_seed(0)
    m = SelectiveAttention(D, 4, variant="log_n")
    x = _x(1, 6)[0]
    torch.testing.assert_close(m(x[None])[0], reference(m, x), rtol=1e-5, atol=1e-5)
    wrong = SelectiveAttention(D, 4, variant="log_n", causal=False)
    wrong.load_state_dict(m.state_dict())
    assert not torch.allclose(wrong(x[None])[0], reference(m, x), atol=1e-3)


# --- the property test -------------------------------------------------------------------------------------

VARIANTS = sorted(all_variants())


def _reads_n_on_keys(inputs, params):
    """A key-side plug-in that reads n: key j's logits times 1 + sigmoid(c) log n."""
    return 1.0 + torch.sigmoid(params["c"]) * torch.log(inputs.n)


@pytest.fixture(autouse=True, scope="module")
def _key_side_plugin():
    st.register_strategy("_reads_n_on_keys", side="k", params={"c": st.Param(("H",), 0.0, -math.inf)}, range=(1, math.inf),
                         source="a test plug-in", about="key j's logits times 1 + sigmoid(c) log n")(_reads_n_on_keys)
    yield
    st.unregister("_reads_n_on_keys")


layouts = hs.tuples(
    hs.sampled_from(VARIANTS + ["_reads_n_on_keys"]),
    hs.integers(1, 4),  # B
    hs.lists(hs.integers(2, 7), min_size=4, max_size=4),  # the rows' real lengths (the first B used)
    hs.sampled_from(["left", "right"]),
    hs.sampled_from([(4, 4), (4, 2), (4, 1), (2, 2)]),  # (H, H_kv)
    hs.booleans(),  # RoPE
    hs.booleans(),  # QK-norm
    hs.integers(1, 6),  # prompt length (cached: the first call)
    hs.integers(1, 3),  # tokens per later call
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts)
@example(("ssa", 4, [4, 4, 2, 3], "left", (4, 4), False, False, 2, 1))  # B == L == H
@example(("log_n", 3, [3, 2, 3, 3], "left", (2, 2), True, True, 3, 1))  # B == L
@example(("freq", 2, [5, 2, 2, 2], "right", (4, 2), True, False, 1, 2))
@example(("sink", 2, [2, 6, 2, 2], "left", (2, 2), False, True, 4, 3))
def test_the_layer_equals_the_slow_reference_full_and_cached(layout):
    name, B, lengths, side, (H, Hk), rope, qk_norm, prompt, step = layout
    lengths = lengths[:B]
    torch.manual_seed(0)
    m = _moved(SelectiveAttention(D, H, n_kv_heads=Hk, variant=name, rope_base=100.0 if rope else None,
                                  qk_norm=qk_norm, train_length=3))
    rows = [_x(1, n, seed=10 + b)[0] for b, n in enumerate(lengths)]
    kfs = [torch.rand(n, generator=torch.Generator().manual_seed(20 + b)) * 0.9 + 0.05 for b, n in enumerate(lengths)]
    x, real = _padded(rows, side)
    kf, _ = _padded([f[:, None] for f in kfs], side, fill=0.5)
    kf = kf[..., 0]
    with torch.no_grad():
        refs = [reference(m, r, f) for r, f in zip(rows, kfs)]
        full = m(x, attention_mask=real, extras={"k_freq": kf})
        for b in range(B):
            torch.testing.assert_close(_real(full, real, b), refs[b], rtol=1e-4, atol=1e-5)
        # cached: the padded prompt, then each row's remaining real tokens, `step` at a time, unpadded
        prompts = [r[:min(prompt, r.shape[0])] for r in rows]
        xp, real_p = _padded(prompts, side)
        kp, _ = _padded([f[:min(prompt, f.shape[0]), None] for f in kfs], side, fill=0.5)
        cache = m.new_cache(B, xp.shape[1] + max(lengths) + step)  # later calls pad a row that is done
        got = [[] for _ in range(B)]
        out = m(xp, attention_mask=real_p, cache=cache, extras={"k_freq": kp[..., 0]})
        for b in range(B):
            got[b].append(_real(out, real_p, b))
        done = [p.shape[0] for p in prompts]
        while any(d < n for d, n in zip(done, lengths)):
            # every row takes `step` new tokens; a row already complete takes junk marked as padding
            chunk = torch.full((B, step, D), 3.0)
            cf = torch.full((B, step), 0.5)
            new = torch.zeros(B, step, dtype=torch.bool)
            for b in range(B):
                take = rows[b][done[b]:done[b] + step]
                chunk[b, :take.shape[0]], cf[b, :take.shape[0]] = take, kfs[b][done[b]:done[b] + step]
                new[b, :take.shape[0]] = True
            out = m(chunk, attention_mask=new, cache=cache, extras={"k_freq": cf})
            for b in range(B):
                got[b].append(out[b][new[b]])
                done[b] += int(new[b].sum())
        for b in range(B):
            torch.testing.assert_close(torch.cat(got[b]), refs[b], rtol=1e-4, atol=1e-5)


# --- masks by name -----------------------------------------------------------------------------------------


def test_padding_at_batch_equal_to_length_is_read_as_padding():
    """The bug: at B == L a (B, Lk) padding mask passed as a mask was read as (Lq, Lk). Now padding has its
    own keyword: padded keys get no weight, and query 0 of every row sees its first real key."""
    torch.manual_seed(0)
    m = SelectiveAttention(D, 2, variant="ssa")
    B = L = 6
    rows = [_x(1, L - b % 3, seed=b)[0] for b in range(B)]
    x, real = _padded(rows, "left")
    w = m.attention_weights(x, attention_mask=real).detach()
    assert float(w.masked_select(~real[:, None, None, :].expand_as(w)).abs().max()) == 0.0
    first = real.float().argmax(1)
    for b in range(B):
        assert torch.allclose(w[b, :, first[b], first[b]], torch.ones(2))  # its first real token sees itself only
        torch.testing.assert_close(_real(m(x, attention_mask=real), real, b), m(rows[b][None])[0])


def test_a_padding_tensor_given_as_attn_mask_is_refused_naming_the_keyword():
    m = SelectiveAttention(D, 2)
    with pytest.raises(ValueError, match=r"padding mask: pass it as attention_mask="):
        m(_x(3, 5), attn_mask=torch.ones(3, 5, dtype=torch.bool))
    # at B == Lq a 2-D attn_mask is (Lq, Lk), as documented: the same rule for every row
    x = _x(5, 5)
    tri = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(m(x, attn_mask=tri), m(x))


def test_masks_in_every_shape_agree_and_combine_with_padding():
    torch.manual_seed(0)
    m = _moved(SelectiveAttention(D, 4, variant="ssa", causal=False))
    x = _x(4, 5)
    keep = torch.rand(4, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.3
    ref = m(x, attn_mask=keep)
    torch.testing.assert_close(m(x, attn_mask=keep[:, None]), ref)
    torch.testing.assert_close(m(x, attn_mask=keep[:, None].expand(4, 4, 5, 5)), ref)
    real = torch.ones(4, 5, dtype=torch.bool)
    real[1, :2] = False
    both = m(x, attn_mask=keep, attention_mask=real)
    torch.testing.assert_close(both[0], ref[0])
    assert not torch.allclose(both[1], ref[1])


def test_attention_mask_accepts_hugging_face_integers_and_refuses_other_values():
    torch.manual_seed(0)
    m = SelectiveAttention(D, 2, variant="ssa")
    x = _x(2, 4)
    real = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(m(x, attention_mask=real), m(x, attention_mask=real.bool()))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        m(x, attention_mask=real * 2)
    with pytest.raises(ValueError, match="boolean or integer"):
        m(x, attention_mask=real.float())
    with pytest.raises(ValueError, match=r"must be \(B, L\)"):
        m(x, attention_mask=real[:, :3])


# --- positions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [(torch.tensor([0, 1, -1, 2]), ">= 0"), (torch.arange(4.0), "integers"),
                                        (torch.arange(5), r"\(L,\) or \(B, L\)"), (torch.ones(4, dtype=torch.bool), "integers")])
def test_explicit_positions_must_be_integers_of_at_least_zero(bad, match):
    m = SelectiveAttention(D, 2, variant="ssa")
    with pytest.raises(ValueError, match=match):
        m(_x(2, 4), positions=bad)


def test_explicit_positions_feed_the_strategies_and_not_the_visibility():
    torch.manual_seed(0)
    m = _moved(SelectiveAttention(D, 2, variant="ssa_q_pos"))
    x = _x(2, 4)
    shifted = m(x, positions=torch.arange(4) + 3)
    assert not torch.allclose(shifted, m(x))  # the position term reads them
    y = x.clone()
    y[:, -1] += 5
    torch.testing.assert_close(m(y, positions=torch.arange(4) + 3)[:, :-1], shifted[:, :-1])  # still causal


# --- the cache ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vanilla", "ssa", "log_n", "llama4", "sink"])
def test_batched_left_padded_generation_equals_each_row_alone(name):
    """Greedy decoding of prompts of different lengths, left-padded into one batch, one token at a time
    with the cache: the batch's tokens equal each prompt decoded alone without padding."""
    torch.manual_seed(0)
    V = 12
    emb, head = torch.nn.Embedding(V, D), torch.nn.Linear(D, V)
    m = _moved(SelectiveAttention(D, 2, variant=name, rope_base=50.0, train_length=3))
    prompts = [torch.tensor(p) for p in ([3, 1, 4, 1, 5], [9, 2], [6, 5, 3])]

    def generate(tokens, real, steps=6):
        cache = m.new_cache(tokens.shape[0], tokens.shape[1] + steps)
        logits = head(m(emb(tokens), attention_mask=real, cache=cache))
        out = []
        for _ in range(steps):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            logits = head(m(emb(nxt), cache=cache))  # the new token only: no mask needed
        return torch.cat(out, 1)

    with torch.no_grad():
        batch, real = _padded([p[:, None] for p in prompts], "left", fill=0)
        together = generate(batch[..., 0].long(), real)
        alone = [generate(p[None], None)[0] for p in prompts]
    for b, a in enumerate(alone):
        assert together[b].tolist() == a.tolist()


def test_the_full_padding_mask_may_be_passed_on_every_call_as_hugging_face_does():
    torch.manual_seed(0)
    m = _moved(SelectiveAttention(D, 2, variant="ssa"))
    rows = [_x(1, 4, seed=1)[0], _x(1, 2, seed=2)[0]]
    x, real = _padded(rows, "left")
    nxt = _x(2, 1, seed=3)
    short, full = m.new_cache(2, 8), m.new_cache(2, 8)
    m(x, attention_mask=real, cache=short)
    m(x, attention_mask=real, cache=full)
    a = m(nxt, cache=short)
    b = m(nxt, attention_mask=torch.cat([real, torch.ones(2, 1, dtype=torch.bool)], 1), cache=full)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1], m(torch.cat([rows[1], nxt[1]])[None])[0, -1:])


def test_cache_misuse_is_one_line():
    m = SelectiveAttention(D, 2)
    cache = m.new_cache(2, 4)
    with pytest.raises(ValueError, match="the cache holds 2 rows, but this call has a batch of 3"):
        m(_x(3, 1), cache=cache)
    m(_x(2, 3), cache=cache)
    with pytest.raises(ValueError, match="the cache holds 4 tokens; 3 are written and 2 more do not fit"):
        m(_x(2, 2), cache=cache)
    with pytest.raises(ValueError, match="the cache is torch.float32 on cpu, but the input is torch.float64"):
        m.double()(_x(2, 1).double(), cache=cache)
    with pytest.raises(ValueError, match="on meta"):
        SelectiveAttention(D, 2)(_x(2, 1), cache=SelectiveAttention(D, 2).new_cache(2, 4, device="meta"))
    with pytest.raises(ValueError, match="batch_size >= 1"):
        m.new_cache(0, 4)


# --- a key-side strategy that reads n -------------------------------------------------------------------


def test_a_key_side_strategy_that_reads_n_runs_in_both_layers_and_conforms():
    from ssa_theory.testing import assert_conforms

    assert_conforms("_reads_n_on_keys")
    assert_conforms(_reads_n_on_keys)  # the decorated function itself
    layer = Attention("_reads_n_on_keys", D, generators=[torch.Generator().manual_seed(0)], n_heads=2)
    assert torch.isfinite(layer(_x(2, 5)[None], causal=True)).all()


# --- no data-dependent control flow on the masked path -----------------------------------------------------


def _padded_call(m, x, real):
    return m(x, attention_mask=real, attn_mask=torch.ones(x.shape[1], x.shape[1], dtype=torch.bool))


def test_compile_fullgraph_with_masks_and_padding():
    torch.manual_seed(0)
    m = _moved(SelectiveAttention(D, 2, variant="ssa"))
    x = _x(2, 5)
    real = torch.tensor([[False, False, True, True, True], [True] * 5])
    compiled = torch.compile(_padded_call, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(m, x, real), _padded_call(m, x, real))


def test_vmap_over_rows_with_padding():
    torch.manual_seed(0)
    m = _moved(SelectiveAttention(D, 2, variant="ssa"))
    x = _x(3, 5)
    real = torch.ones(3, 5, dtype=torch.bool)
    real[0, :2] = False
    real[2, :4] = False  # a row whose first four queries see nothing
    one = lambda xb, rb: _padded_call(m, xb[None], rb[None])[0]  # noqa: E731
    torch.testing.assert_close(torch.func.vmap(one)(x, real), _padded_call(m, x, real))


def test_meta_tensors_with_masks_and_padding_give_shapes():
    m = SelectiveAttention(D, 2, variant="ssa", rope_base=100.0).to("meta")
    x = torch.empty(2, 5, D, device="meta")
    real = torch.empty(2, 5, dtype=torch.bool, device="meta")
    assert _padded_call(m, x, real).shape == (2, 5, D)
    cache = m.new_cache(2, 8)
    assert m(x, attention_mask=real, cache=cache).shape == (2, 5, D)


# --- bounded score geometries ------------------------------------------------------------------------------


@pytest.mark.parametrize("score,bound", [("cosine", 2.5), ("softcap", 1.5), ("rownorm", 2.0)])
@pytest.mark.parametrize("variant", ["vanilla", "ssa", "log_n", "ssmax"])
def test_a_bounded_geometry_is_its_definition_on_every_path(score, bound, variant):
    """The layer in the cosine (fused kernel, unit q and k), softcap and rownorm (explicit) geometries
    against the reference by definition; the weights it reports, and a cached decode, give the same."""
    torch.manual_seed(1)
    m = _moved(SelectiveAttention(D, 2, variant=variant, score=score, score_bound=bound, train_length=4))
    x = _x(2, 7, seed=4)
    y = m(x)
    for b in range(2):
        torch.testing.assert_close(y[b], reference(m, x[b]), atol=2e-5, rtol=1e-4)
    w = m.attention_weights(x)
    assert torch.all(w.sum(-1).sub(1).abs() < 1e-5)
    cache = m.new_cache(2, 7)
    steps = torch.cat([m(x[:, :4], cache=cache), m(x[:, 4:5], cache=cache), m(x[:, 5:], cache=cache)], 1)
    torch.testing.assert_close(steps, y, atol=2e-5, rtol=1e-4)


def test_the_cosine_scores_stay_inside_their_bound():
    """However large q and k grow, a cosine row's logit spread is at most 2B (vanilla): no gap beyond the bound."""
    m = SelectiveAttention(D, 1, variant="vanilla", score="cosine", score_bound=3.0)
    with torch.no_grad():
        m.q_proj.weight.mul_(100.0)
        m.k_proj.weight.mul_(100.0)
    w = m.attention_weights(_x(1, 12, seed=5))[0, 0]
    logw = torch.log(w[-1])  # the last query sees all 12 keys
    assert (logw.max() - logw.min()).item() <= 6.0 + 1e-4


def test_a_geometry_is_checked_with_its_bound():
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        SelectiveAttention(D, 2, score="cos", score_bound=1.0)
    with pytest.raises(ValueError, match="needs score_bound > 0"):
        SelectiveAttention(D, 2, score="softcap")
    with pytest.raises(ValueError, match="unbounded"):
        SelectiveAttention(D, 2, score_bound=2.0)
