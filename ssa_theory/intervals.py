"""Intervals that stay inside their measure's range, for the language-model experiments.

A Student-t interval on an accuracy or a glitch rate leaves [0, 1] when seeds disagree (a bimodal
measure: some seeds learn the task and some do not). Here:

- ``bootstrap_ci``: the percentile bootstrap of the mean over seeds. It stays inside the range
  of the values, so inside the measure's range, and it is [1, 1] when every seed scores 1. With
  few seeds it is narrow (it cannot exceed the spread of the seeds), which is why the per-seed
  values are always shown beside it.
- ``ratio_ci``: a t-interval of the mean log-ratio, exponentiated: a positive interval for a ratio
  of positive quantities (steps to a loss, strategy over vanilla).

[This module is not yet part of ``ssa_theory.core``; the experiments that use it carry it in their
own versions. Moving it into ``stats`` changes the core version, which reruns every experiment.]
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ssa_theory.stats import mean_ci


def bootstrap_ci(values: Sequence[float] | np.ndarray, level: float = 0.95, n_boot: int = 4000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and a percentile-bootstrap interval of it. NaN values
    are left out; with one value the interval is NaN, as for ``stats.mean_ci``."""
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size == 1:
        return m, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return m, float(lo), float(hi)


def bounded_columns(name: str, values) -> dict[str, float]:
    """Table columns ``{name, name_lo, name_hi}`` from ``bootstrap_ci`` (``rundir.with_ci`` folds them)."""
    m, lo, hi = bootstrap_ci(values)
    return {name: m, f"{name}_lo": lo, f"{name}_hi": hi}


def ratio_ci(ratios: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(geometric mean, low, high) of positive per-seed ratios: a t-interval on their logs; NaN (a
    seed that never got there) and non-positive entries are left out."""
    r = np.asarray(ratios, dtype=float).ravel()
    r = r[np.isfinite(r) & (r > 0)]
    if r.size == 0:
        return math.nan, math.nan, math.nan
    m, lo, hi = mean_ci(np.log(r))
    return math.exp(m), math.exp(lo), math.exp(hi)  # a NaN bound (one seed) stays NaN
