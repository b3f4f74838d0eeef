"""The variant vocabulary: which strategies of the table a layer applies, and on which side.

A *variant* places strategies (``ssa_theory.strategies``) on sides: SSA's terms on q, k or v
(``pos``: the position term ``ssa_pos``; ``tok``: the token term, ``ssa_tok`` with weight sharing or
``ssa_tok_own`` without), an output gate, and one more strategy of the table (``scale``). Empty
everywhere is vanilla attention. ``VARIANTS`` are the named ones behind the committed results;
``NEW_VARIANTS`` those of strategies added since. A name is resolved once, at the edge
(``get_variant``), and the ``Variant`` object is what the layers take.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ssa_theory import strategies as st

SIDES = ("q", "k", "v")
TERMS = ("pos", "tok")


def unknown(kind: str, name: str, known: Sequence[str]) -> ValueError:
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
    scrambled: bool = False  # SSA's terms read an uninformative input (ssa_theory.scramble): the placebo

    def __post_init__(self) -> None:
        for side in SIDES:
            unknown = set(getattr(self, side)) - set(TERMS)
            if unknown:
                raise ValueError(f"variant {self.name!r}: unknown {side} terms {sorted(unknown)}; known: {TERMS}")
        # the strategies resolved here, once: an unknown or unplaceable one fails now
        object.__setattr__(self, "_placed", tuple(self._place()))

    def terms(self, side: str) -> frozenset[str]:
        return getattr(self, side)

    def placements(self) -> list[tuple[str, st.Strategy, str]]:
        """(side, strategy, parameter prefix) of every strategy this variant applies, in the order the
        layer creates their parameters (SSA's terms per side, the scale, the gate); resolved when the
        variant was made."""
        return list(self._placed)

    def _place(self) -> list[tuple[str, st.Strategy, str]]:
        from ssa_theory.scramble import TWINS

        term = (lambda name: TWINS[name]) if self.scrambled else st.resolve  # noqa: E731
        out = []
        for side in SIDES:
            terms = self.terms(side)
            if "tok" in terms:
                out.append((side, term("ssa_tok" if self.share else "ssa_tok_own"), f"{side}_"))
            if "pos" in terms:
                out.append((side, term("ssa_pos"), f"{side}_"))
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


def resolve_variants(config: Any) -> None:
    """For a config's ``__post_init__``: resolve every name its ``variant_field``s hold, once, keeping the
    objects (``variant_of``); a ``ConfigError`` naming the field and the closest names otherwise."""
    from ssa_theory.config import ConfigError, variant_names

    resolved = {}
    for name, values in variant_names(config).items():
        for value in values:
            if value in resolved:  # a name two fields hold is resolved once
                continue
            try:
                resolved[value] = get_variant(value)
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
    object.__setattr__(config, "_variants", resolved)


def plugin_digests(variants) -> dict[str, str]:
    """Strategy name -> ``strategies.source_digest`` for every strategy not built in (a dotted path, an
    entry point, a ``register_strategy``) that the ``variants`` (``Variant`` objects) place."""
    return {s.name: st.source_digest(s) for v in variants for _, s, _ in v.placements() if s.origin != "built-in"}


def variant_of(config: Any, name: str) -> Any:
    """The ``Variant`` that ``resolve_variants`` made of ``name`` (a name a variant field of ``config`` holds)."""
    return config._variants[name]


def _v(name: str, q: str = "", k: str = "", v: str = "", share: bool = True, gate: bool = False,
       scale: str = "") -> Variant:
    split = lambda s: frozenset(t for t in s.split("+") if t)  # noqa: E731  "pos+tok" -> {pos, tok}
    return Variant(name, split(q), split(k), split(v), share, gate, scale)


SCRAMBLED_SUFFIX = "_scrambled"


def scrambled(name: str) -> Variant:
    """The scrambled twin of a named SSA variant (``ssa_theory.scramble``): the same terms and
    parameters, their inputs drawn from elsewhere at every call; named ``NAME_scrambled``."""
    base = get_variant(name)
    if not any(base.terms(side) for side in SIDES):
        raise ValueError(f"variant {base.name!r} has no SSA term to scramble")
    if base.scale or base.gate:
        raise ValueError(f"variant {base.name!r} has a strategy besides SSA's terms; scramble SSA's own variants")
    return dataclasses.replace(base, name=base.name + SCRAMBLED_SUFFIX, scrambled=True)


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
                                                        _v("qwen_gate", scale="qwen_gate"),
                                                        _v("ministral", scale="ministral"),
                                                        _v("global_v", scale="global_v")]}


def get_variant(name: str | Variant) -> Variant:
    """Resolve a variant by name (a ``Variant`` passes through). A strategy's name or dotted path
    (``package.module:attr``) is a variant too: that strategy alone."""
    if isinstance(name, Variant):
        return name
    if name in VARIANTS:
        return VARIANTS[name]
    if name in NEW_VARIANTS:
        return NEW_VARIANTS[name]
    if name.endswith(SCRAMBLED_SUFFIX) and name[:-len(SCRAMBLED_SUFFIX)] in VARIANTS:
        return scrambled(name[:-len(SCRAMBLED_SUFFIX)])
    try:
        strategy = st.resolve(name)
    except ValueError as e:
        if ":" in name:
            raise
        known = [*VARIANTS, *NEW_VARIANTS]
        close = difflib.get_close_matches(name, list(dict.fromkeys(known + [s.name for s in st.table()])), n=3)
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
