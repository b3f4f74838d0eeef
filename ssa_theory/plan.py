"""The layer plan: a variant resolved once for one attention layer's shape.

Every attention shell (the experiments' ensemble layer ``attention.Attention``, the public
``nn.SelectiveAttention`` and each layer that ``hf.apply`` patches) makes one ``LayerPlan`` when it
is built and asks it, never the variant table, for what the variant means there:

- ``placements``: where each strategy sits (side, strategy, parameter prefix), resolved once;
- ``new_parameters``: every strategy parameter, at its initial or neutral value or drawn by the
  shell's own sampler, in the one order (the variant's placement order) that reproducibility needs;
- ``strategies``: the strategies and parameters as the attention core (``ssa_theory.functional``)
  takes them;
- ``readout``: the one way to read a side's inverse temperature outside a forward pass (the shells'
  readouts, the Hugging Face hooks' key and value temperatures, ``passkey``'s temperature law);
- ``reads`` and ``law``: which inputs each side's strategies read, as the strategies declare it
  (``Strategy.reads``), never found out by calling them.

Shapes: E members (a leading axis on every parameter where the shell has one), B batch, H query
heads, H_kv key/value heads, L tokens, D the model width, d the query/key width, w a side's width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import torch

from ssa_theory import functional as core
from ssa_theory import strategies as st
from ssa_theory.variants import Variant, get_variant

ALL = "all"  # readout: everything that multiplies the side (SSA's terms times every factor)
SSA = "ssa"  # readout: SSA's tau = 1 + the side's terms
FACTORS = "factors"  # readout: the side's factors only (the product of its ``mul`` strategies)
LAW = "law"  # readout: the side's strategies that read n, the positions and the train length only
LAW_INPUTS = frozenset({"n", "positions", "train_length"})


class Placement(NamedTuple):
    """One strategy placed on one side of a layer; its parameters are named ``prefix + name``."""

    side: str
    strategy: st.Strategy
    prefix: str


@dataclass(frozen=True)
class LayerPlan:
    """A variant resolved once for a layer of this shape (``LayerPlan.of``)."""

    variant: Variant
    placements: tuple[Placement, ...]
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_value: int
    train_length: int | None

    @classmethod
    def of(cls, variant: str | Variant, *, d_model: int, n_heads: int, d_head: int, n_kv_heads: int | None = None,
           d_value: int | None = None, train_length: int | None = None, where: str = "") -> "LayerPlan":
        """Resolve ``variant`` (a name, a strategy's name, ``package.module:attr`` or a ``Variant``) for
        a layer of this shape; a strategy that needs a training length checks it here (``ValueError``
        ending with ``where``)."""
        variant = get_variant(variant)
        placements = tuple(Placement(*p) for p in variant.placements())
        st.check_placements(placements, train_length, where=where)
        return cls(variant, placements, d_model, n_heads, n_heads if n_kv_heads is None else n_kv_heads, d_head,
                   d_head if d_value is None else d_value, train_length)

    # --- the shape of each side ----------------------------------------------------------------------

    def heads(self, side: str) -> int:
        """Heads on ``side``: H_kv for keys and values, H otherwise."""
        return self.n_kv_heads if side in ("k", "v") else self.n_heads

    def width(self, side: str) -> int:
        """The per-head width ``w`` of ``side``: d_value for values and outputs, d otherwise."""
        return self.d_value if side in ("v", "out") else self.d_head

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every strategy parameter's shape (without a member axis), by its name in the layer."""
        return {p.prefix + name: st.param_shape(spec, H=self.heads(p.side), w=self.width(p.side), d=self.d_head,
                                                D=self.d_model)
                for p in self.placements for name, spec in p.strategy.params.items()}

    # --- parameters ----------------------------------------------------------------------------------

    def new_parameters(self, draw: Callable[[tuple[int, ...]], torch.Tensor], *, members: int | None = None,
                       neutral: bool = False, alpha_init: float = -4.0) -> dict[str, torch.Tensor]:
        """Every strategy parameter, in placement order: its neutral value (``neutral``; a parameter
        ``free_at_neutral`` keeps its initial value, so that the neutral start is no saddle) or its
        initial value (``Param.init``; ``alpha_init`` for SSA's position term), each ``(members, *shape)``
        (or ``shape`` without members); a parameter initialised at random (``init="normal"``) is
        ``draw(shape)``, the shell's sampler (which adds the member axis itself)."""
        shapes, out = self.shapes(), {}
        for p in self.placements:
            for name, spec in p.strategy.params.items():
                shape = shapes[p.prefix + name]
                start_neutral = neutral and not spec.free_at_neutral
                value = spec.neutral if start_neutral else st.initial_value(spec, alpha_init=alpha_init)
                full = shape if members is None else (members, *shape)
                out[p.prefix + name] = draw(shape) if value is None else torch.full(full, float(value))
        return out

    @staticmethod
    def parameter_dict(values: Mapping[str, torch.Tensor]) -> torch.nn.ParameterDict:
        """``values`` as trainable parameters, in their order (``nn.ParameterDict`` sorts a plain dict's
        keys, which would change the order the parameters are listed and drawn in)."""
        out = torch.nn.ParameterDict()
        for name, value in values.items():
            out[name] = torch.nn.Parameter(value)
        return out

    def decayed(self) -> list[str]:
        """The parameters a weight-decay budget prices (``Param.decayed``), in placement order."""
        return [p.prefix + name for p in self.placements for name, spec in p.strategy.params.items() if spec.decayed]

    def parameters_of(self, params: Mapping[str, torch.Tensor], strategy: str, side: str | None = None) -> dict:
        """The parameters of one placed strategy by their declared names (``KeyError`` naming what is
        placed otherwise; ``side`` picks a placement where it sits on several)."""
        return st.parameters_of(self.placements, params, strategy, side)

    # --- the core's view -----------------------------------------------------------------------------

    def strategies(self, params: Mapping[str, torch.Tensor], sides: Sequence[str] | None = None) -> core.Strategies:
        """The placed strategies (those on ``sides``, default all) and ``params`` (each with a leading
        member axis) as the attention core takes them."""
        placed = self.placements if sides is None else [p for p in self.placements if p.side in sides]
        return self._core(placed, params)

    def _core(self, placed: Sequence[Placement], params: Mapping[str, torch.Tensor]) -> core.Strategies:
        return core.Strategies(placed, params, self.train_length, self.n_heads, self.n_kv_heads)

    def on(self, side: str) -> list[Placement]:
        return [p for p in self.placements if p.side == side]

    def reads(self, side: str) -> frozenset[str]:
        """The inputs the side's strategies read (``Strategy.reads``; a plug-in that declares none reads
        every input)."""
        return frozenset().union(*(p.strategy.reads for p in self.on(side)))

    def law(self, side: str) -> list[Placement]:
        """The side's strategies whose value depends on n, the positions and the train length only
        (their parameters aside): the temperature law of n, without SSA's token term or a formula that
        reads the query, the projections or per-token data."""
        return [p for p in self.on(side) if p.strategy.reads <= LAW_INPUTS]

    def readout(self, params: Mapping[str, torch.Tensor], side: str, x: torch.Tensor, *, which: str = ALL,
                proj: torch.Tensor | None = None, positions: torch.Tensor | None = None, n: torch.Tensor | None = None,
                q: torch.Tensor | None = None, extras: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """The inverse temperature on ``side`` for inputs x (E, B, L, D), broadcastable to (E, B, H, L),
        or None where it is 1: ``which`` is ``ALL`` (SSA's terms times every factor), ``SSA`` (1 + SSA's
        terms), ``FACTORS`` (the factors only) or ``LAW`` (``law``'s strategies). ``params`` carry a
        leading member axis; the inputs are those of ``functional.Strategies.inputs`` (``positions``
        0-based)."""
        if which == LAW:
            placed = self.law(side)
        elif which == SSA:
            placed = [p for p in self.on(side) if p.strategy.combine == "add"]
        elif which == FACTORS:
            placed = [p for p in self.on(side) if p.strategy.combine == "mul"]
        elif which == ALL:
            placed = self.on(side)
        else:
            raise ValueError(f"which must be one of {ALL!r}, {SSA!r}, {FACTORS!r}, {LAW!r} (got {which!r})")
        s = self._core(placed, params)
        return s.tau(side, s.inputs(side, x, proj=proj, positions=positions, n=n, q=q, extras=extras))
