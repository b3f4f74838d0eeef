"""The paper's claims as data: each experiment turns its exported results into ``Claim`` rows.

A claim row puts what the paper says beside our headline number, its 95% CI over seeds and a
verdict computed by a stated rule from the saved results, never typed by hand. ``reproduce``
prints these rows, and ``paper_repro.md`` opens with the same table (``ssa_theory.report``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ssa_theory.stats import mean_ci


@dataclass(frozen=True)
class Claim:
    """One paper claim beside our measurement.

    ``value`` [``lo``, ``hi``] is the headline number and its 95% CI (NaN with one seed);
    ``verdict`` comes from the experiment's rule (its ``claims`` function documents it).
    """

    id: str
    experiment: str
    paper: str
    measure: str
    value: float
    lo: float
    hi: float
    verdict: str

    def interval(self) -> str:
        if math.isnan(self.lo):
            return f"{self.value:.4g} (one seed: no CI)"
        return f"{self.value:.4g} [{self.lo:.4g}, {self.hi:.4g}]"


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% CI of the per-seed differences ``a - b`` (models trained on the same seeds)."""
    return mean_ci(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))


def above_zero(lo: float, mean: float) -> bool:
    """The CI lies above zero (with one seed, where there is no CI, the mean does)."""
    return lo > 0 if not math.isnan(lo) else mean > 0
