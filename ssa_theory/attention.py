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

Competing temperature strategies are named variants too: a variant's ``scale`` multiplies each
query's logits by a factor of n, the number of keys that query sees (per query under a causal mask;
the full row length is wrong there), and sometimes of the query itself (``SCALES``; L is the layer's
``train_length``):

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

from ssa_theory.ensemble import lecun_std, linear, stacked_full, stacked_normal

SIDES = ("q", "k", "v")
TERMS = ("pos", "tok")
SCALES = ("", "global", "global_free", "log_n", "ssmax", "yarn", "qwen", "released", "asentmax", "freq")
NEEDS_TRAIN_LENGTH = ("yarn", "qwen")
SCORES = ("dot", "cosine", "softcap", "rownorm")


def _unknown(kind: str, name: str, known: Sequence[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")


@dataclass(frozen=True)
class Variant:
    """Which inverse-temperature terms each side gets. Empty everywhere is vanilla attention."""

    name: str
    q: frozenset[str] = frozenset()
    k: frozenset[str] = frozenset()
    v: frozenset[str] = frozenset()
    share: bool = True  # token term reads the side's own projection (the paper's weight sharing)
    gate: bool = False  # output gate: each query's output times 2 sigmoid(x W_g) (not value selectivity)
    scale: str = ""  # a temperature strategy of SCALES ("" for none)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise _unknown("temperature strategy", self.scale, [s for s in SCALES if s])
        for side in SIDES:
            unknown = set(getattr(self, side)) - set(TERMS)
            if unknown:
                raise ValueError(f"variant {self.name!r}: unknown {side} terms {sorted(unknown)}; known: {TERMS}")

    def terms(self, side: str) -> frozenset[str]:
        return getattr(self, side)


def _v(name: str, q: str = "", k: str = "", v: str = "", share: bool = True, gate: bool = False,
       scale: str = "") -> Variant:
    split = lambda s: frozenset(t for t in s.split("+") if t)  # noqa: E731  "pos+tok" -> {pos, tok}
    return Variant(name, split(q), split(k), split(v), share, gate, scale)


# The named variants. Add a strategy here, not as a copy of the layer.
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
        # competing temperature strategies (SCALES)
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


def get_variant(name: str | Variant) -> Variant:
    """Resolve a variant by name (a ``Variant`` passes through)."""
    if isinstance(name, Variant):
        return name
    if name not in VARIANTS:
        raise _unknown("attention variant", name, list(VARIANTS))
    return VARIANTS[name]


SDPA_ROW_LIMIT = 65_535  # CUDA's grid limit: the most (batch x head) rows one fused-attention call may take


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
        train_length: L of the ``yarn`` and ``qwen`` strategies (the longest training context).
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
        if self.variant.scale in NEEDS_TRAIN_LENGTH and not (train_length and train_length >= 2):
            raise ValueError(f"strategy {self.variant.scale!r} needs train_length >= 2 (got {train_length})")
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
        # Output gate (variant "gated"): zero init, so 2 sigmoid(0) = 1 starts it neutral.
        self.w_gate = (
            nn.Parameter(stacked_full(E, (d_model, H * self.d_value), 0.0)) if self.variant.gate else None
        )
        # Temperature parameters, per side: u (E, H, width), alpha (E, H), optional own projection.
        self.temp = nn.ParameterDict()
        for side in SIDES:
            terms = self.variant.terms(side)
            width = self.d_value if side == "v" else d_head
            if "tok" in terms:
                self.temp[f"{side}_u"] = nn.Parameter(stacked_full(E, (H, width), 0.0))
                if not self.variant.share:
                    self.temp[f"{side}_w"] = nn.Parameter(stacked_normal(generators, (d_model, H * width), qk_std))
            if "pos" in terms:
                self.temp[f"{side}_alpha"] = nn.Parameter(stacked_full(E, (H,), alpha_init))
        # Temperature strategies (SCALES): zero-initialised where that is neutral.
        scale = self.variant.scale
        if scale in ("global", "global_free", "freq"):
            self.temp["scale_g"] = nn.Parameter(stacked_full(E, (H,), 0.0))
        elif scale == "ssmax":
            self.temp["scale_s"] = nn.Parameter(stacked_full(E, (H,), 1.0))  # starts as log n
        elif scale == "released":
            self.temp["scale_beta"] = nn.Parameter(stacked_full(E, (), 2.0))  # the authors' init: nearly vanilla
        elif scale == "asentmax":
            self.temp["scale_w"] = nn.Parameter(stacked_full(E, (H, d_head), 0.0))
            self.temp["scale_w2"] = nn.Parameter(stacked_full(E, (H, d_head), 0.0))

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
        """Inverse temperature tau of ``side`` for inputs x (E,B,L,D): (E,B,H,L), or None if tau = 1.

        ``proj`` is that side's projection (E,B,H,L,w), recomputed when not given; ``pos`` holds the
        1-based positions (L,), default ``1..L``.
        """
        terms = self.variant.terms(side)
        if not terms:
            return None
        L = x.shape[-2]
        tau = 1.0
        if "pos" in terms:
            if pos is None:
                pos = torch.arange(1, L + 1, device=x.device)
            log_n = torch.log(pos.to(x.dtype))  # (L,)
            alpha = self.temp[f"{side}_alpha"]  # (E, H)
            tau = tau + torch.sigmoid(alpha)[:, None, :, None] * log_n  # (E, 1, H, L)
        if "tok" in terms:
            if not self.variant.share:
                h = self._heads(linear(x, self.temp[f"{side}_w"]))
            else:
                h = proj if proj is not None else self._side_proj(side, x)
            u = self.temp[f"{side}_u"]  # (E, H, w)
            # u . GELU(h), computed in the projection's own (E,B,L,H,w) layout, where h is contiguous
            # (measured faster than a matmul on the head-major view): -> (E,B,L,H) -> (E,B,H,L)
            s = (F.gelu(h.transpose(2, 3)) * u[:, None, None]).sum(-1).transpose(2, 3)
            tau = torch.tanh(s) + tau
        # A position term alone is (E, 1, H, L): the same for every batch row.
        return tau.expand(x.shape[0], x.shape[1], self.n_heads, L)

    def strategy_scale(self, n: torch.Tensor, q: torch.Tensor | None = None,
                       k_freq: torch.Tensor | None = None) -> torch.Tensor | None:
        """The strategy's factor (``SCALES``), or None: on query i's logits, broadcastable to (E,B,H,Lq),
        from ``n`` (the keys each query sees, broadcastable to (E,B,H,Lq)) and, for ``asentmax``, the
        queries ``q`` (E,B,H,Lq,d); for ``freq``, on key j's logits (E,B,H,Lk) from ``k_freq``, (B,Lk) or,
        where members see different data, (E,B,Lk)."""
        scale, E = self.variant.scale, self.n_members
        if not scale:
            return None
        if scale == "freq":
            if k_freq is None:
                raise ValueError("the 'freq' strategy needs k_freq: each key token's training frequency, (B, Lk)")
            c = self.temp["scale_g"].view(E, 1, -1, 1)
            f = k_freq if k_freq.dim() == 3 else k_freq[None]  # (E or 1, B, Lk)
            return 1.0 + c * torch.log(1.0 / f.to(c.dtype))[:, :, None, :]
        log_n = torch.log(n)
        if scale in ("global", "global_free"):
            g = self.temp["scale_g"].view(E, 1, -1, 1)
            return (1.0 + torch.tanh(g) if scale == "global" else torch.exp(g)) * torch.ones_like(log_n)
        if scale == "log_n":
            return log_n
        if scale == "ssmax":
            return self.temp["scale_s"].view(E, 1, -1, 1) * log_n
        if scale == "yarn":
            return (1.0 + 0.1 * torch.log(torch.clamp(n / self.train_length, min=1.0))) ** 2
        if scale == "qwen":
            return torch.clamp(log_n / math.log(self.train_length), min=1.0)
        if scale == "released":
            beta = self.temp["scale_beta"].view(E, 1, 1, 1)
            return 1.0 + torch.exp(-torch.exp(beta)) * log_n
        # asentmax: 1 + softplus(w . q) (log n)^(2 tanh(w' . q)), per query
        w, w2 = (self.temp[k][:, None, :, None, :] for k in ("scale_w", "scale_w2"))
        return 1.0 + F.softplus((q * w).sum(-1)) * log_n.clamp_min(1e-6) ** (2.0 * torch.tanh((q * w2).sum(-1)))

    def query_inverse_temperature(self, x: torch.Tensor, n: torch.Tensor | float,
                                  pos: torch.Tensor | None = None) -> torch.Tensor:
        """Everything that multiplies query i's logits (E,B,H,L): SSA's query terms times the strategy's
        factor at ``n`` keys (``freq`` scales keys, not queries, and is left out); ones for vanilla."""
        E, B, L, _ = x.shape
        tau = self.temperature("q", x, pos=pos)
        tau = torch.ones(E, B, self.n_heads, L, device=x.device, dtype=x.dtype) if tau is None else tau
        if self.variant.scale and self.variant.scale != "freq":
            n = torch.as_tensor(n, dtype=x.dtype, device=x.device).expand(L)
            tau = tau * self.strategy_scale(n, self._side_proj("q", x))
        return tau

    def key_inverse_temperature(self, context: torch.Tensor, k_pos: torch.Tensor | None = None,
                                k_freq: torch.Tensor | None = None) -> torch.Tensor | None:
        """Everything that multiplies key j's logits (E,B,H,Lk): SSA's key terms times the ``freq``
        strategy's factor; None where that is 1 (most variants)."""
        tau = self.temperature("k", context, pos=k_pos)
        if self.variant.scale == "freq":
            factor = self.strategy_scale(torch.ones(()), k_freq=k_freq)
            tau = factor.expand(context.shape[0], context.shape[1], self.n_heads, -1) if tau is None else tau * factor
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
        if self.variant.scale:  # a temperature strategy multiplies the query's (or, freq, the key's) tau
            n = self.n_keys(q.shape[-2], k.shape[-2], visible, plain_causal, x.device).to(q.dtype)
            factor = self.strategy_scale(n, q, k_freq)
            side = 1 if self.variant.scale == "freq" else 0
            base = taus[side]
            combined = factor if base is None else base * factor
            taus = tuple(combined if i == side else t for i, t in enumerate(taus))
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

        Returns the output (E,B,Lq,D) (or (E,B,Lq,H*d_value) without ``out_proj``), and with
        ``return_probs`` also the attention probabilities (E,B,H,Lq,Lk). ``k_freq`` (B,Lk): each key
        token's training frequency, for the ``freq`` strategy only ((E,B,Lk) where members differ).
        """
        q, k, v, (tq, tk, tv), visible, plain_causal = self._prepare(x, context, q_pos, k_pos, causal, mask, k_freq)
        if tv is not None:
            v = v * tv[..., None]
        if self.score == "dot" and not return_probs:
            # Fold tau into q and k and call the unmodified fused kernel (it wants 4-D inputs). A plain
            # causal mask goes in as is_causal=True: a boolean mask tensor is slower on the CPU and rules
            # out the flash kernel on a GPU.
            q = q if tq is None else q * tq[..., None]
            k = k if tk is None else k * tk[..., None]
            E, B, H, Lq, _ = q.shape
            Lk = k.shape[-2]
            flat = lambda t: t.reshape(E * B, H, t.shape[-2], t.shape[-1])  # noqa: E731
            if visible is not None and not plain_causal:
                visible = visible.expand(E, B, H, Lq, Lk).reshape(E * B, H, Lq, Lk)
            out = _sdpa_rows(flat(q), flat(k), flat(v), None if plain_causal else visible, plain_causal)
            out = out.reshape(E, B, H, Lq, -1)
        else:
            if plain_causal:
                visible = self._visible(q.shape[-2], k.shape[-2], True, None, None, None, x.device)
            probs = torch.softmax(self._logits(q, k, tq, tk, visible), dim=-1)
            out = probs @ v
        E, B, H, Lq, w = out.shape
        out = out.transpose(2, 3).reshape(E, B, Lq, H * w)
        if self.w_gate is not None:
            out = out * 2.0 * torch.sigmoid(linear(x, self.w_gate))
        if self.w_o is not None:
            out = linear(out, self.w_o)
        return (out, probs) if return_probs else out
