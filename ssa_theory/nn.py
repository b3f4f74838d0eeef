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

Conventions are PyTorch's: boolean masks say True where a query may attend; ``selective_sdpa``
takes ``(B, H, L, d)``; ``positions`` are 0-based token indices. The temperatures come from the
strategy table (``ssa_theory.strategies``, listed by ``strategies()``): this module builds the
inputs each formula reads and applies it through the table, exactly as the experiments' ensemble
layer (``ssa_theory.attention.Attention``) does, so there is one formula per strategy, not a copy.
The experiments' layer holds E seeds at once; here E = 1 and every parameter drops that axis.

Where temperatures go in the block (the order matters, and follows the study of where they go in a
modern block: litgpt, OLMo-core):
- tau_q multiplies q after QK-norm (a norm after it would undo it);
- with weight sharing the token term reads the projection before RoPE, so it stays a function of
  the token, not of its position; a per-row scalar commutes with RoPE, so the scale itself can be
  applied before or after it;
- tau_k and tau_v multiply k and v before they are written to the cache;
- n, the keys a query sees, and the position terms come from the cache offset while decoding.

Rows with no visible key (a fully padded query) give an output of zero on every path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ssa_theory import strategies as st
from ssa_theory.attention import SDPA_ROW_LIMIT, Variant, _sdpa_rows, append_sink, get_variant, open_empty_rows
from ssa_theory.ensemble import linear
from ssa_theory.strategies import Param, Strategy, register_strategy  # noqa: F401  (the public API)

__all__ = ["selective_sdpa", "sdpa_weights", "SelectiveAttention", "KVCache", "strategies", "register_strategy", "Strategy", "Param",
           "normalise_mask", "SDPA_ROW_LIMIT"]


def strategies() -> list[dict]:
    """Every registered temperature strategy: name, side, how it combines, range, neutral setting,
    what it needs, its source and where it came from (built-in, a decorator, an entry point)."""
    return [{"name": s.name, "side": s.side or "q, k or v (SSA term)", "combine": s.combine, "range": s.range,
             "neutral": s.neutral, "needs": sorted(s.needs), "params": list(s.params), "source": s.source,
             "about": s.about, "origin": s.origin} for s in st.table()]


# --- the functional core ------------------------------------------------------------------------------------


def _expand_kv(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, H_kv, L, d) -> (B, H, L, d) for grouped-query heads (each kv head serves H / H_kv query heads)."""
    if t.shape[1] == n_heads:
        return t
    if n_heads % t.shape[1]:
        raise ValueError(f"{n_heads} query heads cannot share {t.shape[1]} key/value heads evenly")
    return t.repeat_interleave(n_heads // t.shape[1], dim=1)


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
        attn_mask: boolean, broadcastable to ``(B, H, Lq, Lk)``, True where a query may attend; or a
            float mask added to the logits, as ``F.scaled_dot_product_attention`` takes it.
        is_causal: as in ``F.scaled_dot_product_attention`` (query i sees keys 0..i, top-left aligned).

    The scales are folded into q, k and v and one fused kernel call is made (in calls of at most
    ``SDPA_ROW_LIMIT`` batch x head rows). A query with no visible key gets a zero output.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"selective_sdpa takes (B, H, L, d) tensors; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if q_scale is not None:
        q = q * q_scale[..., None]
    if k_scale is not None:
        k = k * k_scale[..., None]
    if v_scale is not None:
        v = v * v_scale[..., None]
    H = q.shape[1]
    k, v = _expand_kv(k, H), _expand_kv(v, H)
    mask = None
    if attn_mask is not None:
        mask = attn_mask.expand(q.shape[0], H, q.shape[2], k.shape[2])
    empty = None
    if mask is not None:
        mask, empty = open_empty_rows(mask)  # (B, H, Lq): queries that see no key get zero
    out = _sdpa_rows(q, k, v, mask, is_causal and attn_mask is None)
    return out if empty is None else out.masked_fill(empty[..., None], 0.0)


def sdpa_weights(q: torch.Tensor, k: torch.Tensor, *, q_scale: torch.Tensor | None = None,
                 attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """The attention probabilities ``selective_sdpa`` applies: ``(B, H, Lq, Lk)``, so that
    ``sdpa_weights(q, k, ...) @ v`` is its output (tested). Same arguments (``k_scale`` already folded
    into k); the explicit softmax, for reading a layer's attention, not for speed. A query with no
    visible key gets zeros."""
    if q_scale is not None:
        q = q * q_scale[..., None]
    k = _expand_kv(k, q.shape[1])
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    empty = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            visible = attn_mask.expand_as(logits)
            empty = ~visible.any(-1, keepdim=True)
            logits = logits.masked_fill(~visible, float("-inf")).masked_fill(empty, 0.0)
        else:
            logits = logits + attn_mask
    w = torch.softmax(logits, dim=-1)
    return w if empty is None else w.masked_fill(empty, 0.0)


def normalise_mask(attn_mask: torch.Tensor, batch: int, lq: int, lk: int) -> torch.Tensor:
    """Any accepted mask as a boolean ``(B, 1, Lq, Lk)`` (True = may attend).

    Accepted shapes: ``(Lq, Lk)``, ``(B, Lq, Lk)``, ``(B, 1, Lq, Lk)``, and ``(B, Lk)``, a key-padding
    mask (True = a real token). A ``(B, Lq, Lk)`` mask is a batch axis, never a head axis.
    """
    if attn_mask.dtype != torch.bool:
        raise ValueError(f"attn_mask must be boolean (True = may attend), got {attn_mask.dtype}")
    shape = tuple(attn_mask.shape)
    if shape == (lq, lk):
        return attn_mask[None, None].expand(batch, 1, lq, lk)
    if shape == (batch, lk) and not (lq == batch and shape == (lq, lk)):
        return attn_mask[:, None, None, :].expand(batch, 1, lq, lk)
    if shape == (batch, lq, lk):
        return attn_mask[:, None]
    if shape == (batch, 1, lq, lk):
        return attn_mask
    raise ValueError(f"attn_mask of shape {shape} is not one of (Lq, Lk) = {(lq, lk)}, (B, Lq, Lk) = "
                     f"{(batch, lq, lk)}, (B, 1, Lq, Lk) = {(batch, 1, lq, lk)} or a key-padding mask (B, Lk) = "
                     f"{(batch, lk)}")


# --- the cache ----------------------------------------------------------------------------------------------


@dataclass
class KVCache:
    """Keys and values written so far, for incremental decoding: ``k`` ``(B, H_kv, max_len, d)`` and
    ``v`` ``(B, H_kv, max_len, d_v)``, tau_k and tau_v already applied and RoPE applied to k, and
    ``length``, the tokens written so far (the next token's 0-based position)."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append L tokens (k ``(B, H_kv, L, d)``, v likewise); return everything cached, ``(B, H_kv, length, .)``."""
        L = k.shape[2]
        if self.length + L > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} tokens; {self.length} are written and {L} more do not "
                             "fit (make it with a larger max_len)")
        self.k[:, :, self.length:self.length + L], self.v[:, :, self.length:self.length + L] = k, v
        self.length += L
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


# --- the module ---------------------------------------------------------------------------------------------


def _rope(t: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding of t ``(B, H, L, d)`` at 0-based ``positions`` ``(B, L)`` (halves rotated)."""
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


def _positions(positions: torch.Tensor | None, B: int, L: int, offset: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """SSA's n, each token's 1-based position ((L,) or (B, 1, L), broadcasting over heads), and the
    0-based positions (B, L), from ``positions`` (L,) or (B, L); default ``offset .. offset + L - 1``."""
    if positions is None:
        positions = torch.arange(offset, offset + L, device=device)
    positions = positions.to(device)
    if positions.dim() == 1:
        if positions.shape[0] != L:
            raise ValueError(f"positions must have length L = {L}, got {tuple(positions.shape)}")
        return positions + 1, positions.expand(B, L)
    if positions.shape == (B, L):
        return (positions + 1)[:, None, :], positions
    raise ValueError(f"positions must be (L,) or (B, L) = {(B, L)}, got {tuple(positions.shape)}")


class SelectiveAttention(nn.Module):
    """Multi-head self-attention ``(B, L, D) -> (B, L, D)`` with SSA or any temperature strategy.

    Args:
        d_model: D. n_heads: H query heads. n_kv_heads: key/value heads (default H; a divisor of H
            gives grouped-query attention). d_head: per-head width (default D // H).
        variant: a name of ``ssa_theory.attention.VARIANTS`` (``"ssa"``: query and value temperature,
            both terms; ``"vanilla"``), a strategy's name or ``package.module:attr``, or a ``Variant``.
        causal: whether query i sees only keys 0..i (default True).
        rope_base: RoPE's base (e.g. 10000.0); None for no RoPE.
        qk_norm: RMS-normalise q and k per head (with a learned gain) before the temperature.
        bias: biases in the projections.
        train_length: the training length L of strategies that need one (``yarn``, ``qwen``, ``llama4``).
        alpha_init: SSA's initial alpha of the position terms (sigmoid(-4) = 0.018: nearly vanilla).

    Projections are ``nn.Linear`` with torch's default initialisation; the strategies' parameters
    are read and set by their declared names through ``parameters_of`` (SSA's query u ``(H, d)`` is
    ``parameters_of("ssa_tok", "q")["u"]``, its alpha ``(H,)`` ``parameters_of("ssa_pos", "q")["alpha"]``).
    """

    def __init__(self, d_model: int, n_heads: int, *, variant: str | Variant = "ssa", n_kv_heads: int | None = None,
                 d_head: int | None = None, causal: bool = True, rope_base: float | None = None,
                 qk_norm: bool = False, bias: bool = False, train_length: int | None = None,
                 alpha_init: float = -4.0) -> None:
        super().__init__()
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
        self.variant = get_variant(variant)
        self.placements = self.variant.placements()
        st.check_placements(self.placements, train_length, where=" (pass train_length=...)")
        self.q_proj = nn.Linear(d_model, n_heads * d_head, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=bias)
        self.o_proj = nn.Linear(n_heads * d_head, d_model, bias=bias)
        self.q_norm = _RMSNorm(d_head) if qk_norm else None
        self.k_norm = _RMSNorm(d_head) if qk_norm else None
        self.temp = nn.ParameterDict()
        heads = {"q": n_heads, "k": n_kv_heads, "v": n_kv_heads, "out": n_heads, "sink": n_heads}
        for side, strategy, prefix in self.placements:
            for pname, spec in strategy.params.items():
                shape = st.param_shape(spec, H=heads[side], w=d_head, d=d_head, D=d_model)
                init = st.initial_value(spec, alpha_init=alpha_init)
                value = torch.randn(shape) / math.sqrt(d_model) if init is None else torch.full(shape, init)
                self.temp[prefix + pname] = nn.Parameter(value)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, d_head={self.d_head}, "
                f"variant={self.variant.name!r}, causal={self.causal}, rope_base={self.rope_base}")

    def new_cache(self, batch_size: int, max_len: int, *, device=None, dtype=None) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_len`` tokens."""
        w = self.q_proj.weight
        device, dtype = device or w.device, dtype or w.dtype
        shape = (batch_size, self.n_kv_heads, max_len, self.d_head)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    # the strategy table, applied with E = 1 (the formulas are written for the ensemble layer)

    def parameters_of(self, strategy: str, side: str | None = None) -> dict[str, nn.Parameter]:
        """The parameters of a placed strategy by their declared names, without a member axis:
        ``m.parameters_of("ssa_tok", "q")["u"]`` is SSA's query u (H, d), ``m.parameters_of("ssa_pos", "q")["alpha"]``
        its alpha (H,). ``KeyError`` naming what is placed otherwise."""
        return st.parameters_of(self.placements, self.temp, strategy, side)

    def _params(self, prefix: str, strategy: Strategy) -> dict[str, torch.Tensor]:
        return {pname: self.temp[prefix + pname][None] for pname in strategy.params}

    def _heads_of(self, n: int):
        return lambda t: t.reshape(*t.shape[:-1], n, -1).transpose(-2, -3)  # (E, B, L, n w) -> (E, B, n, L, w)

    def _side_tau(self, side: str, x: torch.Tensor, proj: torch.Tensor, pos: torch.Tensor, n: torch.Tensor | None,
                  q: torch.Tensor | None, k_freq: torch.Tensor | None) -> torch.Tensor | None:
        """tau of ``side`` (B, H_side, L) from the table: 1 + SSA's terms, times the side's factors; None if 1."""
        placed = [(s, prefix) for sd, s, prefix in self.placements if sd == side]
        if not placed:
            return None
        heads = self.n_heads if side in ("q", "out") else self.n_kv_heads
        inputs = st.Inputs(x=x[None], proj=proj[None], pos=pos, n=n, q=None if q is None else q[None], k_freq=k_freq,
                           train_length=self.train_length, heads=self._heads_of(heads), linear=linear)
        placed = [(s, self._params(prefix, s)) for s, prefix in placed]
        tau = st.ssa_temperature([t for t in placed if t[0].combine == "add"], inputs)
        factor = st.product([t for t in placed if t[0].combine == "mul"], inputs)
        tau = factor if tau is None else (tau if factor is None else tau * factor)
        B, L = x.shape[0], x.shape[1]
        return tau.expand(1, B, heads, L)[0]

    def _extra(self, side: str, x: torch.Tensor) -> torch.Tensor | None:
        """An ``out`` factor (B, H, Lq, w or 1) or a ``sink`` logit (1, H, 1, 1), from the table."""
        inputs = st.Inputs(x=x[None], proj=None, pos=None, n=None, q=None, k_freq=None, train_length=self.train_length,
                           heads=self._heads_of(self.n_heads), linear=linear)
        value = st.product([(s, self._params(prefix, s)) for sd, s, prefix in self.placements if sd == side], inputs)
        return None if value is None else value[0]

    def _visible(self, pos_b: torch.Tensor, Lk: int, cached: bool, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """Visibility (B, 1, Lq, Lk) over all keys (cached and new): causal by positions, the user's mask."""
        B, L = pos_b.shape
        key_pos = torch.arange(Lk, device=pos_b.device).expand(B, Lk) if cached else pos_b
        visible = torch.ones(B, 1, L, Lk, dtype=torch.bool, device=pos_b.device)
        if self.causal:
            visible = visible & (key_pos[:, None, None, :] <= pos_b[:, None, :, None])
        if attn_mask is not None:
            visible = visible & normalise_mask(attn_mask.to(pos_b.device), B, L, Lk)
        return visible

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, k_freq: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within x ``(B, L, D)``; return ``(B, L, D)``.

        Args:
            positions: 0-based token indices ``(L,)`` or ``(B, L)``; default ``offset .. offset + L - 1``,
                the offset being the cache's length (0 without a cache).
            attn_mask: boolean, True = may attend: ``(Lq, Lk)``, ``(B, Lq, Lk)``, ``(B, 1, Lq, Lk)``, or a
                key-padding mask ``(B, Lk)``, Lk counting the cached keys too. Combined with the causal mask.
            cache: from ``new_cache``; this step's keys and values are appended and the queries attend
                over everything cached so far.
            k_freq: ``(B, L)``, each token's training frequency, for the ``freq`` strategy.
        """
        q, k, v, tq, mask, is_causal = self._attend_inputs(x, positions, attn_mask, cache, k_freq)
        out = selective_sdpa(q, k, v, q_scale=tq, attn_mask=mask, is_causal=is_causal)
        gate = self._extra("out", x)
        if gate is not None:
            out = out * gate
        B, L, _ = x.shape
        return self.o_proj(out.transpose(1, 2).reshape(B, L, self.n_heads * self.d_head))

    def attention_weights(self, x: torch.Tensor, *, rows: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                          attn_mask: torch.Tensor | None = None, k_freq: torch.Tensor | None = None) -> torch.Tensor:
        """The attention probabilities the layer applies to x ``(B, L, D)``: ``(B, H, R, L)`` for the query
        rows ``rows`` (indices (R,); default every row, R = L), every temperature included. A sink's
        share is left out (each row then sums to 1 - p_sink); a query that sees no key gets zeros.
        ``weights @ values`` is the layer's attention output before the gate and ``o_proj`` (tested)."""
        q, k, _, tq, mask, is_causal = self._attend_inputs(x, positions, attn_mask, None, k_freq)
        Lq, Lk = q.shape[-2], k.shape[-2]
        if is_causal:  # the plain causal mask, made explicit for the rows asked for
            mask = torch.ones(Lq, Lk, dtype=torch.bool, device=x.device).tril()[None, None]
        if rows is not None:
            rows = torch.as_tensor(rows, device=x.device)
            B, H = q.shape[:2]
            tq = None if tq is None else tq.expand(B, H, Lq)[:, :, rows]
            mask = None if mask is None else mask.expand(B, -1, Lq, -1)[:, :, rows]
            q = q[:, :, rows]
        w = sdpa_weights(q, k, q_scale=tq, attn_mask=mask)
        return w[..., : x.shape[1]]  # the sink's column, if any, dropped

    def _attend_inputs(self, x, positions, attn_mask, cache, k_freq):
        """Everything the attention call takes: q (B,H,L,d), k and v (B,H_kv,Lk,d) with tau_k and tau_v
        folded in (and the cache written), tau_q (B,H,L) or None, the mask (None, boolean, or float with
        the sink's column) and whether the plain causal mask is left to the kernel."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, L, {self.d_model}), got {tuple(x.shape)}")
        B, L, _ = x.shape
        offset = cache.length if cache is not None else 0
        default_positions = positions is None
        pos, pos_b = _positions(positions, B, L, offset, x.device)
        H, Hk, d = self.n_heads, self.n_kv_heads, self.d_head
        q = self.q_proj(x).view(B, L, H, d).transpose(1, 2)  # (B, H, L, d)
        k = self.k_proj(x).view(B, L, Hk, d).transpose(1, 2)  # (B, H_kv, L, d)
        v = self.v_proj(x).view(B, L, Hk, d).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)

        Lk = offset + L
        # the plain causal case goes to the fused kernel as is_causal=True, without a mask tensor
        plain = attn_mask is None and cache is None and self.causal and default_positions
        visible = None if plain else self._visible(pos_b, Lk, cache is not None, attn_mask)
        # n, the keys each query sees: (Lq,), or (1, B, 1, Lq) counted from the mask
        n = torch.arange(1, L + 1, device=x.device, dtype=x.dtype) if plain else visible.sum(-1).to(x.dtype)[None]

        # temperatures from the table (the token term reads the pre-RoPE projections)
        tq = self._side_tau("q", x, q, pos, n, q, k_freq)
        tk = self._side_tau("k", x, k, pos, None, None, k_freq)
        tv = self._side_tau("v", x, v, pos, None, None, k_freq)
        if self.rope_base is not None:
            q, k = _rope(q, pos_b, self.rope_base), _rope(k, pos_b, self.rope_base)
        if tk is not None:
            k = k * tk[..., None]
        if tv is not None:
            v = v * tv[..., None]
        if cache is not None:
            k, v = cache.write(k, v)

        sink = self._extra("sink", x)
        mask = visible
        if sink is not None:  # a zero key and value whose logit is the sink's: a float mask
            if mask is None:
                mask = torch.ones(L, Lk, dtype=torch.bool, device=x.device).tril()[None, None]
            k, v, mask = append_sink(k, v, mask, sink)
        return q, k, v, tq, mask, plain and sink is None


def count_new_parameters(module: nn.Module) -> int:
    """Parameters a variant adds to a layer: those of its strategies (``module.temp``)."""
    return sum(p.numel() for p in module.temp.parameters())


def parameter_counts(variants: Sequence[str], d_model: int = 768, n_heads: int = 12) -> list[dict]:
    """New parameters per variant for a layer of this shape (default GPT-2 small: D 768, 12 heads),
    as a count and as a share of the layer's own (q, k, v, o projections)."""
    rows = []
    for name in variants:
        m = SelectiveAttention(d_model, n_heads, variant=name, train_length=1024)
        base = sum(p.numel() for n_, p in m.named_parameters() if not n_.startswith("temp."))
        new = count_new_parameters(m)
        rows.append({"variant": name, "new_parameters": new, "layer_parameters": base, "share_percent": 100 * new / base})
    return rows
