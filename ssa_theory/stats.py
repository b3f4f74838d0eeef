"""Summaries over seeds: the mean and a 95% Student-t confidence interval."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a t-interval for the mean of independent seeds.

    With one value the interval is undefined and returned as NaN: one seed says nothing about
    seed-to-seed spread.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(x.mean())
    if x.size == 1:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def ci_columns(name: str, values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Table columns ``{name: mean, name_lo: low, name_hi: high}`` (``rundir.with_ci`` folds them for display)."""
    m, lo, hi = mean_ci(values)
    return {name: m, f"{name}_lo": lo, f"{name}_hi": hi}
