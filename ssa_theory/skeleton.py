"""The pieces every experiment is built from (the skeleton is written down in ``ssa_theory.experiments``).

- ``ModelSpec``: one model to train, from a label and an attention variant (a name, resolved once
  when the spec is made, or a ``Variant`` already resolved); ``spec.resolved`` is the ``Variant`` the
  model is built from; tables label its rows by ``spec.label`` and ``spec.variant``, the variant's
  name (``spec.name`` reads "ssa (ssa_q_tok)").
  ``twin()`` is the placebo every claim is read against: vanilla attention initialised from another
  draw (the ``init_twin`` stream), trained on the same data.
- ``Trained``: what ``train`` returns, a record of arrays with a leading member axis (E, ...) and
  the training history, beside the members they belong to.
- ``Members`` (``ssa_theory.seeding``): the ensemble members, one type for every experiment.
- ``Results`` and ``write_results``: what ``measure`` returns, and the one writer of a run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ssa_theory.variants import Variant, get_variant
from ssa_theory.rundir import RunContext, with_ci
from ssa_theory.seeding import Members


@dataclass(frozen=True)
class ModelSpec:
    """A model to train: its row label in tables, its attention variant, task-specific extras.

    ``extras`` hold what a task's model needs besides the variant (denoising's sink token:
    ``{"sink": True}``). ``variant`` is a name, resolved when the spec is made (an unknown name fails
    here, not inside a training loop), or a ``Variant``; either way ``variant`` then holds its name and
    ``resolved`` the object.
    """

    label: str
    variant: str
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resolved = self.variant if isinstance(self.variant, Variant) else get_variant(self.variant)
        object.__setattr__(self, "variant", resolved.name)
        object.__setattr__(self, "resolved", resolved)

    @classmethod
    def of(cls, label: str, variant: "str | Variant | None" = None, **extras: Any) -> "ModelSpec":
        """The spec of ``label`` trained as ``variant`` (default: the label is the variant's name; a
        ``Variant`` given as the label labels the row by its name)."""
        variant = label if variant is None else variant
        return cls(label.name if isinstance(label, Variant) else label, variant, dict(extras))

    @property
    def name(self) -> str:
        """A readable row name: ``"ssa (ssa_q_tok)"``, or just the variant where the label is its name."""
        return self.label if self.label == self.variant else f"{self.label} ({self.variant})"

    @property
    def init(self) -> str:
        """The seeding stream its weights are drawn from: ``"init"``, or ``"init_twin"`` for ``twin()``."""
        return self.extras.get("init", "init")

    @property
    def scale(self) -> str:
        """The variant's extra strategy (``"freq"``, ``"global"``, ...), or ``""``."""
        return self.resolved.scale


PLACEBO = "placebo"  # the row and model key of the vanilla twin (``twin``)


def twin() -> ModelSpec:
    """The placebo: vanilla attention whose weights come from the ``init_twin`` stream (the same law as
    ``init``, an independent draw), trained on the same data. A claim's rule read with it in the
    claimed model's place must not say "reproduced" (``claims.Claim.placebo``)."""
    return ModelSpec.of(PLACEBO, "vanilla", init="init_twin")


SCRAMBLED = "scrambled"  # the row and model key of the scrambled mechanism (``scrambled``)


def scrambled(variant: str) -> ModelSpec:
    """The placebo that can fail: SSA's ``variant`` with its temperature fed an uninformative input
    (``ssa_theory.scramble``), the same parameters, initial draw and data as the real one."""
    from ssa_theory.variants import scrambled as scrambled_variant

    return ModelSpec.of(SCRAMBLED, scrambled_variant(variant))


def scramble_generators(spec: ModelSpec, members: Members):
    """One generator per member (the ``placebo`` stream) where ``spec`` is scrambled, else None."""
    return members.generators("placebo") if spec.resolved.scrambled else None


def null_seeds(seeds: Sequence[int], runs: int) -> list[int]:
    """The seeds of ``runs`` null runs of a rule read on ``len(seeds)`` seeds: each run pairs two groups
    of vanilla models, so ``2 * runs * len(seeds)`` seeds, following the run's own (other data streams
    and other initial draws)."""
    return [max(seeds) + 1 + i for i in range(2 * runs * len(seeds))]


def specs(table: Mapping[str, str], labels: Iterable[str] | None = None) -> dict[str, ModelSpec]:
    """``{label: ModelSpec}`` from an experiment's ``label -> variant`` table, in its order."""
    labels = list(table) if labels is None else list(labels)
    return {label: ModelSpec.of(label, table[label]) for label in labels}


@dataclass
class Trained:
    """One model's results for every member: ``arrays[name]`` is (E, ...) in member order;
    ``history`` is ``train.fit``'s ``{"step": (n_logs,), name: (n_logs, E)}``."""

    spec: ModelSpec
    members: Members
    arrays: dict[str, np.ndarray]
    history: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def select(self, mask: np.ndarray) -> "Trained":
        """The members where ``mask`` (E,) is True (history left out: it is drawn from the full run)."""
        arrays = {k: np.asarray(v)[mask] for k, v in self.arrays.items()}
        return dataclasses.replace(self, members=self.members.select(mask), arrays=arrays, history={})


@dataclass
class Results:
    """What ``measure`` hands to ``write_results``: tables, raw frames and arrays, and ``metrics.json``.

    ``tables[name] = (table, display)``: ``tables/NAME.csv`` at full precision and ``tables/NAME.md``
    as displayed (CI columns folded into ``mean [lo, hi]``). ``frames`` and ``arrays`` are the raw
    results the figures are drawn from (``arrays/NAME.csv``, ``arrays/NAME.npz``).
    """

    tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str, df: pd.DataFrame, ci: Sequence[str] = (), drop: Sequence[str] = ()) -> pd.DataFrame:
        """Add a table; ``ci`` names the columns shown with their ``_lo``/``_hi`` interval, ``drop`` the
        columns left out of the display. Returns ``df``."""
        self.tables[name] = (df, with_ci(df, list(ci)).drop(columns=list(drop)))
        return df


def write_results(ctx: RunContext, results: Results) -> None:
    """Write everything in ``results`` into the run directory (the one writer every experiment uses)."""
    for name, (df, display) in results.tables.items():
        ctx.write_table(name, df, display)
    for name, df in results.frames.items():
        ctx.save_frame(name, df)
    for name, arrays in results.arrays.items():
        ctx.save_arrays(name, **arrays)
    ctx.write_metrics(results.metrics)


def with_variant(df: pd.DataFrame, after: str, variants: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with a ``variant`` column after its label column ``after``: the attention variant each
    row's model is (``variants[label]``; empty for a closed form), so that no table says "ssa" alone."""
    out = df.copy()
    out.insert(out.columns.get_loc(after) + 1, "variant", [variants.get(v, "") for v in out[after]])
    return out


def figures(module: str, *names: str):
    """An experiment's ``plot``: the figure functions ``names`` of ``module`` (imported when drawn, so
    that running an experiment never imports matplotlib), each drawn from the run directory."""
    def plot(run_dir) -> None:
        import importlib

        plots = importlib.import_module(module)
        for name in names:
            getattr(plots, name)(run_dir)

    plot.__doc__ = f"The figures {', '.join(names)} of {module}."
    return plot
