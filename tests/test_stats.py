import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssa_theory.stats import mean_ci


def test_known_interval():
    # n = 4, mean 2.5, sd 1.2910, t_{0.975, 3} = 3.1824
    m, lo, hi = mean_ci([1, 2, 3, 4])
    assert m == 2.5
    assert hi - m == pytest.approx(3.182446305 * 1.290994449 / 2, rel=1e-8)
    assert m - lo == pytest.approx(hi - m)


def test_single_value_has_no_interval():
    m, lo, hi = mean_ci([0.3])
    assert m == 0.3 and math.isnan(lo) and math.isnan(hi)


def test_coverage_is_about_95_percent():
    """Monte Carlo: 4000 intervals from n = 5 normal samples; binomial sd of the rate is 0.0034."""
    rng = np.random.default_rng(0)
    hits = sum(lo <= 0 <= hi for _, lo, hi in (mean_ci(rng.normal(size=5)) for _ in range(4000)))
    assert abs(hits / 4000 - 0.95) < 4 * 0.0034


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30))
def test_the_interval_is_student_t_s_around_the_mean(xs):
    """Against scipy's own t quantile and numpy's sample sd, computed here: a wrong quantile, a population sd
    or a missing sqrt(n) fails."""
    from scipy import stats as sps

    x = np.asarray(xs, dtype=float)
    m, lo, hi = mean_ci(xs)
    half = sps.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    assert np.isclose(m, x.mean(), rtol=1e-12, atol=1e-9)
    assert np.isclose(hi - m, half, rtol=1e-9, atol=1e-9) and np.isclose(m - lo, half, rtol=1e-9, atol=1e-9)


# --- counts pooled over seeds, and steps to a target with censoring -------------------------------------

from ssa_theory.stats import binomial_ci, survival  # noqa: E402


@settings(deadline=None)  # the first example imports scipy.stats
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_binomial_interval_holds_its_rate_inside_0_1_and_always_has_width(kn):
    k, n = kn
    rate, lo, hi = binomial_ci(k, n)
    assert 0.0 <= lo <= rate <= hi <= 1.0 and hi - lo > 0
    if k == 0:  # the exact interval's closed form at the edges
        assert lo == 0.0 and math.isclose(hi, 1 - 0.025 ** (1 / n), rel_tol=1e-6)
    if k == n:
        assert hi == 1.0 and math.isclose(lo, 0.025 ** (1 / n), rel_tol=1e-6)


def test_binomial_interval_covers_at_least_95_percent():
    """Clopper-Pearson is conservative: over 2000 draws at each rate its coverage is at least 0.95 (the
    sampling error of a coverage near 0.96 over 2000 draws is about 0.004)."""
    rng = np.random.default_rng(0)
    for p in (0.01, 0.1, 0.5):
        ks = rng.binomial(50, p, 2000)
        covers = {k: binomial_ci(k, 50)[1] <= p <= binomial_ci(k, 50)[2] for k in set(ks)}
        cover = np.mean([covers[k] for k in ks])
        assert cover >= 0.95, (p, cover)


def test_binomial_interval_refuses_impossible_counts():
    for k, n in ((3, 2), (-1, 5), (0, 0)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            binomial_ci(k, n)


def test_survival_without_censoring_is_the_sample_median():
    steps = [100, 120, 140, 160, 180, 200, 220, 240]
    s = survival(steps, [True] * 8)
    assert s["median"] == 160 and s["censored"] == 0 and s["lo"] <= 160 <= s["hi"]  # S falls to 1/2 at the 4th


def test_a_censored_seed_counts_instead_of_being_dropped():
    """Dropping the seeds that never reached the target makes the learner look fast; censoring them
    at the run's end does not."""
    steps, reached = [100, 120, 140, 400, 400, 400], [True, True, True, False, False, False]
    dropped = survival(steps[:3], reached[:3])["median"]
    s = survival(steps, reached)
    assert dropped == 120 and s["median"] == 140 and s["hi"] == math.inf and s["censored"] == 3
    assert survival([400] * 3, [False] * 3)["median"] == math.inf
    with pytest.raises(ValueError, match="one step count and one reached flag per seed"):
        survival([1, 2], [True])
