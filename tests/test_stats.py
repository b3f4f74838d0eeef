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
def test_interval_contains_the_mean(xs):
    m, lo, hi = mean_ci(xs)
    assert lo <= m + 1e-9 and m <= hi + 1e-9
