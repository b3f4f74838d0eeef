"""flipflop: reads return the last written bit, the glitch rate counts read errors only, intervals stay
in [0, 1], and the claim rule is tested from both sides; the bounded intervals of the LM experiments."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory.experiments import flipflop as ff
from ssa_theory.stats import bootstrap_ci, ratio_ci


def test_a_read_returns_the_last_written_bit():
    tokens, reads = ff.sequences(torch.Generator().manual_seed(0), 40, 30, 0.5)
    assert tokens.shape == (40, 60) and reads.shape == (40, 59)
    for t, r in zip(tokens, reads):
        assert t[0] == ff.W
        last = None
        for j in range(30):
            instr, bit = int(t[2 * j]), int(t[2 * j + 1]) - ff.BIT0
            assert instr in (ff.W, ff.R, ff.I) and bit in (0, 1)
            if instr == ff.W:
                last = bit
            if instr == ff.R:
                assert bit == last
            assert bool(r[2 * j]) == (instr == ff.R)  # the r position predicts the read bit
        assert not r[1::2].any()
    sparse, _ = ff.sequences(torch.Generator().manual_seed(1), 200, 50, 0.98)
    assert (sparse[:, 2::2] == ff.I).float().mean() > 0.95


@pytest.fixture(scope="module")
def quick(quick_run):
    _, path = quick_run("flipflop")  # the session's one quick run (test_cli reads it too)
    return path


def test_quick_run_glitch_rates_are_rates_and_the_claim_has_a_verdict(quick, tmp_path):
    path = quick
    t = pd.read_csv(path / "tables" / "glitches.csv")
    for name in ("in_distribution", "sparse", "dense", "long_64"):
        assert t[name].between(0, 1).all() and (t[f"{name}_lo"].fillna(0) >= 0).all() and (t[f"{name}_hi"].fillna(1) <= 1).all()
    assert (t.read_entropy >= 0).all()
    (claim,) = ff.claims(path)
    assert claim.id == "C9" and claim.verdict and claim.placebo  # the quick preset trains the twin too
    counts = pd.read_csv(path / "tables" / "counts.csv")
    assert set(counts.strategy) == {"vanilla", "ssa", ff.PLACEBO} and (counts.reads > 0).all()
    assert ((counts.pooled_lo <= counts.pooled) & (counts.pooled <= counts.pooled_hi) & (counts.pooled_hi > counts.pooled_lo)).all()
    assert np.allclose(counts.errors / counts.reads, counts.pooled)


def _metrics(tmp_path, van, ssa, placebo=None, reads=120):
    """Per-seed error counts of each arm on the sparse set, ``reads`` reads a seed."""
    arm = lambda errors: {"glitch": {"sparse": [e / reads for e in errors]},  # noqa: E731
                          "errors": {"sparse": list(errors)}, "reads": {"sparse": [reads] * len(errors)}}
    st = {"vanilla": arm(van), "ssa": arm(ssa), **({ff.PLACEBO: arm(placebo)} if placebo is not None else {})}
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "metrics.json").write_text(json.dumps({"strategies": st}))
    return d


@pytest.mark.parametrize("van,ssa,reads,verdict", [
    ([24, 36, 30], [6, 12, 10], 120, "reproduced"),
    ([24, 36, 30], [18, 30, 36], 120, "not reproduced"),  # lower on average but not on every seed, nor half
    ([1, 0, 0], [0, 0, 0], 200, "no difference: both below 1% glitches (exact upper bounds)"),
    ([0, 0, 0], [0, 0, 0], 120, "not reproduced"),  # 360 reads without an error: upper bound 1.02%, not below 1%
    ([0, 0, 0], [0, 0, 0], 90, "not testable: fewer than 300 reads pooled over seeds"),  # 270 reads
    ([2, 1, 2], [0, 0, 0], 120, "not reproduced"),  # half, every seed lower, but the intervals overlap
])
def test_glitch_rule_from_both_sides(tmp_path, van, ssa, reads, verdict):
    (claim,) = ff.claims(_metrics(tmp_path, van, ssa, reads=reads))
    assert claim.verdict == verdict and claim.placebo == ""
    assert claim.hi > claim.lo  # a count's interval has width, zeros included


def test_the_placebo_goes_through_the_same_rule(tmp_path):
    (claim,) = ff.claims(_metrics(tmp_path, [24, 36, 30], [6, 12, 10], placebo=[25, 33, 31]))
    assert claim.verdict == "reproduced" and claim.placebo == "not reproduced"


def test_bootstrap_interval_stays_in_the_range_of_the_values():
    m, lo, hi = bootstrap_ci([0.0, 1.0, 1.0])  # a bimodal accuracy: a t-interval would leave [0, 1]
    assert 0.0 <= lo <= m <= hi <= 1.0
    assert bootstrap_ci([1.0, 1.0, 1.0])[1:] == (1.0, 1.0)
    assert np.isnan(bootstrap_ci([0.5])[1])
    g, glo, ghi = ratio_ci([0.5, 0.6, 0.55, np.nan])
    assert 0 < glo < g < ghi and np.isclose(g, (0.5 * 0.6 * 0.55) ** (1 / 3))


def test_the_placebo_is_no_strategy_and_needs_vanilla():
    """(lm.check_model_fields: the same checks for passkey)"""
    from ssa_theory.config import ConfigError

    with pytest.raises(ConfigError, match="names the vanilla twin"):
        ff.FlipflopConfig(strategies=("vanilla", "placebo"))
    with pytest.raises(ConfigError, match="placebo=true needs vanilla"):
        ff.FlipflopConfig(strategies=("ssa",))
    assert ff.FlipflopConfig(strategies=("ssa",), placebo=False).strategies == ("ssa",)
