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
    assert set(counts.strategy) == {"vanilla", "ssa", ff.PLACEBO, ff.SSA_SCRAMBLED} and (counts.reads > 0).all()
    assert ((counts.pooled_lo <= counts.pooled) & (counts.pooled <= counts.pooled_hi) & (counts.pooled_hi > counts.pooled_lo)).all()
    assert np.allclose(counts.errors / counts.reads, counts.pooled)


def _metrics(tmp_path, van, ssa, placebo=None, reads=120):
    """Per-seed error counts of each arm on the sparse set, ``reads`` reads a seed."""
    arm = lambda errors: {"glitch": {"sparse": [e / reads for e in errors]},  # noqa: E731
                          "errors": {"sparse": list(errors)}, "reads": {"sparse": [reads] * len(errors)}}
    st = {"vanilla": arm(van), "ssa": arm(ssa), **({ff.PLACEBO: arm(placebo)} if placebo is not None else {})}
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "metrics.json").write_text(json.dumps({"strategies": st, "tests": {"sparse": {"pairs": 64, "p_ignore": 0.99}}}))
    return d


@pytest.mark.parametrize("van,ssa,reads,verdict", [
    ([24, 36, 30, 28], [6, 12, 10, 8], 120, "reproduced"),  # every seed about a third: clear and under 0.75
    ([24, 36, 30, 28], [18, 30, 36, 27], 120, "not reproduced"),  # lower on average, neither clear nor 0.75
    ([24, 36, 30, 28], [60, 70, 66, 61], 120, "not reproduced: more glitches"),
    ([24, 36, 30, 28], [20, 31, 25, 24], 120, "not reproduced"),  # clearly lower (0.84x), under the threshold
    ([1, 0, 0, 0], [0, 0, 0, 0], 200, "not testable (floor): the control glitches at 0.12% pooled, under 1%"),
    ([40, 0, 0, 0], [0, 0, 0, 0], 120, "not reproduced"),  # 40 errors, all on one seed: clustered, no clear effect
    ([2, 1, 2], [0, 0, 0], 120, "reproduced"),  # 1.4% pooled, above the floor; every seed to none: about 0.24x
])
def test_glitch_rule_from_both_sides(tmp_path, van, ssa, reads, verdict):
    (claim,) = ff.claims(_metrics(tmp_path, van, ssa, reads=reads))
    assert claim.verdict == verdict and claim.placebo == "" and claim.calibration == ""


def test_one_clustered_seed_is_not_many_errors():
    """40 errors on one seed and none on three weigh as one seed's ratio, not as 40 independent errors:
    pooled, 40 against 0 would be overwhelming."""
    van = {"errors": [40, 0, 0, 0], "reads": [300] * 4}
    ssa = {"errors": [0, 0, 0, 0], "reads": [300] * 4}
    x = ff.log_rate_ratios(van, ssa)
    assert x[0] < -4 and np.allclose(x[1:], 0)
    assert ff.glitch_rule(van, ssa) == "not reproduced"


def test_the_placebo_goes_through_the_same_rule_and_calibrates_it(tmp_path):
    (claim,) = ff.claims(_metrics(tmp_path, [24, 36, 30, 28, 26, 33, 29, 31], [6, 12, 10, 8, 7, 9, 11, 10],
                                  placebo=[25, 33, 31, 27, 30, 28, 27, 32]))
    assert claim.verdict == "reproduced" and claim.placebo == "not reproduced"
    assert "FPR 0.0%" in claim.calibration and "power 100%" in claim.calibration
    (claim,) = ff.claims(_metrics(tmp_path, [24, 36, 30, 28], [20, 31, 25, 24], placebo=[2, 80, 5, 60]))
    assert claim.verdict.startswith("not testable (power ")  # a twin that far from vanilla: the rule cannot see 2x


def test_a_rate_of_counts_gets_the_exact_interval_where_the_bootstrap_collapses():
    from ssa_theory.stats import binomial_ci, rate_columns

    c = rate_columns("glitch", [0.0, 0.0, 0.0], 0, 900)  # no error in 900 reads: not [0, 0]
    assert c["glitch"] == 0 and c["glitch_lo"] == 0 and c["glitch_hi"] == pytest.approx(binomial_ci(0, 900)[2])
    c = rate_columns("glitch", [0.1, 0.3], 40, 200)  # seeds that differ keep their bootstrap interval
    assert (c["glitch_lo"], c["glitch_hi"]) == bootstrap_ci([0.1, 0.3])[1:]


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


def test_no_committed_interval_on_a_count_has_zero_width():
    """passkey's and flipflop's committed rates of counts (exact match, glitch rates, pooled rates) never
    print a zero-width interval: where the seeds agree the exact interval of the pooled count stands."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "experiments"
    checked = 0
    for name, columns in (("passkey", ("acc", "acc_train", "acc_max")),
                          ("flipflop", ("in_distribution", "sparse", "dense", "long_256", "long_1024", "pooled"))):
        for f in (root / name).glob("*.csv"):
            t = pd.read_csv(f)
            for c in columns:
                if {c, f"{c}_lo", f"{c}_hi"} <= set(t.columns):
                    assert (t[f"{c}_hi"] > t[f"{c}_lo"]).all(), f"{f.name}: {c}"
                    checked += 1
    assert checked >= 5
