"""SSA for ordinary models: ``selective_sdpa`` in SDPA's layout, and ``SelectiveAttention``, a
``(B, L, D) -> (B, L, D)`` module with any temperature strategy, RoPE, grouped-query heads, QK-norm
and a KV cache.

    import torch
    from ssa_theory.nn import SelectiveAttention

    attn = SelectiveAttention(d_model=256, n_heads=8, variant="ssa")   # causal by default
    y = attn(torch.randn(4, 100, 256))                                  # (4, 100, 256)

    cache = attn.new_cache(batch_size=4, max_len=128)                   # incremental decoding
    for t in range(100):
        y_t = attn(x[:, t:t + 1], cache=cache)                          # equals y[:, t:t + 1]

Conventions are PyTorch's and Hugging Face's: ``attn_mask`` is boolean, True where a query may
attend (``(Lq, Lk)``, ``(B, Lq, Lk)``, ``(B, 1 or H, Lq, Lk)``; a 2-D mask is always ``(Lq, Lk)``);
padding is ``attention_mask`` ``(B, L)``, True / 1 = a real token; ``selective_sdpa`` takes
``(B, H, L, d)``; ``positions`` are 0-based integers, by default each row's real tokens counted from
0. Everything between the projections and the output (visibility, n, the temperatures from the
strategy table, the sink, the gate, the kernel) is the one attention core, ``ssa_theory.functional``,
which the experiments' ensemble layer (``ssa_theory.attention.Attention``) runs too: one formula per
strategy and one pipeline, not a copy. The experiments' layer holds E seeds at once; here E = 1 and
every parameter drops that axis.

Where temperatures go in the block (the order matters, and follows the study of where they go in a
modern block: litgpt, OLMo-core):
- tau_q multiplies q after QK-norm (a norm after it would undo it);
- with weight sharing the token term reads the projection before RoPE, so it stays a function of
  the token, not of its position; a per-row scalar commutes with RoPE, so the scale itself can be
  applied before or after it;
- tau_k and tau_v are computed when a token is written to the cache, from its own position;
- n, the keys a query sees, counts the visible real keys, cached ones included; positions continue
  each row's own count while decoding, so a left-padded batch decodes as each row alone.

Rows with no visible key (a fully padded query) give an output of zero on every path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from ssa_theory import functional as core
from ssa_theory import strategies as st
from ssa_theory.functional import SDPA_ROW_LIMIT
from ssa_theory.plan import SSA, LayerPlan
from ssa_theory.strategies import Param, Strategy, register_strategy  # noqa: F401  (the public API)
from ssa_theory.variants import Variant, unknown

__all__ = ["selective_sdpa", "sdpa_weights", "SelectiveAttention", "KVCache", "strategies", "register_strategy", "Strategy", "Param",
           "normalise_mask", "SDPA_ROW_LIMIT"]


def strategies() -> list[dict]:
    """Every registered temperature strategy: name, side, how it combines, range, neutral setting,
    what it needs, its source and where it came from (built-in, a decorator, an entry point)."""
    return [{"name": s.name, "side": s.side or "q, k or v (SSA term)", "combine": s.combine, "range": s.range,
             "neutral": s.neutral, "needs": sorted(s.needs), "params": list(s.params), "source": s.source,
             "about": s.about, "origin": s.origin} for s in st.table()]


# --- the functional core, in SDPA's layout -------------------------------------------------------------------


def _prepared(q, k, v, q_scale, k_scale, v_scale, attn_mask, is_causal) -> core.Prepared:
    """``selective_sdpa``'s arguments as the core's prepared call (a member axis of 1 added)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"selective_sdpa takes (B, H, L, d) tensors; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    B, H, Lq, _ = q.shape
    Hk, Lk = k.shape[1], k.shape[2]
    if H % Hk or v.shape[1] != Hk:
        raise ValueError(f"{H} query heads cannot share {Hk} key and {v.shape[1]} value heads evenly")
    mask = None if attn_mask is None else core.mask5(attn_mask, 1, B, H, Lq, Lk)
    lift = lambda t: None if t is None else t[None]  # noqa: E731
    return core.scaled(q[None], k[None], v[None], lift(q_scale), lift(k_scale), lift(v_scale), mask, is_causal)


def selective_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, q_scale: torch.Tensor | None = None,
                   k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
                   attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention with per-token inverse temperatures: ``(B, H, Lq, d_v)``.

    Args:
        q: ``(B, H, Lq, d)``; k: ``(B, H_kv, Lk, d)``; v: ``(B, H_kv, Lk, d_v)``, with H a multiple of
            H_kv (grouped-query heads).
        q_scale: ``(B, H, Lq)``, each query's inverse temperature tau_q (multiplies its logits).
        k_scale: ``(B, H_kv, Lk)``, each key's tau_k (multiplies the logits it receives).
        v_scale: ``(B, H_kv, Lk)``, each value's tau_v (multiplies the value it contributes).
        attn_mask: boolean, True where a query may attend: ``(Lq, Lk)``, ``(B, Lq, Lk)``, ``(B, 1, Lq, Lk)``
            or ``(B, H, Lq, Lk)`` (a 2-D mask is always ``(Lq, Lk)``).
        is_causal: query i sees keys 0..i (top-left aligned, as in ``F.scaled_dot_product_attention``);
            with ``attn_mask`` both apply.

    The scales are folded into q, k and v and one fused kernel call is made (in calls of at most
    ``SDPA_ROW_LIMIT`` batch x head rows), by the attention core (``ssa_theory.functional``). A query
    with no visible key gets a zero output.
    """
    out, _ = core.kernel(_prepared(q, k, v, q_scale, k_scale, v_scale, attn_mask, is_causal))
    return out[0]


def sdpa_weights(q: torch.Tensor, k: torch.Tensor, *, q_scale: torch.Tensor | None = None,
                 k_scale: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                 is_causal: bool = False) -> torch.Tensor:
    """The attention probabilities ``selective_sdpa`` applies: ``(B, H, Lq, Lk)``, so that
    ``sdpa_weights(q, k, ...) @ v`` is its output (tested). Same arguments; the explicit softmax of the
    core, for reading a layer's attention, not for speed. A query with no visible key gets zeros."""
    _, w = core.kernel(_prepared(q, k, k, q_scale, k_scale, None, attn_mask, is_causal), return_probs=True)
    return w[0]


def normalise_mask(attn_mask: torch.Tensor, batch: int, lq: int, lk: int, n_heads: int = 1) -> torch.Tensor:
    """A boolean ``attn_mask`` as 4-D, broadcastable to ``(B, H, Lq, Lk)`` (True = may attend).

    Accepted shapes: ``(Lq, Lk)`` (a 2-D mask is always this), ``(B, Lq, Lk)`` (a batch axis, never
    heads), ``(B, 1, Lq, Lk)`` and ``(B, H, Lq, Lk)``. Padding is not a mask shape: it is
    ``attention_mask`` ``(B, Lk)``, and a ``(B, Lk)`` tensor given here is refused with that name.
    """
    return core.mask5(attn_mask, 1, batch, n_heads, lq, lk)[0]


# --- the cache ----------------------------------------------------------------------------------------------


@dataclass
class KVCache:
    """What incremental decoding keeps, for ``batch_size`` rows of up to ``max_len`` slots:

    - ``k`` ``(B, H_kv, max_len, d)``: keys after RoPE (and QK-norm), without their temperature;
    - ``k_scale`` ``(B, H_kv, max_len)``: each key's tau_k, or None for a variant without one;
    - ``v`` ``(B, H_kv, max_len, d_v)``: values, tau_v applied;
    - ``valid`` ``(B, max_len)``: which slots hold a real token (False: padding from the prompt call);
    - ``count`` ``(B,)``: each row's real tokens so far, its next token's 0-based position;
    - ``length``: the slots written so far (the same in every row).

    The prompt call gives the padding (``attention_mask``); later calls pass only their new tokens,
    which are real tokens at each row's next positions, unless a mask says otherwise.
    """

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor
    count: torch.Tensor
    k_scale: torch.Tensor | None = None
    length: int = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def batch_size(self) -> int:
        return self.k.shape[0]

    def check(self, x: torch.Tensor) -> None:
        """One line for each misuse: a batch of another size, another dtype or device."""
        if x.shape[0] != self.batch_size:
            raise ValueError(f"the cache holds {self.batch_size} rows, but this call has a batch of {x.shape[0]} "
                             "(make a cache per batch with new_cache(batch_size=...))")
        if x.dtype != self.k.dtype or x.device != self.k.device:
            raise ValueError(f"the cache is {self.k.dtype} on {self.k.device}, but the input is {x.dtype} on "
                             f"{x.device} (make it with new_cache(..., dtype=, device=) to match)")

    def valid_with(self, new: torch.Tensor) -> torch.Tensor:
        """(B, length + L): which slots are real tokens once ``new`` (B, L) is written."""
        L = new.shape[-1]
        if self.length + L > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} tokens; {self.length} are written and {L} more do not "
                             "fit (make it with a larger max_len)")
        return torch.cat([self.valid[:, :self.length], new], -1)

    def append(self, k, v, tk, valid, pos):
        """Write L new slots (k, v (1, B, H_kv, L, .), tk (1, B, H_kv, L) or None, valid (B, L) or None);
        return every cached (k, v, tk) with the leading member axis."""
        L, end = k.shape[-2], self.length + k.shape[-2]
        self.k[:, :, self.length:end], self.v[:, :, self.length:end] = k[0], v[0]
        if tk is not None:
            if self.k_scale is None:
                self.k_scale = self.k.new_ones(self.k.shape[:3])
            self.k_scale[:, :, self.length:end] = tk[0]
        self.valid[:, self.length:end] = True if valid is None else valid
        self.count = self.count + (L if valid is None else valid.sum(-1))
        self.length = end
        tk_all = None if self.k_scale is None else self.k_scale[None, :, :, :end]
        return self.k[None, :, :, :end], self.v[None, :, :, :end], tk_all


# --- the module ---------------------------------------------------------------------------------------------


def _rope(t: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding of t ``(..., B, H, L, d)`` at 0-based ``positions`` ``(B or 1, L)`` (halves rotated)."""
    d = t.shape[-1]
    half = d // 2
    freqs = base ** (-torch.arange(half, device=t.device, dtype=torch.float32) / half)  # (d/2,)
    angle = positions.to(torch.float32)[:, None, :, None] * freqs  # (B, 1, L, d/2)
    cos, sin = torch.cos(angle).to(t.dtype), torch.sin(angle).to(t.dtype)
    a, b = t[..., :half], t[..., half:2 * half]
    rotated = torch.cat([a * cos - b * sin, a * sin + b * cos], -1)
    return rotated if 2 * half == d else torch.cat([rotated, t[..., 2 * half:]], -1)


class _RMSNorm(nn.Module):
    """RMS norm over the head width with a learned gain (QK-norm)."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SelectiveAttention(nn.Module):
    """Multi-head self-attention ``(B, L, D) -> (B, L, D)`` with SSA or any temperature strategy.

    Args:
        d_model: D. n_heads: H query heads. n_kv_heads: key/value heads (default H; a divisor of H
            gives grouped-query attention). d_head: per-head width (default D // H).
        variant: a name of ``ssa_theory.variants.VARIANTS`` (``"ssa"``: query and value temperature,
            both terms; ``"vanilla"``), a strategy's name or ``package.module:attr``, or a ``Variant``.
        causal: whether query i sees only keys 0..i (default True).
        rope_base: RoPE's base (e.g. 10000.0); None for no RoPE.
        qk_norm: RMS-normalise q and k per head (with a learned gain) before the temperature.
        bias: biases in the projections.
        train_length: the training length L of strategies that need one (``yarn``, ``qwen``, ``llama4``).
        alpha_init: SSA's initial alpha of the position terms (sigmoid(-4) = 0.018: nearly vanilla).
        score: the score geometry (``ssa_theory.functional.SCORES``): ``"dot"`` (``q.k / sqrt(d)``,
            default), ``"cosine"`` (``score_bound * cos(q, k)``: QK-norm at a fixed scale, each score in
            ``[-B, B]``, on the fused kernel), ``"softcap"`` (``B tanh(q.k / (sqrt(d) B))``, explicit
            path: it materialises the ``(L, L)`` scores) or ``"rownorm"``; the temperatures multiply it.
        score_bound: B of a bounded geometry (required for every geometry but ``"dot"``).

    Projections are ``nn.Linear`` with torch's default initialisation; the strategies' parameters
    are read and set by their declared names through ``parameters_of`` (SSA's query u ``(H, d)`` is
    ``parameters_of("ssa_tok", "q")["u"]``, its alpha ``(H,)`` ``parameters_of("ssa_pos", "q")["alpha"]``).
    """

    def __init__(self, d_model: int, n_heads: int, *, variant: str | Variant = "ssa", n_kv_heads: int | None = None,
                 d_head: int | None = None, causal: bool = True, rope_base: float | None = None,
                 qk_norm: bool = False, bias: bool = False, train_length: int | None = None,
                 alpha_init: float = -4.0, score: str = "dot", score_bound: float | None = None) -> None:
        super().__init__()
        if score not in core.SCORES:
            raise unknown("score geometry", score, list(core.SCORES))
        if score == "dot" and score_bound is not None:
            raise ValueError(f"score='dot' is unbounded: score_bound must be None (got {score_bound}); pick score='cosine' or 'softcap'")
        if score != "dot" and not (isinstance(score_bound, (int, float)) and score_bound > 0):
            raise ValueError(f"score={score!r} needs score_bound > 0 (got {score_bound})")
        self.score, self.score_bound = score, None if score_bound is None else float(score_bound)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_heads < 1 or n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} must be a positive multiple of n_kv_heads={n_kv_heads}")
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pass d_head")
            d_head = d_model // n_heads
        if rope_base is not None and not rope_base > 1:
            raise ValueError(f"rope_base must be > 1 (got {rope_base})")
        self.d_model, self.n_heads, self.n_kv_heads, self.d_head = d_model, n_heads, n_kv_heads, d_head
        self.causal, self.rope_base, self.train_length = causal, rope_base, train_length
        self.plan = LayerPlan.of(variant, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, d_head=d_head,
                                 train_length=train_length, where=" (pass train_length=...)")
        self.variant, self.placements = self.plan.variant, self.plan.placements
        self.q_proj = nn.Linear(d_model, n_heads * d_head, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=bias)
        self.o_proj = nn.Linear(n_heads * d_head, d_model, bias=bias)
        self.q_norm = _RMSNorm(d_head) if qk_norm else None
        self.k_norm = _RMSNorm(d_head) if qk_norm else None
        draw = lambda shape: torch.randn(shape) / math.sqrt(d_model)  # noqa: E731  (torch's global generator)
        self.temp = self.plan.parameter_dict(self.plan.new_parameters(draw, alpha_init=alpha_init))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, d_head={self.d_head}, "
                f"variant={self.variant.name!r}, causal={self.causal}, rope_base={self.rope_base}"
                + ("" if self.score == "dot" else f", score={self.score!r}, score_bound={self.score_bound}"))

    def new_cache(self, batch_size: int, max_len: int, *, device=None, dtype=None) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_len`` tokens (on the layer's device
        and dtype unless given)."""
        if not (isinstance(batch_size, int) and batch_size >= 1 and isinstance(max_len, int) and max_len >= 1):
            raise ValueError(f"new_cache needs batch_size >= 1 and max_len >= 1 (got {batch_size}, {max_len})")
        w = self.q_proj.weight
        device, dtype = device or w.device, dtype or w.dtype
        shape = (batch_size, self.n_kv_heads, max_len, self.d_head)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype),
                       torch.zeros(batch_size, max_len, dtype=torch.bool, device=device),
                       torch.zeros(batch_size, dtype=torch.long, device=device))

    def parameters_of(self, strategy: str, side: str | None = None) -> dict[str, nn.Parameter]:
        """The parameters of a placed strategy by their declared names, without a member axis:
        ``m.parameters_of("ssa_tok", "q")["u"]`` is SSA's query u (H, d), ``m.parameters_of("ssa_pos", "q")["alpha"]``
        its alpha (H,). ``KeyError`` naming what is placed otherwise."""
        return self.plan.parameters_of(self.temp, strategy, side)

    def strategies(self) -> core.Strategies:
        """The layer's strategies as the attention core takes them: every parameter with a member axis of 1."""
        return self.plan.strategies({k: p[None] for k, p in self.temp.items()})

    def temperature(self, x: torch.Tensor, side: str = "q", *, positions: torch.Tensor | None = None,
                    extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """SSA's inverse temperature on ``side`` (``q`` or ``v``) for each token of x ``(B, L, D)``: ``1 +``
        the side's position and token terms, ``(B, H, L)`` (``H_kv`` heads on ``v``), as the layer applies it
        (the token term reads the side's projection, after QK-norm on ``q``); None where the side has no
        SSA term. ``positions``: 0-based, ``(L,)`` or ``(B, L)`` (default 0..L-1); ``extras``: the
        strategies' per-token data (a scrambled variant's permutations)."""
        if side not in ("q", "v"):
            raise ValueError(f"side must be 'q' or 'v' (got {side!r})")
        B, L, _ = x.shape
        heads = self.n_heads if side == "q" else self.n_kv_heads
        proj = (self.q_proj if side == "q" else self.v_proj)(x).view(B, L, heads, self.d_head).transpose(1, 2)
        if side == "q" and self.q_norm is not None:
            proj = self.q_norm(proj)
        pos = torch.arange(L, device=x.device) if positions is None else core.check_positions(positions, B, L).to(x.device)
        pos = pos.reshape(-1, 1, L)  # (B or 1, 1, L)
        tau = self.plan.readout({k: p[None] for k, p in self.temp.items()}, side, x[None], which=SSA,
                                proj=proj[None], positions=pos, extras=extras)
        return None if tau is None else tau[0].expand(B, heads, L)

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Attend within x ``(B, L, D)``; return ``(B, L, D)``.

        Args:
            positions: 0-based token indices, integers >= 0, ``(L,)`` or ``(B, L)``. Default: each row's
                real tokens counted from 0 (from ``attention_mask``; 0..L-1 without padding), continuing
                from the cache's positions when decoding. They feed RoPE and the strategies; which key a
                query sees is decided by slot (causal) and by the masks, never by positions.
            attn_mask: boolean, True = may attend: ``(Lq, Lk)`` (a 2-D mask is always this), ``(B, Lq, Lk)``,
                ``(B, 1, Lq, Lk)`` or ``(B, H, Lq, Lk)``, Lk counting the cached keys too. Combined with the
                causal mask.
            attention_mask: padding, in Hugging Face's convention: ``(B, L)`` boolean or 0/1, True / 1 = a
                real token. With a cache, ``(B, L)`` for the new tokens or ``(B, length + L)`` for all of
                them (as Hugging Face passes it); the prompt call's padding is remembered, so later calls
                need none.
            cache: from ``new_cache``; this call's keys and values are appended and the queries attend
                over everything cached so far.
            extras: per-token data a strategy reads (``ssa_theory.strategies.EXTRAS``):
                ``{"k_freq": (B, L)}``, each token's training frequency, for the ``freq`` strategy.
        """
        out, _ = self._attend(x, positions, attn_mask, attention_mask, cache, extras)
        B, L, _ = x.shape
        return self.o_proj(out[0].transpose(1, 2).reshape(B, L, self.n_heads * self.d_head))

    def attention_weights(self, x: torch.Tensor, *, rows: torch.Tensor | None = None,
                          positions: torch.Tensor | None = None,
                          attn_mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                          extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The attention probabilities the layer applies to x ``(B, L, D)``: ``(B, H, R, L)`` for the query
        rows ``rows`` (indices (R,); default every row, R = L), every temperature included. A sink's
        share is left out (each row then sums to 1 - p_sink); a query that sees no key gets zeros.
        ``weights @ values`` is the layer's attention output before the gate and ``o_proj`` (tested)."""
        rows = None if rows is None else torch.as_tensor(rows, device=x.device, dtype=torch.long)
        _, w = self._attend(x, positions, attn_mask, attention_mask, None, extras, return_probs=True, rows=rows)
        return w[0]

    def _attend(self, x, positions, attn_mask, attention_mask, cache, extras, return_probs=False, rows=None):
        """The core's call: projections (E = 1), positions, padding and masks by name, RoPE, the cache."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, L, {self.d_model}), got {tuple(x.shape)}")
        B, L, _ = x.shape
        offset = 0
        if cache is not None:
            cache.check(x)
            offset = cache.length
        valid = None
        if attention_mask is not None:
            if cache is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] == offset + L != L:
                attention_mask = attention_mask[:, offset:]  # the full padding mask, as Hugging Face passes it
            valid = core.padding_valid(attention_mask, B, L)
        if positions is not None:
            positions = core.check_positions(positions, B, L).to(x.device)
        elif valid is not None or cache is not None:
            positions = core.positions_from_padding(torch.ones(B, L, dtype=torch.bool, device=x.device)
                                                    if valid is None else valid, 0 if cache is None else cache.count)
        H, Hk, d = self.n_heads, self.n_kv_heads, self.d_head
        q = self.q_proj(x).view(B, L, H, d).transpose(1, 2)  # (B, H, L, d)
        k = self.k_proj(x).view(B, L, Hk, d).transpose(1, 2)  # (B, H_kv, L, d)
        v = self.v_proj(x).view(B, L, Hk, d).transpose(1, 2)
        if self.q_norm is not None:  # before the temperature: a norm after it would undo it
            q, k = self.q_norm(q), self.k_norm(k)
        mask = None if attn_mask is None else core.mask5(attn_mask.to(x.device), 1, B, H, L, offset + L)
        rotate = None if self.rope_base is None else (lambda t, pos: _rope(t, pos, self.rope_base))
        return core.attend(self.strategies(), q[None], k[None], v[None], x=x[None], q_pos=positions, k_pos=positions,
                           causal=self.causal, attn_mask=mask, key_valid=valid, rotate=rotate, cache=cache,
                           extras=extras, return_probs=return_probs, rows=rows, score=self.score, bound=self.score_bound)


def count_new_parameters(module: nn.Module) -> int:
    """Parameters a variant adds to a layer: those of its strategies (``module.temp``)."""
    return sum(p.numel() for p in module.temp.parameters())


def parameter_counts(variants: Sequence[str], d_model: int = 768, n_heads: int = 12) -> list[dict]:
    """New parameters per variant for a layer of this shape (default GPT-2 small: D 768, 12 heads),
    as a count and as a share of the layer's own (q, k, v, o projections)."""
    rows = []
    for variant in variants:  # names or resolved Variants
        m = SelectiveAttention(d_model, n_heads, variant=variant, train_length=1024)
        base = sum(p.numel() for n_, p in m.named_parameters() if not n_.startswith("temp."))
        new = count_new_parameters(m)
        rows.append({"variant": m.variant.name, "new_parameters": new, "layer_parameters": base,
                     "share_percent": 100 * new / base})
    return rows
