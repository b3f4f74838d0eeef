"""Summaries over seeds: the mean and a 95% interval that respects the measure's range.

Two kinds of interval, chosen by the measure, never by the data:

- ``mean_ci``: a Student-t interval for the mean. It is used for differences, slopes, log ratios
  and measures without a finite bound that the intervals come near (CE, MSE, norms).
- ``bootstrap_ci``: the percentile bootstrap of the mean over seeds, for a measure in ``RANGES``
  (accuracies, attention masses, error rates, gains). It stays inside the range of the per-seed
  values, so inside the measure's range, and it is [1, 1] when every seed scores 1. A t-interval
  on such a measure leaves its range when seeds disagree (a bimodal measure: some seeds learn the
  task and some do not). With few seeds the bootstrap is narrow (it cannot exceed the seeds'
  spread), which is why tables of bounded measures show per-seed values or counts beside it.
- ``ratio_ci``: a t-interval of the mean log ratio, exponentiated: a positive interval for a ratio
  of positive quantities (steps to a loss, a strategy over vanilla).

``interval(name, values)`` picks by name (``measure_range``); ``ci_columns`` writes a table's
``name, name_lo, name_hi`` columns with it, and ``rundir.summarise`` a metrics block's ``ci95``.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

# The measures with a range that an interval must respect, by name: a column or metrics key is the
# measure itself or begins with it and an underscore (``acc_train``, ``mass_at_max_len``).
RANGES: dict[str, tuple[float, float]] = {
    "acc": (0.0, 1.0),  # accuracy
    "mass": (0.0, 1.0),  # attention mass on a token
    "needle_mass": (0.0, 1.0),
    "glitch": (0.0, 1.0),  # an error rate
    "gain": (0.0, math.inf),  # an effective value gain (its t-interval crossed 0 where seeds disagree)
}
N_BOOT = 4000


def measure_range(name: str) -> tuple[float, float] | None:
    """The range of the measure ``name`` from ``RANGES``, or None for an unbounded one."""
    for key, rng in RANGES.items():
        if name == key or name.startswith(key + "_"):
            return rng
    return None


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
    # the Student-t quantile (scipy.stats.t.ppf's own); scipy.stats costs a second to import
    from scipy.special import stdtrit

    half = float(stdtrit(x.size - 1, 0.5 + level / 2) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def bootstrap_ci(values: Sequence[float] | np.ndarray, level: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and a percentile-bootstrap interval of it (resamples
    drawn from a fixed seed, so a table is reproducible). NaN values are left out; with one value the
    interval is NaN, as for ``mean_ci``."""
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


def ratio_ci(ratios: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(geometric mean, low, high) of positive per-seed ratios: a t-interval on their logs; NaN (a
    seed that never got there) and non-positive entries are left out."""
    r = np.asarray(ratios, dtype=float).ravel()
    r = r[np.isfinite(r) & (r > 0)]
    if r.size == 0:
        return math.nan, math.nan, math.nan
    m, lo, hi = mean_ci(np.log(r))
    return math.exp(m), math.exp(lo), math.exp(hi)  # a NaN bound (one seed) stays NaN


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(k / n, low, high): the Clopper-Pearson (exact) interval of a rate from ``k`` events in ``n``
    trials, pooled over seeds (errors over reads, misses over contexts). Unlike a bootstrap over seeds
    it has width wherever there are trials: 0 errors in 120 reads is [0, 0.030], not [0, 0]."""
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"binomial_ci needs 0 <= k <= n and n >= 1 (got k={k}, n={n})")
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return k / n, float(ci.low), float(ci.high)


def survival(steps: Sequence[float], reached: Sequence[bool], level: float = 0.95) -> dict[str, float]:
    """The Kaplan-Meier median of steps to a target over seeds, where a seed that never reached it is
    right-censored at ``steps`` (its last step), not dropped: ``{"median", "lo", "hi", "censored",
    "seeds"}``. The interval inverts the survival curve's log-log pointwise band (scipy.stats.ecdf);
    a bound the band never crosses below 1/2 is ``inf`` (not reached within the run), and so is the
    median when fewer than half the seeds reached the target."""
    from scipy.stats import CensoredData, ecdf

    t = np.asarray(steps, dtype=float).ravel()
    r = np.asarray(reached, dtype=bool).ravel()
    if t.size == 0 or t.size != r.size:
        raise ValueError("survival needs one step count and one reached flag per seed")
    out = {"censored": int((~r).sum()), "seeds": int(t.size)}
    if not r.any():
        return {"median": math.inf, "lo": math.inf, "hi": math.inf, **out}
    sf = ecdf(CensoredData(uncensored=t[r], right=t[~r])).sf
    with warnings.catch_warnings():  # the band is undefined where S is 0 or 1: NaN there, never <= 1/2
        warnings.simplefilter("ignore", RuntimeWarning)
        band = sf.confidence_interval(confidence_level=level, method="log-log")

    def first_at_or_below_half(probabilities) -> float:
        below = np.nonzero(np.asarray(probabilities) <= 0.5)[0]
        return float(sf.quantiles[below[0]]) if below.size else math.inf

    return {"median": first_at_or_below_half(sf.probabilities), "lo": first_at_or_below_half(band.low.probabilities),
            "hi": first_at_or_below_half(band.high.probabilities), **out}


def interval(name: str, values: Sequence[float] | np.ndarray,
             bounded: bool | None = None) -> tuple[float, float, float]:
    """(mean, low, high) over seeds: ``bootstrap_ci`` for a measure with a range (``measure_range``,
    or ``bounded=True``), else ``mean_ci``."""
    if bounded is None:
        bounded = measure_range(name) is not None
    return (bootstrap_ci if bounded else mean_ci)(values)


def ci_columns(name: str, values: Sequence[float] | np.ndarray, bounded: bool | None = None) -> dict[str, float]:
    """Table columns ``{name: mean, name_lo: low, name_hi: high}`` from ``interval`` (``rundir.with_ci``
    folds them for display)."""
    m, lo, hi = interval(name, values, bounded)
    return {name: m, f"{name}_lo": lo, f"{name}_hi": hi}


def rate_columns(name: str, rates: Sequence[float] | np.ndarray, k: int, n: int) -> dict[str, float]:
    """Columns ``{name, name_lo, name_hi}`` of a rate of counts (errors over reads, hits over contexts):
    the mean of the per-seed ``rates`` with its bootstrap interval over seeds, except where that interval
    has no width (every seed the same, as 0 errors everywhere), where the exact interval of the pooled
    ``k`` events in ``n`` trials (``binomial_ci``) stands instead: a count never gets a zero-width interval."""
    m, lo, hi = bootstrap_ci(rates)
    if n >= 1 and not (hi > lo):
        _, lo, hi = binomial_ci(k, n)
    return {name: m, f"{name}_lo": lo, f"{name}_hi": hi}
