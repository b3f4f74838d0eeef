"""critical: the closed form of gamma log n scaling, its transition, and the trained models against it."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from ssa_theory import theory
from ssa_theory.config import ConfigError
from ssa_theory.experiments import critical as cr
from ssa_theory.rundir import RunContext, read_json
from ssa_theory.seeding import Members
from ssa_theory.tasks.needle import NeedleModel

gammas = hs.floats(0.05, 4.0)
gaps = hs.floats(0.05, 2.0)


@settings(max_examples=60, deadline=None)
@given(gammas, gaps)
def test_the_odds_grow_like_n_to_the_one_minus_gamma_gap(gamma, gap):
    """log odds = log(n - 1) - gamma g log n, so its slope on log n tends to 1 - gamma g; the mass of
    the closed form and its log odds agree."""
    n = np.array([2.0 ** 20, 2.0 ** 30])
    assert theory.off_needle_exponent(theory.critical_log_odds(n, gamma, gap), n) == pytest.approx(1 - gamma * gap, abs=1e-6)
    small = np.array([16.0, 256.0])
    m = theory.critical_mass(small, gamma, gap)
    np.testing.assert_allclose(m, 1 / (1 + np.exp(theory.critical_log_odds(small, gamma, gap))), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(gaps, hs.floats(0.1, 0.9))
def test_the_mass_falls_below_the_transition_and_rises_above_it(gap, share):
    """gamma g < 1: the mass tends to 0 (falls from n = 2^10 to 2^40); gamma g > 1: it tends to 1."""
    n = np.array([2.0 ** 10, 2.0 ** 40])
    below, above = theory.critical_mass(n, share / gap, gap), theory.critical_mass(n, (1 + share) / gap, gap)
    assert below[1] < below[0] and above[1] > above[0]


def test_crossing_interpolates_in_log_x_and_says_nan_when_there_is_none():
    assert theory.crossing([0.25, 1.0], [1.0, -1.0]) == pytest.approx(0.5)
    assert math.isnan(theory.crossing([0.25, 1.0, 4.0], [1.0, 0.5, 0.1]))  # never crosses: no transition
    assert math.isnan(theory.crossing([0.25, 1.0], [-1.0, 1.0]))  # the wrong way round is not a transition
    with pytest.raises(ValueError, match="two lengths"):
        theory.off_needle_exponent([1.0], [16])


def test_the_prediction_comes_from_the_config_alone_and_is_the_committed_one():
    """gamma_c = 1 / (B (1 - rho)) in the limit; on the measurement's own lengths and grid, the crossing of
    log(n - 1)'s slope minus gamma g. The committed table (written before training) is this function's."""
    cfg = cr.CriticalConfig()
    p = cr.predictions(cfg)
    assert len(p) == len(cfg.rhos) * len(cfg.bounds)
    np.testing.assert_allclose(p.gamma_c_limit, 1 / (p.bound * (1 - p.rho)), rtol=1e-12)
    n = np.array(cfg.fit_lengths, dtype=float)
    slope = theory.off_needle_exponent(np.log(n - 1), n)
    np.testing.assert_allclose(p.gamma_c, slope / p.gap, rtol=0.02)  # the grid's log interpolation: within 2%
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments" / "critical"
    committed = pd.read_csv(root / "predictions.csv")
    pd.testing.assert_frame_equal(committed[p.columns], p, check_exact=False, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(hs.floats(0.0, 0.9), hs.floats(0.5, 10.0), hs.integers(2, 64))
def test_a_query_on_the_needle_scores_every_distractor_b_rho(rho, bound, n):
    """theta = 0: the distractors' cosines t do not enter; the log odds are the closed form's exactly."""
    t = torch.rand(1, 3, n - 1, dtype=torch.float64) * 2 - 1
    lo = cr.log_odds(torch.zeros(1, dtype=torch.float64), torch.tensor([rho], dtype=torch.float64), bound,
                     torch.tensor([0.5], dtype=torch.float64), n, t)
    want = theory.critical_log_odds(n, 0.5, bound * (1 - rho))
    np.testing.assert_allclose(lo.numpy(), np.full((1, 3), want), rtol=1e-9, atol=1e-9)


def test_a_slanted_query_dilutes_more_than_the_closed_form():
    """theta > 0: the distractors' spread adds odds (Jensen): the measured log odds exceed the closed form's."""
    g = torch.Generator().manual_seed(0)
    t = cr._t(g, (1, 256, 511), 16)
    lo = cr.log_odds(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64), 4.0,
                     torch.tensor([0.5], dtype=torch.float64), 512, t)
    assert lo.mean() > theory.critical_log_odds(512, 0.5, 4.0 * 0.7 * math.cos(0.3))


def test_holds_from_both_sides():
    assert cr.holds(0.5, 0.48, 0.52) == "holds"
    assert cr.holds(0.5, 0.56, 0.60) == "off"  # the interval misses [0.4545, 0.55]
    assert cr.holds(0.5, math.nan, math.nan) == "no interval"
    assert cr.holds(0.5, math.nan, math.nan, obs=0.501, spread=1e-9) == "holds"  # seeds that agree: the value
    assert cr.holds(0.5, math.nan, math.nan, obs=0.6, spread=1e-9) == "off"


def test_a_planted_wrong_geometry_is_rejected(tmp_path):
    """Keys built at rho = 0.6 judged against the prediction for rho = 0 (the mis-specified geometry the
    rule must reject): the observed crossing sits at 1 / (B 0.4), 2.5x the prediction 1 / B."""
    cfg = cr.CriticalConfig(rhos=(0.6,), bounds=(4.0,), n_eval=32, eval_lengths=(16, 64, 256, 1024))
    t = cr.train(4.0, cfg, [0, 1], RunContext(tmp_path, [0, 1], torch.device("cpu"), quiet=True))
    measured = cr.measure(cfg, {cr.key(4.0): t}).tables["transition"][0].iloc[0]
    assert measured.verdict == "holds"
    wrong = cr.predictions(cr.CriticalConfig(rhos=(0.0,), bounds=(4.0,), eval_lengths=cfg.eval_lengths)).gamma_c[0]
    assert cr.holds(wrong, measured.gamma_c_obs_lo, measured.gamma_c_obs_hi, measured.gamma_c_obs,
                    measured.seed_spread) == "off"


def test_config_refuses_impossible_values():
    with pytest.raises(ConfigError, match="gammas"):
        cr.CriticalConfig(gammas=(1.0, 0.5))
    with pytest.raises(ConfigError, match="rhos"):
        cr.CriticalConfig(rhos=(1.0,))
    with pytest.raises(ConfigError, match="bounds"):
        cr.CriticalConfig(bounds=(0.0,))
    with pytest.raises(ConfigError, match="fit_from"):
        cr.CriticalConfig(fit_from=8192)


def test_batched_member_matches_single_run(tmp_path):
    """A seed's members give the same numbers trained beside another seed or alone."""
    cfg = cr.CriticalConfig(rhos=(0.3,), bounds=(2.0,), gammas=(0.3, 1.0), steps=30, batch_size=16, n_eval=16,
                            eval_lengths=(16, 64), fit_from=16)
    cpu = torch.device("cpu")
    batched = cr.train(2.0, cfg, [3, 4], RunContext(tmp_path, [3, 4], cpu, quiet=True))
    single = cr.train(2.0, cfg, [4], RunContext(tmp_path, [4], cpu, quiet=True))
    mine = np.asarray(batched.members.seeds) == 4
    for key in ("log_odds", "mass", "align"):
        np.testing.assert_allclose(batched[key][mine], single[key], rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.fixture(scope="module")
def quick(quick_run):
    _, path = quick_run("critical")
    return path


def test_the_quick_run_writes_the_prediction_and_the_transition_per_cell(quick):
    m = read_json(quick / "metrics.json")
    t = pd.read_csv(quick / "tables" / "by_length.csv")
    assert len(t) == len(m["gammas"]) * len(m["lengths"]) * len(m["rhos"]) * len(m["bounds"])
    assert t.mass.between(0, 1).all()
    tr = pd.read_csv(quick / "tables" / "transition.csv")
    assert len(tr) == len(m["rhos"]) * len(m["bounds"]) and set(tr.verdict) <= {"holds", "off", "no interval"}
    assert (tr.gamma_c_pred > 0).all()


def test_committed_run_reaches_the_gap_and_the_prediction_holds_in_every_cell():
    """The committed default: training aligned the query at the gammas around every predicted transition,
    and every cell's observed crossing is within the rule's tolerance of the prediction made before it."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments" / "critical"
    tr = pd.read_csv(root / "transition.csv")
    assert len(tr) == 9 and tr.reached.all() and (tr.verdict == "holds").all()


def test_a_short_run_that_does_not_align_the_query_is_said_and_judged_off(tmp_path):
    """300 steps leave the query off the needle: the table says the gap was not reached, and the crossing
    sits above the prediction by more than the tolerance (paper_repro.md, section 4b)."""
    cfg = cr.CriticalConfig(rhos=(0.6,), bounds=(4.0,), steps=300, n_eval=32, eval_lengths=(16, 64, 256, 1024))
    t = cr.train(4.0, cfg, [0, 1], RunContext(tmp_path, [0, 1], torch.device("cpu"), quiet=True))
    row = cr.measure(cfg, {cr.key(4.0): t}).tables["transition"][0].iloc[0]
    assert not row.reached and row.align_min < cr.REACHED
    assert row.verdict == "off" and row.gamma_c_obs > row.gamma_c_pred * (1 + cr.TOLERANCE)
