"""The scrambled mechanism: SSA's terms fed an uninformative input, the placebo that can fail.

A selective temperature claims that *which* token or position a query holds sets its temperature.
The scrambled twin keeps everything else: the same parameters (names, shapes, initial values, so
the same initial draw), the same range, the same optimiser path; only the input its temperature
reads is taken from elsewhere, drawn afresh at every forward pass:

- the token term (``ssa_tok``, ``ssa_tok_own``) reads the token of another slot of the batch: a
  uniformly random permutation of the side's B x L token slots (``tok_from``), so a query's
  temperature cannot know its own token, nor a value token whether it is noisy;
- the position term (``ssa_pos``) reads a position shuffled within its own row (``pos_from``): the
  row keeps its set of positions (so its length), the token loses its place.

A claim about selectivity must fail on its scrambled twin; where the twin passes, the measured gain
needs no per-token (or per-position) information, and the verdict says so. Where the input carries
no information to begin with (every slot the same token), real and scrambled read alike
(``tests/test_scramble.py``).

These strategies are not in the strategy table (``strategies.table``): they read other tokens of the
call, so they are no causal layer for a model to use, and a KV cache would not reproduce them. A
variant places them through ``Variant(scrambled=True)``; ``variants.get_variant`` knows the named
ones (``scrambled(name)``). The caller draws the permutations (``draw``) from a generator it passes
in, one per ensemble member, and hands them to the layer as ``extras``.

Shapes: E members, B batch, H heads, L the side's tokens, w its head width.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ssa_theory import strategies as st

TOKEN, POSITION = "tok_from", "pos_from"  # the extras (strategies.EXTRA_ABOUT): (B, L) or (E, B, L) flat indices
PERMUTATIONS = frozenset({TOKEN, POSITION})


def gather_slots(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t`` (*, B, H, L, w) with each token slot (b, l) replaced by slot ``index[..., b, l]`` (a flat index
    into the B x L slots; ``index`` (B, L) or with t's leading axes): the same shape."""
    B, H, L, w = t.shape[-4:]
    lead = t.shape[:-4]
    flat = t.transpose(-4, -3).reshape(*lead, H, B * L, w)
    idx = index.reshape(*index.shape[:-2], 1, B * L, 1).expand(*lead, H, B * L, w)
    return flat.gather(-2, idx).reshape(*lead, H, B, L, w).transpose(-4, -3)


def _tok(i: st.Inputs, p):  # SSA's token term tanh(u . GELU(h)), h another slot's projection
    return torch.tanh(st.token_argument(gather_slots(i.proj, i.extras[TOKEN]), p["u"]))


def _tok_own(i: st.Inputs, p):  # the same with the term's own projection
    return torch.tanh(st.token_argument(gather_slots(i.heads(i.linear(i.x, p["w"])), i.extras[TOKEN]), p["u"]))


def _pos(i: st.Inputs, p):
    index = i.extras[POSITION]  # (*, B, L)
    B, L = index.shape[-2:]
    log_pos = i.log_pos().reshape(-1, L)  # (B or 1, L)
    log_pos = log_pos.expand(B, L).reshape(B * L)
    moved = log_pos[index]  # (*, B, L)
    return torch.sigmoid(p["alpha"]) * moved[..., :, None, :]  # (*, B, 1, L) against alpha (*, 1, H, 1)


def _scrambled(base: str, formula, reads: set[str]) -> st.Strategy:
    s = st.resolve(base)
    needs = frozenset(reads) & PERMUTATIONS
    return st.Strategy(f"{base}_scrambled", None, s.combine, formula, dict(s.params), needs=needs, range=s.range,
                       neutral=s.neutral, source=f"ours: the placebo of {s.source}",
                       about=f"{s.about}, its input scrambled (ssa_theory.scramble)", origin="ssa_theory.scramble",
                       reads=reads)


# SSA's terms -> their scrambled twins (the same parameters and range)
TWINS: dict[str, st.Strategy] = {
    "ssa_tok": _scrambled("ssa_tok", _tok, {"proj", TOKEN}),
    "ssa_tok_own": _scrambled("ssa_tok_own", _tok_own, {"x", TOKEN}),
    "ssa_pos": _scrambled("ssa_pos", _pos, {"positions", POSITION}),
}


def needs(variant) -> frozenset[str]:
    """The permutations a variant's placed strategies read (empty for every unscrambled variant)."""
    return frozenset().union(*(s.needs & PERMUTATIONS for _, s, _ in variant.placements()))


def draw(wanted: frozenset[str] | Sequence[str], B: int, L: int, generators: Sequence[torch.Generator],
         device=None) -> dict[str, torch.Tensor]:
    """Fresh permutations for one forward pass, one per member generator, each (E, B, L): ``tok_from`` a
    uniform permutation of all B x L slots, ``pos_from`` one within each row. Empty when nothing is wanted."""
    out = {}
    if TOKEN in wanted:
        out[TOKEN] = torch.stack([torch.randperm(B * L, generator=g).view(B, L) for g in generators])
    if POSITION in wanted:
        rows = torch.arange(B)[:, None] * L
        out[POSITION] = torch.stack([torch.rand(B, L, generator=g).argsort(-1) + rows for g in generators])
    return {k: v.to(device) for k, v in out.items()}


class Scrambler:
    """Draws the permutations a variant needs at every call (``draw``), from one generator per member
    (the ``placebo`` stream: randomness passed in). Falsy for a variant that needs none."""

    def __init__(self, variant, generators: Sequence[torch.Generator]) -> None:
        self.wanted = needs(variant)
        self.generators = list(generators)

    def __bool__(self) -> bool:
        return bool(self.wanted)

    def __call__(self, B: int, L: int, device=None) -> dict[str, torch.Tensor]:
        return draw(self.wanted, B, L, self.generators, device) if self.wanted else {}

