"""One attention layer; vanilla attention and Selective Self-Attention (SSA) are named variants of it.

SSA (Zhang et al., NeurIPS 2024, section 3; our reading is in ``paper_repro.md``) scales query, key or
value rows by an inverse temperature tau, a scalar per
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

This module is a shell over the one attention core, ``ssa_theory.functional``, which does
everything between the projections and the output (visibility, n, the temperatures, the sink, the
gate, the fused and the explicit path); the variant vocabulary is ``ssa_theory.variants``.

Parameters carry a leading ensemble axis E (``ssa_theory.ensemble``): one layer holds E independent
seeds. Shapes below: E members, B batch, H heads, L positions, D model width, d head width.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ssa_theory import functional as core
from ssa_theory import strategies as st
from ssa_theory.ensemble import lecun_std, linear, stacked_normal
from ssa_theory.functional import SCORES, SDPA_ROW_LIMIT  # noqa: F401  (re-exported)
from ssa_theory.plan import ALL, FACTORS, SSA, LayerPlan
from ssa_theory.variants import (NEW_VARIANTS, SIDES, TERMS, VARIANTS, Variant, all_variants,  # noqa: F401
                                 get_variant, unknown)


class Attention(nn.Module):
    """Multi-head attention with optional SSA temperatures, for E ensemble members at once.

    Args:
        variant: a name in ``VARIANTS`` or a ``Variant`` (resolved once, into ``self.plan``).
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
        causal: whether query i sees only keys 0..i by default (True, as in ``nn.SelectiveAttention``;
            a call's ``causal=`` overrides it). The experiments' read-out models attend over a set and
            say ``causal=False``.
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
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.causal = causal
        if score not in SCORES:
            raise unknown("score geometry", score, list(SCORES))
        if score != "dot" and not (score_bound and score_bound > 0):
            raise ValueError(f"score {score!r} needs score_bound > 0 (got {score_bound})")
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
        self.plan = LayerPlan.of(variant, d_model=d_model, n_heads=H, d_head=d_head, d_value=self.d_value,
                                 train_length=train_length)
        self.variant, self.placements, self.train_length = self.plan.variant, self.plan.placements, train_length

        # Draw order is fixed (q, k, v, o, then the strategies' parameters in the plan's placement
        # order): part of reproducibility.
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
        # every strategy's parameters, named PREFIX + name: SSA's u (E, H, w), alpha (E, H), own
        # projection (E, D, H w); a scale's scale_*; the gate's gate_w
        draw = lambda shape: stacked_normal(generators, shape, qk_std)  # noqa: E731
        self.temp = self.plan.parameter_dict(self.plan.new_parameters(draw, members=E, alpha_init=alpha_init))

    def decayed_parameters(self) -> list[nn.Parameter]:
        """What a weight-decay budget prices (the convention of ``paper_repro.md``, "One temperature
        budget"): every weight matrix and vector, each (E, ...): ``W_q``, ``W_k``, ``W_v``, ``W_o`` and
        every strategy parameter declared ``decayed`` (SSA's u and own projection, a gate's ``W_g``,
        ASEntmax's w), all with neutral value 0. Per-head scalars (SSA's alpha, a global g, SSMax's s,
        the released beta, a sink's logit) are never priced: their raw values have no common neutral
        point, so decaying them toward 0 would pull each strategy toward a different law."""
        return [p for p in (self.w_q, self.w_k, self.w_v, self.w_o) if p is not None] + \
            [self.temp[name] for name in self.plan.decayed()]

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
        return self.plan.parameters_of(self.temp, strategy, side)

    def _token_term(self, side: str):
        found = [p for p in self.plan.on(side) if p.strategy.name in ("ssa_tok", "ssa_tok_own")]
        if not found:
            raise KeyError(f"variant {self.variant.name!r} has no token term on side {side!r}")
        return found[0]

    def token_argument(self, side: str, x: torch.Tensor) -> torch.Tensor:
        """The argument ``u . GELU(h)`` of the token term's tanh on ``side`` for inputs x (E,B,L,D):
        (E,B,H,L), h the side's projection (or the term's own). ``KeyError`` without a token term."""
        placed = self._token_term(side)
        p = self.parameters_of(placed.strategy.name, side)
        h = self._side_proj(side, x) if placed.strategy.name == "ssa_tok" else self._heads(linear(x, p["w"]))
        return st.token_argument(h, st.per_head(p["u"], ("H", "w")))

    def token_projection(self, side: str) -> torch.Tensor:
        """The projection (E, D, H w) the token term on ``side`` reads: the side's own weights with
        sharing (``W_q`` for the query), the term's ``W_t`` without."""
        if self._token_term(side).strategy.name == "ssa_tok_own":
            return self.parameters_of("ssa_tok_own", side)["w"]
        return {"q": self.w_q, "k": self.w_k, "v": self.w_v}[side]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(E, B, L, H*w) -> (E, B, H, L, w)."""
        return core.split_heads(self.n_heads)(x)

    def _side_proj(self, side: str, x: torch.Tensor) -> torch.Tensor:
        """One side's projection, split into heads: (E,B,L,D) -> (E,B,H,L,w)."""
        if side == "v" and self.w_v is None:
            return self._heads(x)
        return self._heads(linear(x, {"q": self.w_q, "k": self.w_k, "v": self.w_v}[side]))

    def strategies(self) -> core.Strategies:
        """The layer's strategies and parameters, as the core takes them."""
        return self.plan.strategies(self.temp)

    # --- reading the temperatures (each through the plan's one readout) ----------------------------

    def temperature(self, side: str, x: torch.Tensor, proj: torch.Tensor | None = None,
                    pos: torch.Tensor | None = None, extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """SSA's inverse temperature tau = 1 + its terms on ``side``, for inputs x (E,B,L,D): (E,B,H,L), or
        None if the side has none. ``proj`` is that side's projection (E,B,H,L,w), recomputed when not
        given; ``pos`` holds the 1-based positions (L,), default ``1..L``; ``extras`` the per-token data
        its terms read (a scrambled variant's permutations)."""
        if proj is None and "proj" in self.plan.reads(side):
            proj = self._side_proj(side, x)
        tau = self.plan.readout(self.temp, side, x, which=SSA, proj=proj, positions=_readout_positions(pos),
                                extras=extras)
        return None if tau is None else tau.expand(x.shape[0], x.shape[1], self.n_heads, x.shape[-2])

    def strategy_scale(self, n: torch.Tensor, q: torch.Tensor | None = None,
                       extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """The logit factor of the variant's query- or key-side strategies at ``n`` keys (broadcastable to
        (E,B,H,Lq); ``freq``: on key j's logits (E,B,H,Lk) from ``extras["k_freq"]``), or None. ``q``
        (E,B,H,Lq,d): the queries, for query-dependent scales (``asentmax``)."""
        side = "k" if any(p.strategy.combine == "mul" for p in self.plan.on("k")) else "q"
        n = torch.as_tensor(n)
        x = torch.zeros(self.n_members, 1, n.shape[-1] if n.dim() else 1, 1, dtype=n.dtype, device=n.device)
        return self.plan.readout(self.temp, side, x, which=FACTORS, n=n, q=q, extras=extras)

    def query_inverse_temperature(self, x: torch.Tensor, n: torch.Tensor | float,
                                  pos: torch.Tensor | None = None,
                                  extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Everything that multiplies query i's logits (E,B,H,L): SSA's query terms times the query-side
        strategies' factor at ``n`` keys; ones for vanilla. ``pos``: 1-based positions (L,); ``extras``:
        per-token data the strategies read (a scrambled variant's permutations)."""
        E, B, L, _ = x.shape
        q = self._side_proj("q", x)
        n = torch.as_tensor(n, dtype=x.dtype, device=x.device).expand(L)
        tau = self.plan.readout(self.temp, "q", x, which=ALL, proj=q, positions=_readout_positions(pos), n=n, q=q,
                                extras=extras)
        return torch.ones(E, B, self.n_heads, L, device=x.device, dtype=x.dtype) if tau is None \
            else tau.expand(E, B, self.n_heads, L)

    def key_inverse_temperature(self, context: torch.Tensor, k_pos: torch.Tensor | None = None,
                                extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """Everything that multiplies key j's logits (E,B,H,Lk): SSA's key terms times the key-side
        strategies' factor (``freq``); None where that is 1 (most variants)."""
        k = self._side_proj("k", context) if self.plan.on("k") else None
        tau = self.plan.readout(self.temp, "k", context, which=ALL, proj=k, positions=_readout_positions(k_pos),
                                extras=extras)
        return None if tau is None else tau.expand(context.shape[0], context.shape[1], self.n_heads, -1)

    # --- the layer ---------------------------------------------------------------------------------

    def _call(self, x, context, q_pos, k_pos, causal, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """The projections and the core's keywords: positions made 0-based, the mask made 5-D by its shape."""
        context = x if context is None else context
        q, k, v = self._side_proj("q", x), self._side_proj("k", context), self._side_proj("v", context)
        causal = self.causal if causal is None else causal
        E, B, Lq, _ = x.shape
        if mask is not None:
            mask = core.mask5(mask, E, B, self.n_heads, Lq, context.shape[-2])
        return q, k, v, {"context": context, "q_pos": _zero_based(q_pos), "k_pos": _zero_based(k_pos),
                         "causal": causal, "attn_mask": mask}

    def logits(self, x: torch.Tensor, context: torch.Tensor | None = None, *, q_pos: torch.Tensor | None = None,
               k_pos: torch.Tensor | None = None, causal: bool | None = None, mask: torch.Tensor | None = None,
               extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Masked attention logits (E,B,H,Lq,Lk), temperatures applied; hidden entries are -inf."""
        q, k, v, where = self._call(x, context, q_pos, k_pos, causal, mask)
        return core.logits(self.strategies(), q, k, v, x=x, score=self.score, bound=self.score_bound, extras=extras,
                           **where)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *, q_pos: torch.Tensor | None = None,
                k_pos: torch.Tensor | None = None, causal: bool | None = None, mask: torch.Tensor | None = None,
                extras: Mapping[str, torch.Tensor] | None = None,
                return_probs: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from x (E,B,Lq,D) over context (E,B,Lk,D; default x).

        ``mask`` (boolean, True = may attend) is ``(Lq, Lk)``, ``(B, Lq, Lk)`` (a batch axis: it is never
        broadcast onto heads), ``(B, H, Lq, Lk)`` / ``(B, 1, Lq, Lk)`` or ``(E, B, H, Lq, Lk)``; with
        ``causal`` both apply (query i sees keys 0..i, by slot; None: the layer's ``causal``). ``q_pos``/``k_pos`` are the 1-based
        positions the strategies read (default ``1..L``). A query that sees no key gets a zero output
        (and zero probabilities).

        Returns the output (E,B,Lq,D) (or (E,B,Lq,H*d_value) without ``out_proj``), and with
        ``return_probs`` also the attention probabilities (E,B,H,Lq,Lk). ``extras``: per-token data a
        strategy reads (``strategies.EXTRAS``): ``{"k_freq": (B, Lk) or (E, B, Lk)}``, each key token's
        training frequency, for the ``freq`` strategy.
        """
        q, k, v, where = self._call(x, context, q_pos, k_pos, causal, mask)
        out, probs = core.attend(self.strategies(), q, k, v, x=x, score=self.score, bound=self.score_bound,
                                 return_probs=return_probs, extras=extras, **where)
        E, B, H, Lq, w = out.shape
        out = out.transpose(2, 3).reshape(E, B, Lq, H * w)
        if self.w_o is not None:
            out = linear(out, self.w_o)
        return (out, probs) if return_probs else out


def _readout_positions(pos: torch.Tensor | None) -> torch.Tensor | None:
    """The ensemble layer's 1-based positions (L,) or (B, L) as a formula's 0-based (B|1, 1, L)."""
    return None if pos is None else _zero_based(pos)[:, None]


def _zero_based(pos: torch.Tensor | None) -> torch.Tensor | None:
    """The ensemble layer's 1-based positions (L,) or (B, L) as the core's 0-based (B|1, L)."""
    if pos is None:
        return None
    pos = torch.as_tensor(pos)
    return (pos - 1)[None] if pos.dim() == 1 else pos - 1
