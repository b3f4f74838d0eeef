"""The attention core: everything between a layer's projections and its output, written once.

Both layers are thin shells over ``attend``: the experiments' ensemble layer
(``ssa_theory.attention.Attention``: stacked parameters, generator initialisation, score
geometries) and the public module (``ssa_theory.nn.SelectiveAttention``: ``nn.Linear``, RoPE,
grouped-query heads, QK-norm, a KV cache). The core does, in this order:

1. **Visibility.** Query i (slot ``offset + i``, the cache's length being the offset) may see key
   slot j when every one of these holds: ``j <= offset + i`` under ``causal`` (PyTorch's and Hugging
   Face's rule: by slot, not by position), ``attn_mask`` is True there, and key j is a real token
   (``key_valid``, from a padding mask). A query that sees no key at all gets a zero output.
2. **n**, the keys each query sees: the visible, real keys of its row (``1..L`` under a plain causal
   mask, counted without materialising it).
3. **Temperatures** from the strategy table (``ssa_theory.strategies``): per side, ``tau = 1 + SSA's
   terms``, times every factor; the strategies read an ``Inputs`` filled here (the side's inputs and
   projection before RoPE, 1-based positions, n, the queries, the train length, the caller's
   ``extras``).
4. **Rotation** (RoPE, when the shell gives one) after the temperatures have read the projections,
   then the **cache**: new keys and values are written with their temperatures, and the queries
   attend over everything cached.
5. **The kernel.** For the dot product, tau is folded into q, k and v and one fused
   ``F.scaled_dot_product_attention`` call is made (``is_causal=True`` for the plain causal mask);
   the ``cosine`` geometry takes the same call on unit q and k, q scaled by ``B sqrt(d)`` (QK-norm at
   a fixed scale, so a long context never materialises its L x L scores); otherwise, or when the
   probabilities are asked for, the explicit path: the geometry's score times
   tau_q times tau_k, masked, softmax, times the values. A ``sink`` strategy adds a zero key and value
   whose logit is its own.
6. **The output factor** (a gate), per query.

There is no data-dependent Python control flow on this path: queries with no visible key are opened
and zeroed by tensor operations whatever their number, so ``torch.compile(fullgraph=True)``,
``vmap`` and meta tensors run with masks and padding (tested).

Shapes: E ensemble members (1 for the public module), B batch, H query heads, H_kv key/value heads
(H a multiple of it), Lq queries, Lk keys, d the query/key width, w the value width, D the model width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ssa_theory import strategies as st
from ssa_theory.ensemble import linear

SCORES = ("dot", "cosine", "softcap", "rownorm")
SDPA_ROW_LIMIT = 65_535  # CUDA's grid limit: the most (batch x head) rows one fused-attention call may take


# --- the strategies a layer applies ------------------------------------------------------------------------


def split_heads(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """(E, B, L, n w) -> (E, B, n, L, w), a view."""
    return lambda t: t.reshape(*t.shape[:-1], n, -1).transpose(-2, -3)


@dataclass(frozen=True)
class Strategies:
    """What the core needs of a layer's strategies: where each is placed (``placements``: (side,
    Strategy, parameter prefix), from ``Variant.placements``), the parameters by ``prefix + name``,
    each with a leading member axis (E, *declared shape), the train length, and the heads per side."""

    placements: Sequence[tuple[str, st.Strategy, str]]
    params: Mapping[str, torch.Tensor]
    train_length: int | None
    n_heads: int
    n_kv_heads: int

    def on(self, side: str, combine: str | None = None) -> list[tuple[st.Strategy, dict[str, torch.Tensor]]]:
        """The strategies placed on ``side`` (of one ``combine`` kind, or all), with their parameters
        shaped per head as the formulas take them (``strategies.per_head``)."""
        return [(s, {p: st.per_head(self.params[prefix + p], spec.shape) for p, spec in s.params.items()})
                for sd, s, prefix in self.placements if sd == side and (combine is None or s.combine == combine)]

    def heads(self, side: str) -> int:
        return self.n_kv_heads if side in ("k", "v") else self.n_heads

    def inputs(self, side: str, x: torch.Tensor, *, proj=None, positions=None, n=None, q=None,
               extras=None) -> st.Inputs:
        """What the side's formulas read; ``positions`` (0-based, (B or 1, 1, L) or (L,)) default to
        0..L-1, L the length of x."""
        if positions is None:
            positions = torch.arange(x.shape[-2], device=x.device)
        return st.Inputs(x=x, proj=proj, positions=positions, n=n, q=q, train_length=self.train_length,
                         heads=split_heads(self.heads(side)), linear=linear, extras=extras or {}, dtype=x.dtype)

    def ssa(self, side: str, inputs: st.Inputs) -> torch.Tensor | None:
        """SSA's tau = 1 + the side's ``add`` terms, or None without any."""
        return st.ssa_temperature(self.on(side, "add"), inputs)

    def tau(self, side: str, inputs: st.Inputs) -> torch.Tensor | None:
        """Everything that multiplies the side's logits (q, k) or values (v): SSA's tau times the
        ``mul`` factors; None where that is 1."""
        tau = self.ssa(side, inputs)
        factor = st.product(self.on(side, "mul"), inputs)
        return factor if tau is None else (tau if factor is None else tau * factor)

    def extra(self, side: str, inputs: st.Inputs) -> torch.Tensor | None:
        """An ``out`` factor (E, B, H, Lq, w or 1) or a ``sink`` logit (E, 1, H, 1), or None."""
        return st.product(self.on(side), inputs)

    def reads_n(self, sides: Sequence[str]) -> bool:
        return any(self.on(side, "mul") for side in sides)


# --- masks, padding and positions --------------------------------------------------------------------------


def _concrete(t: torch.Tensor) -> bool:
    """Whether t's values can be read here (not while compiling, under vmap or on the meta device)."""
    if t.device.type == "meta" or torch.compiler.is_compiling():
        return False
    try:
        return not torch._C._functorch.is_functorch_wrapped_tensor(t)
    except AttributeError:  # an older torch without the check: assume eager
        return True


def padding_valid(attention_mask: torch.Tensor, batch: int, length: int, name: str = "attention_mask") -> torch.Tensor:
    """A padding mask as boolean ``(B, L)``, True = a real token (Hugging Face's ``attention_mask``
    convention: 1 or True for a real token, 0 or False for padding)."""
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(f"{name} must be a tensor (B, L) of 0/1 or booleans, True = a real token")
    if attention_mask.dtype.is_floating_point or attention_mask.dtype.is_complex:
        raise ValueError(f"{name} must be boolean or integer 0/1 (True = a real token, Hugging Face's convention); "
                         f"got {attention_mask.dtype}")
    if tuple(attention_mask.shape) != (batch, length):
        raise ValueError(f"{name} must be (B, L) = {(batch, length)}, got {tuple(attention_mask.shape)}")
    if attention_mask.dtype != torch.bool:
        if _concrete(attention_mask) and bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise ValueError(f"{name} holds values other than 0 and 1 (1 = a real token, 0 = padding)")
        attention_mask = attention_mask != 0
    return attention_mask


def check_positions(positions: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """Explicit positions as ``(B or 1, L)`` integers: 0-based token indices, >= 0 (``ValueError`` otherwise)."""
    if not isinstance(positions, torch.Tensor):
        positions = torch.as_tensor(positions)
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise ValueError(f"positions must be integers >= 0 (0-based token indices), got {positions.dtype}")
    if positions.dim() == 1 and positions.shape[0] == length:
        positions = positions[None]
    elif not (positions.dim() == 2 and tuple(positions.shape) in ((batch, length), (1, length))):
        raise ValueError(f"positions must be (L,) or (B, L) = {(batch, length)}, got {tuple(positions.shape)}")
    if _concrete(positions) and positions.numel() and bool((positions < 0).any()):
        raise ValueError(f"positions must be >= 0 (0-based token indices); the smallest is {int(positions.min())}")
    return positions


def positions_from_padding(valid: torch.Tensor, start: torch.Tensor | int = 0) -> torch.Tensor:
    """0-based positions ``(B, L)`` that count each row's real tokens only, from ``start`` ((B,) or an
    int: the real tokens already seen): the first real token is position ``start``, as Hugging Face
    derives ``position_ids`` from ``attention_mask``. Padding gets position ``start`` too (it is
    never seen)."""
    start = torch.as_tensor(start, device=valid.device).reshape(-1, 1)
    counted = torch.cumsum(valid.to(torch.long), -1) - 1
    return start + torch.where(valid, counted, torch.zeros_like(counted)).clamp_min(0)


def mask5(attn_mask: torch.Tensor, E: int, B: int, H: int, Lq: int, Lk: int) -> torch.Tensor:
    """A boolean ``attn_mask`` (True = may attend) as 5-D, broadcastable to (E, B, H, Lq, Lk).

    By name, never by shape guessing: ``(Lq, Lk)`` (a 2-D mask is always this), ``(B, Lq, Lk)`` (a
    batch axis, never heads), ``(B, 1 or H, Lq, Lk)``, or ``(E, B, 1 or H, Lq, Lk)``."""
    if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
        got = attn_mask.dtype if isinstance(attn_mask, torch.Tensor) else type(attn_mask).__name__
        raise ValueError(f"attn_mask must be boolean (True = may attend), got {got}")
    shape = tuple(attn_mask.shape)
    if attn_mask.dim() == 2 and shape != (Lq, Lk) and shape == (B, Lk):
        raise ValueError(f"attn_mask {shape} is a padding mask: pass it as attention_mask= (B, Lk), True = a real "
                         f"token; a 2-D attn_mask is always (Lq, Lk) = {(Lq, Lk)}")
    expected = {2: (Lq, Lk), 3: (B, Lq, Lk), 4: (B, H, Lq, Lk), 5: (E, B, H, Lq, Lk)}.get(attn_mask.dim())
    lead = {2: (None, None, None), 3: (None, slice(None), None), 4: (None,), 5: ()}.get(attn_mask.dim())
    # every axis its size, or 1 on a leading (member, batch, head) axis, which then broadcasts
    ok = expected is not None and all(s == e or (s == 1 and i < len(shape) - 2)
                                      for i, (s, e) in enumerate(zip(shape, expected)))
    if not ok:
        raise ValueError(f"attn_mask of shape {shape} is not one of (Lq, Lk) = {(Lq, Lk)}, (B, Lq, Lk) = "
                         f"{(B, Lq, Lk)}, (B, 1 or H, Lq, Lk) = {(B, H, Lq, Lk)}"
                         + (f" or (E, B, 1 or H, Lq, Lk) = {(E, B, H, Lq, Lk)}" if E > 1 else "")
                         + "; a padding mask goes in attention_mask= (B, Lk)")
    return attn_mask[lead] if lead else attn_mask


def visibility(Lq: int, Lk: int, *, causal: bool, offset: int = 0, attn_mask: torch.Tensor | None = None,
               key_valid: torch.Tensor | None = None, device=None) -> torch.Tensor | None:
    """Boolean ``(E|1, B|1, H|1, Lq, Lk)``: which keys each query may see (True), or None for all.
    Query i is slot ``offset + i``; ``attn_mask`` is 5-D (``mask5``); ``key_valid`` is (B, Lk)."""
    visible = None
    if causal:
        q_slot = torch.arange(offset, offset + Lq, device=device)
        visible = (torch.arange(Lk, device=device)[None, :] <= q_slot[:, None])[None, None, None]
    if attn_mask is not None:
        visible = attn_mask if visible is None else visible & attn_mask
    if key_valid is not None:
        kv = key_valid[None, :, None, None, :]
        visible = kv if visible is None else visible & kv
    return visible


# --- the kernel --------------------------------------------------------------------------------------------


def sdpa_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
              causal: bool) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on (N, H, L, d) inputs, in calls of at most ``SDPA_ROW_LIMIT``
    rows N x H (rows are independent, so the split changes no number; below the limit it is one call)."""
    if mask is not None and mask.is_floating_point() and torch.is_grad_enabled() and q.device.type == "cpu":
        # a float mask (a learned sink's logit) while training: only the math kernel differentiates it, and
        # under vmap torch's CPU would otherwise pick its flash kernel, which cannot (vmap hides requires_grad)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            return _sdpa_rows(q, k, v, mask, causal)
    return _sdpa_rows(q, k, v, mask, causal)


def _sdpa_rows(q, k, v, mask, causal) -> torch.Tensor:
    N, H = q.shape[:2]
    step = max(1, SDPA_ROW_LIMIT // H)
    if N <= step:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return torch.cat([F.scaled_dot_product_attention(q[i:i + step], k[i:i + step], v[i:i + step], is_causal=causal,
                                                     attn_mask=None if mask is None else mask[i:i + step])
                      for i in range(0, N, step)])


def append_sink(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, sink: torch.Tensor):
    """A learned sink on the fused kernel: one zero key and one zero value appended to k ``(..., Lk, d)``
    and v ``(..., Lk, w)``, and the boolean ``mask`` ``(..., Lq, Lk)`` turned into a float bias
    ``(..., Lq, Lk + 1)``: 0 where visible, -inf where not, the sink's logit (``sink``, ``(..., 1, 1)``) in
    the new column. Returns (k, v, bias)."""
    lead = torch.broadcast_shapes(mask.shape[:-2], sink.shape[:-2])
    bias = torch.zeros(*lead, *mask.shape[-2:], dtype=k.dtype, device=k.device).masked_fill(~mask, float("-inf"))
    bias = torch.cat([bias, sink.to(k.dtype).expand(*lead, mask.shape[-2], 1)], -1)
    k = torch.cat([k, k.new_zeros(*k.shape[:-2], 1, k.shape[-1])], -2)
    v = torch.cat([v, v.new_zeros(*v.shape[:-2], 1, v.shape[-1])], -2)
    return k, v, bias


def scores(q: torch.Tensor, k: torch.Tensor, visible: torch.Tensor | None, score: str = "dot",
           bound: float | None = None) -> torch.Tensor:
    """Temperature-free scores (E, B, H, Lq, Lk) in a geometry of ``SCORES`` with bound B:

        dot      q.k / sqrt(d)
        cosine   B cos(q, k)                      every score in [-B, B]
        softcap  B tanh(q.k / (sqrt(d) B))        every score in (-B, B)
        rownorm  B c_i / ||c_i||, c_i the row of dot scores centred over the visible keys
    """
    if score == "cosine":
        return bound * F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if score == "softcap":
        return bound * torch.tanh(s / bound)
    if score == "rownorm":
        if visible is None:
            c = s - s.mean(-1, keepdim=True)
        else:
            n_vis = visible.sum(-1, keepdim=True).clamp_min(1)
            c = s - (s * visible).sum(-1, keepdim=True) / n_vis
            c = c * visible
        return bound * c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return s


def masked_logits(q, k, tq, tk, visible, score: str = "dot", bound: float | None = None) -> torch.Tensor:
    """The geometry's score times tau_q (per query) and tau_k (per key); hidden entries -inf."""
    logits = scores(q, k, visible, score, bound)
    if tq is not None:
        logits = logits * tq[..., :, None]
    if tk is not None:
        logits = logits * tk[..., None, :]
    if visible is not None:
        logits = logits.masked_fill(~visible, float("-inf"))
    return logits


def _causal_mask(Lq: int, Lk: int, device) -> torch.Tensor:
    return visibility(Lq, Lk, causal=True, device=device)


def fused(q, k, v, tq, tk, visible, plain_causal: bool, sink) -> torch.Tensor:
    """The dot-product path (E, B, H, Lq, w): tau folded into q and k, one call of the unmodified fused
    kernel (it wants 4-D inputs). A plain causal mask goes in as ``is_causal=True``: a boolean mask
    tensor is slower on the CPU and rules out the flash kernel on a GPU."""
    q = q if tq is None else q * tq[..., None]
    k = k if tk is None else k * tk[..., None]
    E, B, H, Lq, _ = q.shape
    Lk = k.shape[-2]
    if sink is not None:  # a zero key and a zero value, whose logit is the sink's, through a float mask
        if plain_causal:
            visible = _causal_mask(Lq, Lk, q.device)
        if visible is None:  # no mask at all: every key visible
            visible = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device)
        k, v, visible = append_sink(k, v, visible, sink)
        Lk, plain_causal = Lk + 1, False
    flat = lambda t: t.reshape(E * B, H, t.shape[-2], t.shape[-1])  # noqa: E731
    if visible is not None and not plain_causal:
        visible = visible.expand(E, B, H, Lq, Lk).reshape(E * B, H, Lq, Lk)
    out = sdpa_rows(flat(q), flat(k), flat(v), None if plain_causal else visible, plain_causal)
    return out.reshape(E, B, H, Lq, -1)


def explicit(q, k, v, tq, tk, visible, plain_causal: bool, sink, score: str = "dot",
             bound: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The explicit path: logits, softmax (the sink's column takes its share of each row; its value is
    zero), probabilities times values. Returns the output (E, B, H, Lq, w) and the probabilities."""
    if plain_causal:
        visible = _causal_mask(q.shape[-2], k.shape[-2], q.device)
    logits = masked_logits(q, k, tq, tk, visible, score, bound)
    if sink is not None:
        logits = torch.cat([logits, sink.to(logits.dtype).expand(*logits.shape[:-1], 1)], -1)
        probs = torch.softmax(logits, dim=-1)[..., :-1]
    else:
        probs = torch.softmax(logits, dim=-1)
    return probs @ v, probs


def open_empty_rows(visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(visible, empty): queries that see no key at all (``empty``, the mask's shape without its key
    axis) are let see every key, so that their values and gradients stay finite; the caller zeroes
    their outputs. Tensor operations only, whatever the number of such rows."""
    empty = ~visible.any(-1)
    return visible | empty[..., None], empty


def expand_kv(t: torch.Tensor | None, n_heads: int, axis: int = 2) -> torch.Tensor | None:
    """Grouped-query heads: repeat each of the H_kv key/value heads (axis ``axis``) for H / H_kv query heads."""
    if t is None or t.shape[axis] == n_heads:
        return t
    return t.repeat_interleave(n_heads // t.shape[axis], dim=axis)


# --- the pipeline ------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything ``attend`` hands the kernel: q (E,B,H,Lq,d) and k (E,B,H,Lk,d) after rotation, v
    (E,B,H,Lk,w) with tau_v applied, tau_q (broadcastable to (E,B,H,Lq)) and tau_k ((E,B,H,Lk)) or None,
    the visibility (None: every key, or the plain causal mask when ``plain``), the sink's logit."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    tq: torch.Tensor | None
    tk: torch.Tensor | None
    visible: torch.Tensor | None
    plain: bool
    sink: torch.Tensor | None


def key_counts(strategies: Strategies, visible: torch.Tensor | None, *, plain: bool, Lq: int, Lk: int, causal: bool,
               cache, new_valid: torch.Tensor | None, batch: int, L_new: int, dtype: torch.dtype,
               device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """n, the keys a token sees, where a strategy reads it (else None): on the q side the visible real
    keys of each query, broadcastable to (E, B, H, Lq); on the k and v sides the real keys token j
    itself sees as a query of this call (B, 1, Lk), after the cache's ``count`` real tokens."""
    n_q = n_k = None
    if strategies.reads_n(("q",)):
        if plain:
            n_q = torch.arange(1, Lq + 1, device=device, dtype=torch.float32).to(dtype)
        elif visible is None:
            n_q = torch.full((Lq,), float(Lk), device=device).to(dtype)
        else:
            n_q = visible.sum(-1).to(torch.float32).clamp_min(1).to(dtype)
    if strategies.reads_n(("k", "v")):
        before = 0 if cache is None else cache.count[:, None]
        real = torch.ones(batch, L_new, device=device) if new_valid is None else new_valid.to(dtype)
        seen = real.cumsum(-1) if causal else real.sum(-1, keepdim=True)
        n_k = (before + seen).clamp_min(1).to(dtype)[:, None]
    return n_q, n_k


def prepare(strategies: Strategies, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, x: torch.Tensor,
            context: torch.Tensor | None = None, q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None,
            causal: bool = False, attn_mask: torch.Tensor | None = None, key_valid: torch.Tensor | None = None,
            rotate: Callable | None = None, cache=None, extras: Mapping[str, torch.Tensor] | None = None) -> Prepared:
    """Steps 1 to 4 of the module docstring.

    q (E,B,H,Lq,d), k (E,B,H_kv,Lk,d), v (E,B,H_kv,Lk,w): the projections of this call's tokens, before
    rotation; x (E,B,Lq,D) and context (E,B,Lk,D, default x): the inputs the strategies read.
    ``q_pos``, ``k_pos``: 0-based integer positions (B|1, L) (default: 0..L-1 after the cache's
    offset); ``attn_mask``: 5-D boolean (``mask5``); ``key_valid`` (B, Lk): this call's keys that are
    real tokens (with a cache, the cached keys' validity is the cache's). ``rotate(t, pos)`` rotates
    q or k at their positions (RoPE). ``cache`` has ``length``, ``count`` (B,) (real tokens written)
    and ``append(k, v, tk, valid, pos)``, which returns every cached (k, v, tk, valid).
    """
    context = x if context is None else context
    E, B, H, Lq, _ = q.shape
    L_new = k.shape[-2]
    offset = 0 if cache is None else cache.length
    Lk = offset + L_new
    dev = q.device
    plain = causal and attn_mask is None and key_valid is None and cache is None and Lq == L_new
    q_pos = torch.arange(offset, offset + Lq, device=dev)[None] if q_pos is None else q_pos
    k_pos = torch.arange(offset, Lk, device=dev)[None] if k_pos is None else k_pos
    if cache is not None:
        new_valid = torch.ones(B, L_new, dtype=torch.bool, device=dev) if key_valid is None else key_valid
        key_valid = cache.valid_with(new_valid)
    else:
        new_valid = key_valid
    # Visibility; a plain causal mask is never materialised here (the fused kernel applies it itself).
    visible = None if plain else visibility(Lq, Lk, causal=causal, offset=offset, attn_mask=attn_mask,
                                            key_valid=key_valid, device=dev)

    # Temperatures, read at n (``key_counts``) and the 0-based positions.
    n_q, n_k = key_counts(strategies, visible, plain=plain, Lq=Lq, Lk=Lk, causal=causal, cache=cache,
                          new_valid=new_valid, batch=B, L_new=L_new, dtype=q.dtype, device=dev)
    qp, kp = q_pos[:, None], k_pos[:, None]  # (B|1, L) -> (B|1, 1, L)
    tq = strategies.tau("q", strategies.inputs("q", x, proj=q, positions=qp, n=n_q, q=q, extras=extras))
    tk = strategies.tau("k", strategies.inputs("k", context, proj=k, positions=kp, n=n_k, extras=extras))
    tv = strategies.tau("v", strategies.inputs("v", context, proj=v, positions=kp, n=n_k, extras=extras))
    if tq is not None:
        tq = tq.expand(E, B, H, Lq)
    if tk is not None:
        tk = tk.expand(E, B, k.shape[2], L_new)

    if rotate is not None:
        q, k = rotate(q, q_pos), rotate(k, k_pos)
    if tv is not None:
        v = v * tv.expand(E, B, v.shape[2], L_new)[..., None]
    if cache is not None:
        k, v, tk = cache.append(k, v, tk, new_valid, k_pos)
    k, v, tk = expand_kv(k, H), expand_kv(v, H), expand_kv(tk, H)
    sink = strategies.extra("sink", strategies.inputs("sink", x, extras=extras))  # (E, 1|B, H, 1|Lq)
    sink = None if sink is None else sink[..., None]  # the logit of an extra key column: (E, 1|B, H, 1|Lq, 1)
    return Prepared(q, k, v, tq, tk, visible, plain, sink)


def attend(strategies: Strategies, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, x: torch.Tensor,
           score: str = "dot", bound: float | None = None, return_probs: bool = False,
           rows: torch.Tensor | None = None, extras: Mapping[str, torch.Tensor] | None = None,
           **where) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention of every query: the output (E, B, H, Lq, w), the output factor applied, and with
    ``return_probs`` the probabilities (E, B, H, Lq, Lk) (a sink's share left out), else None.

    ``where`` holds ``prepare``'s keywords (context, positions, causal, masks, padding, rotation,
    cache). ``rows`` (indices (R,)) computes only those queries (the explicit path: with
    ``return_probs``), for reading a layer's attention at a few positions of a long context.
    A query that sees no key gets zero output and zero probabilities, on every path."""
    p = prepare(strategies, q, k, v, x=x, extras=extras, **where)
    out, probs = kernel(p, score=score, bound=bound, return_probs=return_probs, rows=rows)
    if rows is None:
        gate = strategies.extra("out", strategies.inputs("out", x, extras=extras))
        if gate is not None:
            out = out * gate
    return out, probs


def kernel(p: Prepared, *, score: str = "dot", bound: float | None = None, return_probs: bool = False,
           rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step 5 of the module docstring on a prepared call: queries with no visible key opened and then
    zeroed, the fused kernel (``dot``, ``cosine``) or the explicit path (the other geometries, the
    probabilities, a subset of ``rows``). Returns the output (E, B, H, Lq or R, w) and the
    probabilities or None."""
    visible, empty = p.visible, None
    if visible is not None:
        visible, empty = open_empty_rows(visible)
    q, tq, plain = p.q, p.tq, p.plain
    if rows is not None:
        Lq = q.shape[-2]
        if plain:
            visible, plain = _causal_mask(Lq, p.k.shape[-2], q.device), False
        take = lambda t: None if t is None else t.expand(*t.shape[:-1], Lq).index_select(-1, rows)  # noqa: E731
        q, tq = q.index_select(-2, rows), take(tq)
        if visible is not None:
            visible = visible.expand(*visible.shape[:-2], Lq, visible.shape[-1]).index_select(-2, rows)
            empty = take(empty)
    if score == "dot" and not return_probs:
        out, probs = fused(q, p.k, p.v, tq, p.tk, visible, plain, p.sink), None
    elif score == "cosine" and not return_probs:  # B cos(q, k) is the dot score of B sqrt(d) q/|q| and k/|k|
        q_unit = F.normalize(q, dim=-1) * (bound * math.sqrt(q.shape[-1]))
        out, probs = fused(q_unit, F.normalize(p.k, dim=-1), p.v, tq, p.tk, visible, plain, p.sink), None
    else:
        out, probs = explicit(q, p.k, p.v, tq, p.tk, visible, plain, p.sink, score, bound)
    if empty is not None:  # a query with no visible key gets zero, on every path
        out = out.masked_fill(empty[..., None], 0.0)
        if probs is not None:
            probs = probs.masked_fill(empty[..., None], 0.0)
    return out, probs


def scaled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tq: torch.Tensor | None, tk: torch.Tensor | None,
           tv: torch.Tensor | None, attn_mask: torch.Tensor | None, causal: bool) -> Prepared:
    """A call whose temperatures the caller computed (``nn.selective_sdpa``'s): q (E,B,H,Lq,d), k and v
    (E,B,H_kv,Lk,.) with tau_q (E,B,H,Lq), tau_k and tau_v (E,B,H_kv,Lk) or None, a 5-D boolean
    ``attn_mask`` (``mask5``) or None, and ``causal`` (top-left aligned); values scaled, grouped heads
    repeated, the visibility made as ``prepare`` makes it."""
    H, Lq, Lk = q.shape[2], q.shape[-2], k.shape[-2]
    if tv is not None:
        v = v * tv[..., None]
    k, v, tk = expand_kv(k, H), expand_kv(v, H), expand_kv(tk, H)
    plain = causal and attn_mask is None
    visible = None if plain else visibility(Lq, Lk, causal=causal, attn_mask=attn_mask, device=q.device)
    return Prepared(q, k, v, tq, tk, visible, plain, None)


def logits(strategies: Strategies, q, k, v, *, x, score: str = "dot", bound: float | None = None,
           extras=None, **where) -> torch.Tensor:
    """The masked logits (E, B, H, Lq, Lk) that ``attend``'s softmax takes, temperatures applied; hidden
    entries are -inf (a query that sees no key is -inf everywhere). A sink's logit is not included."""
    p = prepare(strategies, q, k, v, x=x, extras=extras, **where)
    visible = _causal_mask(p.q.shape[-2], p.k.shape[-2], p.q.device) if p.plain else p.visible
    return masked_logits(p.q, p.k, p.tq, p.tk, visible, score, bound)
