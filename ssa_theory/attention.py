"""One attention layer; vanilla attention and Selective Self-Attention (SSA) are named variants of it.

SSA (Zhang et al., NeurIPS 2024, section 3; our reading is in ``paper_repro.md``) scales query, key or value rows by an inverse temperature tau, a scalar per
token and head (lower temperature T = 1/tau means a sparser, spikier row):

    logits_ij = tau_q(x_i, i) * tau_k(x_j, j) * score(q_i, k_j)
    out_i     = sum_j softmax_j(logits_ij) * tau_v(x_j, j) * v_j

    tau(x, n) = 1 + [pos] sigmoid(alpha) * log n + [tok] tanh(u . GELU(h(x)))

n is the token's 1-based position; ``[pos]``/``[tok]`` mark the terms the variant switches on for
that side. With weight sharing (the default) ``h(x)`` is the side's own projection (q, k or v of
that head), so the token term adds one vector u per head and side; without sharing it gets its own
projection. A side with no terms has tau = 1. At ``u = 0`` and ``alpha -> -inf`` every variant is
vanilla attention exactly (tested).

The ``gated`` variant is the nearest competitor of value selectivity and easily confused with it:
an output gate ``out_i <- out_i * 2 sigmoid(x_i W_g)`` (elementwise, neutral at ``W_g = 0``) scales
what query i *receives*, whereas a value temperature scales what each token j *contributes*.

Every temperature, SSA's terms included, is a strategy declared once in ``ssa_theory.strategies``
(its side, parameters, formula, needs, range, neutral setting and source); a variant places
strategies on sides, and this layer applies them through the table, never through a copy of a
formula. Competing temperature strategies are named variants too: a variant's ``scale`` is one more
strategy from the table, most of them a factor on each query's logits as a function of n, the number
of keys that query sees (per query under a causal mask; the full row length is wrong there), and
sometimes of the query itself (L is the layer's ``train_length``):

    global       1 + tanh(g_h)                       one learned inverse temperature per head, in (0, 2)
    global_free  exp(g_h)                            the same, unbounded
    log_n        log n                               log-length scaling (Chiang & Cholak 2022)
    ssmax        s_h log n                           Scalable-Softmax (Nakanishi 2025), s learned per head
    yarn         (1 + 0.1 ln max(1, n / L))^2        YaRN's fixed factor; squared, as YaRN scales q and k
    qwen         max(1, log n / log L)               Qwen-style log-n scaling past the training length
    released     1 + exp(-exp(beta)) log n           the SSA authors' released code: one beta per layer
    asentmax     1 + softplus(w.q) (log n)^(2 tanh(w'.q))   ASEntmax's scale, used with softmax
    freq         (keys) 1 + c_h log(1 / f_j)          frequency-based: key j's logits scaled by its
                                                     token's training frequency f_j (given as k_freq)
    llama4       1 + 0.1 log(1 + floor(p / L))        Llama 4's attention temperature tuning (p 1-based)
    sink         one extra logit s_h, zero value      a learned per-head attention sink (gpt-oss)
    qwen_gate    (outputs) sigmoid(x W_g + b_h)       Gated Attention's head-wise output gate (Qwen)

The score geometry is a separate, orthogonal choice (``SCORES``). For ``dot`` the temperature can be
folded into q, k and v, and the layer runs on ``torch.nn.functional.scaled_dot_product_attention``;
the other geometries bound the score pattern, so that only the temperature can change a row's
logit scale (the setting in which ``graph_transition`` studies learned temperatures):

    dot      q.k / sqrt(d)
    cosine   B * cos(q, k)                       every score in [-B, B]
    softcap  B * tanh(q.k / (sqrt(d) B))         every score in (-B, B)  (logit soft-capping)
    rownorm  B * c_i / ||c_i||, c_i the row of dot scores centred over the visible keys:
             each query's score row has 2-norm B

Parameters carry a leading ensemble axis E (``ssa_theory.ensemble``): one layer holds E independent
seeds. Shapes below: E members, B batch, H heads, L positions, D model width, d head width.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssa_theory import strategies as st
from ssa_theory.ensemble import lecun_std, linear, stacked_full, stacked_normal

SIDES = ("q", "k", "v")
TERMS = ("pos", "tok")
SCORES = ("dot", "cosine", "softcap", "rownorm")


def _unknown(kind: str, name: str, known: Sequence[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")


@dataclass(frozen=True)
class Variant:
    """Which strategies a layer applies: SSA's terms per side, an output gate, one more strategy.

    Empty everywhere is vanilla attention. ``q``/``k``/``v`` hold SSA's terms for that side (``pos``:
    ``strategies`` entry ``ssa_pos``; ``tok``: ``ssa_tok`` with weight sharing, ``ssa_tok_own``
    without); ``gate`` is the ``gate`` strategy; ``scale`` names any other strategy of the table (or
    a dotted path to one), placed on its own side.
    """

    name: str
    q: frozenset[str] = frozenset()
    k: frozenset[str] = frozenset()
    v: frozenset[str] = frozenset()
    share: bool = True  # token term reads the side's own projection (the paper's weight sharing)
    gate: bool = False  # output gate: each query's output times 2 sigmoid(x W_g) (not value selectivity)
    scale: str = ""  # a strategy of ssa_theory.strategies ("" for none)

    def __post_init__(self) -> None:
        for side in SIDES:
            unknown = set(getattr(self, side)) - set(TERMS)
            if unknown:
                raise ValueError(f"variant {self.name!r}: unknown {side} terms {sorted(unknown)}; known: {TERMS}")
        self.placements()  # an unknown or unplaceable strategy fails here, once

    def terms(self, side: str) -> frozenset[str]:
        return getattr(self, side)

    def placements(self) -> list[tuple[str, st.Strategy, str]]:
        """(side, strategy, parameter prefix) of every strategy this variant applies, in the order the
        layer creates their parameters (SSA's terms per side, the scale, the gate)."""
        out = []
        for side in SIDES:
            terms = self.terms(side)
            if "tok" in terms:
                out.append((side, st.resolve("ssa_tok" if self.share else "ssa_tok_own"), f"{side}_"))
            if "pos" in terms:
                out.append((side, st.resolve("ssa_pos"), f"{side}_"))
        if self.scale:
            strategy = st.resolve(self.scale)
            if strategy.side is None:
                raise ValueError(f"strategy {strategy.name!r} has no side of its own; place it with a Variant")
            out.append((strategy.side, strategy, "scale_"))
        if self.gate:
            out.append(("out", st.resolve("gate"), "gate_"))
        return out

    def query_range(self) -> tuple[float, float]:
        """The range of the query-side inverse temperature from the strategies' declared ranges:
        1 + the sum of SSA's term ranges, times each factor's range (nonnegative intervals); (1, 1) for
        a variant with no query-side strategy. Experiments read it instead of copies of a bound."""
        lo = hi = 1.0
        on_q = [strategy for side, strategy, _ in self.placements() if side == "q"]
        for strategy in on_q:
            if strategy.combine == "add":
                lo, hi = lo + strategy.range[0], hi + strategy.range[1]
        for strategy in on_q:
            if strategy.combine == "mul":
                a, b = strategy.range
                products = [u * w for u in (lo, hi) for w in (a, b) if not (math.isinf(w) and u == 0)]
                lo, hi = min(products), max(products)
        return lo, hi


def check_variant_name(field_name: str, name: str) -> None:
    """For configs: ``name`` must be a variant (a named one, a strategy's name, or module:attr); a
    ``ConfigError`` naming the field and the closest names otherwise."""
    from ssa_theory.config import ConfigError

    try:
        get_variant(name)
    except ValueError as e:
        raise ConfigError(f"{field_name}: {e}") from None


def _v(name: str, q: str = "", k: str = "", v: str = "", share: bool = True, gate: bool = False,
       scale: str = "") -> Variant:
    split = lambda s: frozenset(t for t in s.split("+") if t)  # noqa: E731  "pos+tok" -> {pos, tok}
    return Variant(name, split(q), split(k), split(v), share, gate, scale)


# The named variants. A new strategy goes into ssa_theory.strategies; a variant here places it.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        _v("vanilla"),
        _v("ssa", q="pos+tok", v="pos+tok"),  # the paper's full layer: query and value temperature
        _v("ssa_noshare", q="pos+tok", v="pos+tok", share=False),
        _v("ssa_q", q="pos+tok"),
        _v("ssa_q_tok", q="tok"),
        _v("ssa_q_pos", q="pos"),
        _v("ssa_v", v="pos+tok"),
        _v("ssa_v_tok", v="tok"),
        _v("ssa_v_tok_noshare", v="tok", share=False),  # value temperature with its own projection
        _v("ssa_k", k="pos+tok"),  # ablation: key temperature
        _v("ssa_qkv", q="pos+tok", k="pos+tok", v="pos+tok"),
        _v("gated", gate=True),  # query-side output gating, the nearest competitor of value selectivity
        # competing temperature strategies (ssa_theory.strategies)
        _v("global", scale="global"),
        _v("global_free", scale="global_free"),
        _v("log_n", scale="log_n"),
        _v("ssmax", scale="ssmax"),
        _v("yarn", scale="yarn"),
        _v("qwen", scale="qwen"),
        _v("ssa_released", scale="released"),
        _v("asentmax", scale="asentmax"),
        _v("freq", scale="freq"),
    ]
}
# Strategies added through the table after the committed results were made: variants of their own,
# kept out of VARIANTS so that the ablation's committed rows keep their meaning (``all_variants``).
NEW_VARIANTS: dict[str, Variant] = {v.name: v for v in [_v("llama4", scale="llama4"), _v("sink", scale="sink"),
                                                        _v("qwen_gate", scale="qwen_gate")]}


def get_variant(name: str | Variant) -> Variant:
    """Resolve a variant by name (a ``Variant`` passes through). A strategy's name or dotted path
    (``package.module:attr``) is a variant too: that strategy alone."""
    if isinstance(name, Variant):
        return name
    if name in VARIANTS:
        return VARIANTS[name]
    if name in NEW_VARIANTS:
        return NEW_VARIANTS[name]
    try:
        strategy = st.resolve(name)
    except ValueError as e:
        if ":" in name:
            raise
        known = [*VARIANTS, *NEW_VARIANTS]
        close = difflib.get_close_matches(name, known + [s.name for s in st.table()], n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown attention variant {name!r}{hint} (known: {', '.join(known)}; or any strategy of "
                         "'ssa-theory list --strategies', or package.module:attr)") from e
    if strategy.side is None:
        raise ValueError(f"strategy {strategy.name!r} is one of SSA's terms; name a variant that places it "
                         "(e.g. ssa_q_pos)")
    return Variant(name, scale=name)


def all_variants() -> list[str]:
    """Every named variant: the committed ones, then those of strategies added since."""
    return [*VARIANTS, *NEW_VARIANTS]


SDPA_ROW_LIMIT = 65_535  # CUDA's grid limit: the most (batch x head) rows one fused-attention call may take


def open_empty_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mask, empty): queries that see no key at all (``empty``, the mask's shape without its key axis;
    None if there are none) are let see every key, so that their values and gradients stay finite;
    the caller zeroes their outputs. ``mask`` is boolean (True = may attend) or a float bias."""
    boolean = mask.dtype == torch.bool
    empty = ~(mask.any(-1) if boolean else torch.isfinite(mask).any(-1))
    if not bool(empty.any()):
        return mask, None
    return (mask | empty[..., None] if boolean else mask.masked_fill(empty[..., None], 0.0)), empty


def append_sink(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, sink: torch.Tensor):
    """A learned sink on the fused kernel: one zero key and one zero value appended to k ``(..., Lk, d)``
    and v ``(..., Lk, d_v)``, and the boolean ``mask`` ``(..., Lq, Lk)`` turned into a float bias
    ``(..., Lq, Lk + 1)``: 0 where visible, -inf where not, the sink's logit (``sink``, ``(..., 1, 1)``) in
    the new column. Returns (k, v, bias)."""
    lead = torch.broadcast_shapes(mask.shape[:-2], sink.shape[:-2])
    bias = torch.zeros(*lead, *mask.shape[-2:], dtype=k.dtype, device=k.device).masked_fill(~mask, float("-inf"))
    bias = torch.cat([bias, sink.to(k.dtype).expand(*lead, mask.shape[-2], 1)], -1)
    k = torch.cat([k, k.new_zeros(*k.shape[:-2], 1, k.shape[-1])], -2)
    v = torch.cat([v, v.new_zeros(*v.shape[:-2], 1, v.shape[-1])], -2)
    return k, v, bias


def _sdpa_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               causal: bool) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on (N, H, L, d) inputs, in calls of at most ``SDPA_ROW_LIMIT``
    rows N x H (rows are independent, so the split changes no number; below the limit it is one call)."""
    N, H = q.shape[:2]
    step = max(1, SDPA_ROW_LIMIT // H)
    if N <= step:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return torch.cat([F.scaled_dot_product_attention(q[i:i + step], k[i:i + step], v[i:i + step], is_causal=causal,
                                                     attn_mask=None if mask is None else mask[i:i + step])
                      for i in range(0, N, step)])


class Attention(nn.Module):
    """Multi-head attention with optional SSA temperatures, for E ensemble members at once.

    Args:
        variant: a name in ``VARIANTS`` or a ``Variant``.
        d_model: input width D.
        generators: one CPU ``torch.Generator`` per ensemble member (E = its length); member e's
            weights are drawn from ``generators[e]`` only.
        n_heads, d_head: H and d (default ``d = D // H``).
        score: score geometry, one of ``SCORES``; ``score_bound`` is its B (not used by ``dot``).
        value_proj: learn W_v; if False the values are the inputs themselves, split into heads.
        out_proj: learn W_o; if False the heads' outputs are concatenated.
        alpha_init: initial alpha of position terms (sigmoid(-4) = 0.018: nearly vanilla).
        qk_std: initial standard deviation of W_q, W_k and the temperatures' own projections
            (default ``1/sqrt(d_model)``). A small value starts every score and temperature near
            neutral, which matters when inputs are large (e.g. very noisy tokens).
        train_length: L of the ``yarn``, ``qwen`` and ``llama4`` strategies (the longest training context).
    """

    def __init__(
        self,
        variant: str | Variant,
        d_model: int,
        *,
        generators: Sequence[torch.Generator],
        n_heads: int = 1,
        d_head: int | None = None,
        score: str = "dot",
        score_bound: float | None = None,
        value_proj: bool = True,
        out_proj: bool = True,
        alpha_init: float = -4.0,
        qk_std: float | None = None,
        train_length: int | None = None,
    ) -> None:
        super().__init__()
        self.variant = get_variant(variant)
        if score not in SCORES:
            raise _unknown("score geometry", score, list(SCORES))
        if score != "dot" and not (score_bound and score_bound > 0):
            raise ValueError(f"score {score!r} needs score_bound > 0 (got {score_bound})")
        self.placements = self.variant.placements()
        st.check_placements(self.placements, train_length)
        self.train_length = train_length
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pass d_head")
            d_head = d_model // n_heads
        if not value_proj and d_model % n_heads:
            raise ValueError(f"value_proj=False splits inputs into heads: d_model={d_model} % n_heads={n_heads} != 0")
        E, H = len(generators), n_heads
        self.n_members, self.n_heads, self.d_head = E, H, d_head
        self.d_value = d_head if value_proj else d_model // n_heads
        self.score, self.score_bound = score, score_bound

        # Draw order is fixed (q, k, v, o, then temperature projections): part of reproducibility.
        std = lecun_std(d_model)
        qk_std = std if qk_std is None else qk_std
        self.w_q = nn.Parameter(stacked_normal(generators, (d_model, H * d_head), qk_std))
        self.w_k = nn.Parameter(stacked_normal(generators, (d_model, H * d_head), qk_std))
        self.w_v = nn.Parameter(stacked_normal(generators, (d_model, H * d_head), std)) if value_proj else None
        self.w_o = (
            nn.Parameter(stacked_normal(generators, (H * self.d_value, d_model), lecun_std(H * self.d_value)))
            if out_proj
            else None
        )
        # Every strategy's parameters, from its declaration in ssa_theory.strategies, in the variant's
        # placement order (the order their random draws, if any, are made in), named PREFIX + name:
        # SSA's u (E, H, w), alpha (E, H), own projection (E, D, H w); a scale's scale_*; the gate's gate_w.
        self.temp = nn.ParameterDict()
        for side, strategy, prefix in self.placements:
            width = self.d_value if side in ("v", "out") else d_head
            for pname, spec in strategy.params.items():
                shape = st.param_shape(spec, H=H, w=width, d=d_head, D=d_model)
                init = st.initial_value(spec, alpha_init=alpha_init)
                value = stacked_normal(generators, shape, qk_std) if init is None else stacked_full(E, shape, init)
                self.temp[prefix + pname] = nn.Parameter(value)

    def decayed_parameters(self) -> list[nn.Parameter]:
        """What a weight-decay budget prices (the convention of ``paper_repro.md``, "One temperature
        budget"): every weight matrix and vector, each (E, ...): ``W_q``, ``W_k``, ``W_v``, ``W_o`` and
        every strategy parameter declared ``decayed`` (SSA's u and own projection, a gate's ``W_g``,
        ASEntmax's w), all with neutral value 0. Per-head scalars (SSA's alpha, a global g, SSMax's s,
        the released beta, a sink's logit) are never priced: their raw values have no common neutral
        point, so decaying them toward 0 would pull each strategy toward a different law."""
        out = [p for p in (self.w_q, self.w_k, self.w_v, self.w_o) if p is not None]
        for _, strategy, prefix in self.placements:
            out += [self.temp[prefix + name] for name, spec in strategy.params.items() if spec.decayed]
        return out

    def weight_l2(self) -> torch.Tensor:
        """The budget's squared norm per member (E,): the sum of squares of ``decayed_parameters``; the
        one penalty every experiment with a weight-decay budget adds, times its weight decay."""
        return sum(p.pow(2).reshape(p.shape[0], -1).sum(1) for p in self.decayed_parameters())

    @property
    def w_gate(self) -> torch.Tensor | None:
        """The output gate's W_g (E, D, H d_value), or None without a gate."""
        return self.temp["gate_w"] if "gate_w" in self.temp else None

    def parameters_of(self, strategy: str, side: str | None = None) -> dict[str, nn.Parameter]:
        """The parameters of a placed strategy by their declared names, each (E, *declared shape):
        ``layer.parameters_of("ssa_tok", "q")["u"]`` is SSA's query u (E, H, d),
        ``layer.parameters_of("ssmax")["s"]`` SSMax's s (E, H). ``KeyError`` naming what is placed otherwise."""
        return st.parameters_of(self.placements, self.temp, strategy, side)

    def token_argument(self, side: str, x: torch.Tensor) -> torch.Tensor:
        """The argument ``u . GELU(h)`` of the token term's tanh on ``side`` for inputs x (E,B,L,D):
        (E,B,H,L), h the side's projection (or the term's own). ``KeyError`` without a token term."""
        tok = [(s, prefix) for sd, s, prefix in self.placements if sd == side and s.name in ("ssa_tok", "ssa_tok_own")]
        if not tok:
            raise KeyError(f"variant {self.variant.name!r} has no token term on side {side!r}")
        strategy, prefix = tok[0]
        p = self.strategy_params(prefix, strategy)
        h = self._side_proj(side, x) if strategy.name == "ssa_tok" else self._heads(linear(x, p["w"]))
        return st.token_argument(h, p["u"])

    def token_projection(self, side: str) -> torch.Tensor:
        """The projection (E, D, H w) the token term on ``side`` reads: the side's own weights with
        sharing (``W_q`` for the query), the term's ``W_t`` without."""
        if any(sd == side and s.name == "ssa_tok_own" for sd, s, _ in self.placements):
            return self.parameters_of("ssa_tok_own", side)["w"]
        return {"q": self.w_q, "k": self.w_k, "v": self.w_v}[side]

    def strategy_params(self, prefix: str, strategy: st.Strategy) -> dict[str, torch.Tensor]:
        """The parameters of one placed strategy, by the names its declaration uses."""
        return {pname: self.temp[prefix + pname] for pname in strategy.params}

    def _inputs(self, x, proj=None, pos=None, n=None, q=None, k_freq=None) -> st.Inputs:
        return st.Inputs(x=x, proj=proj, pos=pos, n=n, q=q, k_freq=k_freq, train_length=self.train_length,
                         heads=self._heads, linear=linear)

    def _placed(self, side: str, combine: str | None = None):
        return [(s, prefix) for sd, s, prefix in self.placements if sd == side and (combine is None or s.combine == combine)]

    # --- pieces -----------------------------------------------------------------------------------

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(E, B, L, H*w) -> (E, B, H, L, w)."""
        E, B, L, _ = x.shape
        return x.reshape(E, B, L, self.n_heads, -1).transpose(2, 3)

    def _side_proj(self, side: str, x: torch.Tensor) -> torch.Tensor:
        """One side's projection, split into heads: (E,B,L,D) -> (E,B,H,L,w)."""
        if side == "v" and self.w_v is None:
            return self._heads(x)
        return self._heads(linear(x, {"q": self.w_q, "k": self.w_k, "v": self.w_v}[side]))

    def temperature(
        self, side: str, x: torch.Tensor, proj: torch.Tensor | None = None, pos: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """SSA's inverse temperature tau = 1 + its terms on ``side``, for inputs x (E,B,L,D): (E,B,H,L), or
        None if the side has none.

        ``proj`` is that side's projection (E,B,H,L,w), recomputed when not given; ``pos`` holds the
        1-based positions (L,), default ``1..L``. The terms are the side's ``add`` strategies, summed
        in declaration order after 1 (position term, then token term).
        """
        terms = self._placed(side, "add")
        if not terms:
            return None
        if proj is None and any(s.name == "ssa_tok" for s, _ in terms):
            proj = self._side_proj(side, x)
        tau = st.ssa_temperature([(s, self.strategy_params(prefix, s)) for s, prefix in terms],
                                 self._inputs(x, proj=proj, pos=pos))
        # A position term alone is (E, 1, H, L): the same for every batch row.
        return tau.expand(x.shape[0], x.shape[1], self.n_heads, x.shape[-2])

    def side_factor(self, side: str, *, x: torch.Tensor, n: torch.Tensor | None = None, q: torch.Tensor | None = None,
                    k_freq: torch.Tensor | None = None, pos: torch.Tensor | None = None) -> torch.Tensor | None:
        """The product of the ``mul`` strategies on ``side`` (q: on query i's logits, broadcastable to
        (E,B,H,Lq); k: on key j's logits, (E,B,H,Lk)), or None where there are none. ``n`` is the keys each
        query sees (broadcastable to (E,B,H,Lq)), ``q`` the queries (E,B,H,Lq,d), ``x`` the side's inputs."""
        return st.product([(s, self.strategy_params(prefix, s)) for s, prefix in self._placed(side, "mul")],
                          self._inputs(x, pos=pos, n=n, q=q, k_freq=k_freq))

    def strategy_scale(self, n: torch.Tensor, q: torch.Tensor | None = None,
                       k_freq: torch.Tensor | None = None) -> torch.Tensor | None:
        """The logit factor of the variant's query- or key-side strategies at ``n`` keys (broadcastable to
        (E,B,H,Lq); ``freq``: on key j's logits (E,B,H,Lk) from ``k_freq``), or None. ``q`` (E,B,H,Lq,d): the
        queries, for query-dependent scales (``asentmax``)."""
        side = "k" if self._placed("k", "mul") else "q"
        if not self._placed(side, "mul"):
            return None
        n = torch.as_tensor(n)
        x = torch.zeros(self.n_members, 1, n.shape[-1] if n.dim() else 1, 1, dtype=n.dtype, device=n.device)
        return self.side_factor(side, x=x, n=n, q=q, k_freq=k_freq)

    def query_inverse_temperature(self, x: torch.Tensor, n: torch.Tensor | float,
                                  pos: torch.Tensor | None = None) -> torch.Tensor:
        """Everything that multiplies query i's logits (E,B,H,L): SSA's query terms times the query-side
        strategies' factor at ``n`` keys; ones for vanilla."""
        E, B, L, _ = x.shape
        tau = self.temperature("q", x, pos=pos)
        tau = torch.ones(E, B, self.n_heads, L, device=x.device, dtype=x.dtype) if tau is None else tau
        if self._placed("q", "mul"):
            n = torch.as_tensor(n, dtype=x.dtype, device=x.device).expand(L)
            tau = tau * self.side_factor("q", x=x, n=n, q=self._side_proj("q", x), pos=pos)
        return tau

    def key_inverse_temperature(self, context: torch.Tensor, k_pos: torch.Tensor | None = None,
                                k_freq: torch.Tensor | None = None) -> torch.Tensor | None:
        """Everything that multiplies key j's logits (E,B,H,Lk): SSA's key terms times the key-side
        strategies' factor (``freq``); None where that is 1 (most variants)."""
        tau = self.temperature("k", context, pos=k_pos)
        factor = self.side_factor("k", x=context, k_freq=k_freq, pos=k_pos)
        if factor is not None:
            factor = factor.expand(context.shape[0], context.shape[1], self.n_heads, -1)
            tau = factor if tau is None else tau * factor
        return tau

    @staticmethod
    def n_keys(Lq: int, Lk: int, visible: torch.Tensor | None, plain_causal: bool, device) -> torch.Tensor:
        """How many keys each query sees, broadcastable to (E,B,H,Lq): 1..L under a plain causal mask,
        the visible count under any other mask, Lk without one."""
        if plain_causal:
            return torch.arange(1, Lq + 1, device=device, dtype=torch.float32)
        if visible is None:
            return torch.full((Lq,), float(Lk), device=device)
        return visible.sum(-1).to(torch.float32)

    def _scores(self, q: torch.Tensor, k: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
        """Temperature-free scores (E,B,H,Lq,Lk) in the layer's geometry."""
        if self.score == "cosine":
            return self.score_bound * F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if self.score == "softcap":
            return self.score_bound * torch.tanh(s / self.score_bound)
        if self.score == "rownorm":
            if visible is None:
                c = s - s.mean(-1, keepdim=True)
            else:
                n_vis = visible.sum(-1, keepdim=True).clamp_min(1)
                c = s - (s * visible).sum(-1, keepdim=True) / n_vis
                c = c * visible
            return self.score_bound * c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return s

    @staticmethod
    def _visible(
        Lq: int, Lk: int, causal: bool, mask: torch.Tensor | None, q_pos, k_pos, device
    ) -> torch.Tensor | None:
        """Boolean (.., Lq, Lk) mask of the keys each query may see, or None for all of them."""
        visible = mask
        if causal:
            qp = q_pos if q_pos is not None else torch.arange(1, Lq + 1, device=device)
            kp = k_pos if k_pos is not None else torch.arange(1, Lk + 1, device=device)
            c = kp[None, :] <= qp[:, None]
            visible = c if visible is None else visible & c
        return visible

    # --- the layer ---------------------------------------------------------------------------------

    def _prepare(self, x, context, q_pos, k_pos, causal, mask, k_freq=None):
        """Projections, temperatures (None where tau = 1), the visibility mask, and whether that mask
        is the plain causal one (default positions, same length, no extra mask), which the fused
        kernel applies itself with ``is_causal=True``, never materialising it."""
        context = x if context is None else context
        if mask is not None:  # (Lq, Lk), (B, Lq, Lk) [a batch axis, never heads], (B, H or 1, Lq, Lk), (E, B, H, Lq, Lk)
            if mask.dtype != torch.bool or not 2 <= mask.dim() <= 5:
                raise ValueError(f"mask must be boolean (True = may attend) of 2 to 5 dimensions, got {mask.dtype} "
                                 f"{tuple(mask.shape)}")
            if mask.dim() == 3:
                mask = mask[:, None]
        q, k, v = (self._side_proj("q", x), self._side_proj("k", context), self._side_proj("v", context))
        taus = (
            self.temperature("q", x, q, q_pos),
            self.temperature("k", context, k, k_pos),
            self.temperature("v", context, v, k_pos),
        )
        plain_causal = causal and mask is None and q_pos is None and k_pos is None and q.shape[-2] == k.shape[-2]
        # A plain causal mask is never materialised on the fused path (an (L, L) tensor at long L);
        # the explicit path builds it when it needs it.
        visible = None if plain_causal else self._visible(q.shape[-2], k.shape[-2], causal, mask, q_pos, k_pos, x.device)
        if self._placed("q", "mul") or self._placed("k", "mul"):  # strategies multiply the query's or key's tau
            n = self.n_keys(q.shape[-2], k.shape[-2], visible, plain_causal, x.device).to(q.dtype)
            factors = (self.side_factor("q", x=x, n=n, q=q, k_freq=k_freq, pos=q_pos),
                       self.side_factor("k", x=context, n=n, q=q, k_freq=k_freq, pos=k_pos))
            taus = tuple(base if f is None else (f if base is None else base * f)
                         for base, f in zip(taus, (*factors, None)))
        return q, k, v, taus, visible, plain_causal

    def logits(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
        causal: bool = False,
        mask: torch.Tensor | None = None,
        k_freq: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked attention logits (E,B,H,Lq,Lk), temperatures applied; hidden entries are -inf."""
        q, k, _, (tq, tk, _), visible, plain_causal = self._prepare(x, context, q_pos, k_pos, causal, mask, k_freq)
        if plain_causal:
            visible = self._visible(q.shape[-2], k.shape[-2], True, None, None, None, x.device)
        return self._logits(q, k, tq, tk, visible)

    def _logits(self, q, k, tq, tk, visible):
        logits = self._scores(q, k, visible)
        if tq is not None:
            logits = logits * tq[..., :, None]
        if tk is not None:
            logits = logits * tk[..., None, :]
        if visible is not None:
            logits = logits.masked_fill(~visible, float("-inf"))
        return logits

    def _sink_logit(self, x: torch.Tensor) -> torch.Tensor | None:
        """The ``sink`` strategy's extra logit per head (E, 1, H, 1, 1), or None."""
        return st.product([(s, self.strategy_params(prefix, s)) for s, prefix in self._placed("sink")], self._inputs(x))

    def _out_factor(self, x: torch.Tensor) -> torch.Tensor | None:
        """The ``out`` strategies' factor on each query's output, (E,B,H,Lq,w) or (E,B,H,Lq,1), or None."""
        return st.product([(s, self.strategy_params(prefix, s)) for s, prefix in self._placed("out")], self._inputs(x))

    def _fused(self, q, k, v, tq, tk, visible, plain_causal: bool, sink) -> torch.Tensor:
        """The dot-product path (E,B,H,Lq,w): fold tau into q and k and call the unmodified fused kernel
        (it wants 4-D inputs). A plain causal mask goes in as is_causal=True: a boolean mask tensor is
        slower on the CPU and rules out the flash kernel on a GPU."""
        q = q if tq is None else q * tq[..., None]
        k = k if tk is None else k * tk[..., None]
        E, B, H, Lq, _ = q.shape
        Lk = k.shape[-2]
        if sink is not None:  # a zero key and a zero value, whose logit is the sink's, through a float mask
            if plain_causal or visible is None:
                visible = self._visible(Lq, Lk, plain_causal, None, None, None, q.device)
            if visible is None:  # no mask at all: every key visible
                visible = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device)
            k, v, visible = append_sink(k, v, visible, sink)
            Lk, plain_causal = Lk + 1, False
        flat = lambda t: t.reshape(E * B, H, t.shape[-2], t.shape[-1])  # noqa: E731
        if visible is not None and not plain_causal:
            visible = visible.expand(E, B, H, Lq, Lk).reshape(E * B, H, Lq, Lk)
        out = _sdpa_rows(flat(q), flat(k), flat(v), None if plain_causal else visible, plain_causal)
        return out.reshape(E, B, H, Lq, -1)

    def _explicit(self, q, k, v, tq, tk, visible, plain_causal: bool, sink) -> tuple[torch.Tensor, torch.Tensor]:
        """The explicit path: logits, softmax (the sink's column takes its share of each row; its value is
        zero), probabilities times values. Returns the output (E,B,H,Lq,w) and the probabilities."""
        if plain_causal:
            visible = self._visible(q.shape[-2], k.shape[-2], True, None, None, None, q.device)
        logits = self._logits(q, k, tq, tk, visible)
        if sink is not None:
            logits = torch.cat([logits, sink.to(logits.dtype).expand(*logits.shape[:-1], 1)], -1)
            probs = torch.softmax(logits, dim=-1)[..., :-1]
        else:
            probs = torch.softmax(logits, dim=-1)
        return probs @ v, probs

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
        causal: bool = False,
        mask: torch.Tensor | None = None,
        k_freq: torch.Tensor | None = None,
        return_probs: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from x (E,B,Lq,D) over context (E,B,Lk,D; default x).

        ``mask`` (boolean, True = may attend) is ``(Lq, Lk)``, ``(B, Lq, Lk)`` (a batch axis: it is never
        broadcast onto heads), ``(B, H, Lq, Lk)`` / ``(B, 1, Lq, Lk)`` or ``(E, B, H, Lq, Lk)``; with
        ``causal`` both apply. ``q_pos``/``k_pos`` are 1-based positions (default ``1..L``). A query
        that sees no key gets a zero output (and zero probabilities).

        Returns the output (E,B,Lq,D) (or (E,B,Lq,H*d_value) without ``out_proj``), and with
        ``return_probs`` also the attention probabilities (E,B,H,Lq,Lk). ``k_freq`` (B,Lk): each key
        token's training frequency, for the ``freq`` strategy only ((E,B,Lk) where members differ).
        """
        q, k, v, (tq, tk, tv), visible, plain_causal = self._prepare(x, context, q_pos, k_pos, causal, mask, k_freq)
        if tv is not None:
            v = v * tv[..., None]
        # queries with no visible key at all (broadcastable to (E,B,H,Lq)); None when every query sees one
        empty = None
        if visible is not None:
            visible, empty = open_empty_rows(visible)
        sink = self._sink_logit(x)
        if self.score == "dot" and not return_probs:
            out, probs = self._fused(q, k, v, tq, tk, visible, plain_causal, sink), None
        else:
            out, probs = self._explicit(q, k, v, tq, tk, visible, plain_causal, sink)
        if empty is not None:  # a query with no visible key gets zero, on every path
            out = out.masked_fill(empty[..., None], 0.0)
            if probs is not None:
                probs = probs.masked_fill(empty[..., None], 0.0)
        gate = self._out_factor(x)
        if gate is not None:
            out = out * gate
        E, B, H, Lq, w = out.shape
        out = out.transpose(2, 3).reshape(E, B, Lq, H * w)
        if self.w_o is not None:
            out = linear(out, self.w_o)
        return (out, probs) if return_probs else out
