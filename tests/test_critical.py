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


def test_the_spread_form_is_the_single_gap_form_when_distractors_share_a_score():
    s_needle, s_dist = np.array([[0.8, 0.9, 1.0]]), np.full((1, 3), -0.6)
    w = np.full((1, 3), 1 / 3)
    for n in (16, 4096):
        mass, log_odds = cr.spread_closed_form(n, 0.7, s_needle, s_dist, w)
        exact = np.mean([theory.critical_mass(n, 0.7, s + 0.6) for s in s_needle[0]])
        assert mass[0] == pytest.approx(exact, rel=1e-12)
        assert log_odds[0] == pytest.approx(np.mean(theory.critical_log_odds(n, 0.7, s_needle[0] + 0.6)), rel=1e-12)


def test_class_scores_are_the_models_logits_over_gamma_log_n():
    """Read from a context of 2C prototype items, they are the same at any n: a score depends on the item."""
    cfg = cr.CriticalConfig(n_classes=4)
    gens = Members.of([0, 1]).generators("init")
    net = NeedleModel("log_n", cfg, gens, score="cosine", score_bound=0.7 * cfg.bound)
    s_needle, s_dist = cr.class_scores(net, cfg, 0.7)
    assert s_needle.shape == s_dist.shape == (2, 4) and np.all(np.abs(s_needle) <= 1 + 1e-6)
    x = torch.zeros(2, 1, 3, 6)
    x[:, 0, 0, 0] = 1.0
    x[:, 0, :, 1 + 2] = 1.0  # three items of class 2, the first one the needle
    z = net.logits(x, x[..., 0]).detach().double()[:, 0] / (0.7 * math.log(3))
    np.testing.assert_allclose(z[:, 0].numpy(), s_needle[:, 2], rtol=1e-5)
    np.testing.assert_allclose(z[:, 1].numpy(), s_dist[:, 2], rtol=1e-5)


def test_config_refuses_impossible_values():
    with pytest.raises(ConfigError, match="gammas"):
        cr.CriticalConfig(gammas=(1.0, 0.5))
    with pytest.raises(ConfigError, match="bound"):
        cr.CriticalConfig(bound=0)
    with pytest.raises(ConfigError, match="fit_from"):
        cr.CriticalConfig(fit_from=8192)


def test_batched_member_matches_single_run(tmp_path):
    cfg = cr.CriticalConfig(steps=30, batch_size=16, n_eval=16, eval_lengths=(16, 64), fit_from=16, log_every=10)
    cpu = torch.device("cpu")
    batched = cr.train(0.7, cfg, Members.of([3, 4]), RunContext(tmp_path, [3, 4], cpu, quiet=True))
    single = cr.train(0.7, cfg, Members.of([4]), RunContext(tmp_path, [4], cpu, quiet=True))
    for key, a in batched.arrays.items():
        np.testing.assert_allclose(a[1], single[key][0], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def quick(quick_run):
    _, path = quick_run("critical")
    return path


def test_the_quick_run_writes_the_transition_and_every_length(quick):
    m = read_json(quick / "metrics.json")
    assert set(m["transition"]) == {"observed", "predicted", "predicted_spread", "asymptote", "asymptote_max"}
    t = pd.read_csv(quick / "tables" / "by_length.csv")
    assert len(t) == len(m["gammas"]) * len(m["lengths"]) and t.mass.between(0, 1).all()
    tr = pd.read_csv(quick / "tables" / "transition.csv")
    # the closed form's exponent at each model's own gap, fitted as the measured one is
    assert (tr.exponent_pred.diff().dropna() < 0).all() or (tr.gap.diff().abs() > 0.2).any()
    # its log odds are linear in the gap, so the fitted slope over the seeds' gaps is the one at their mean
    n = np.array(m["fit_lengths"], dtype=float)
    base = theory.off_needle_exponent(np.log(n - 1), n)
    np.testing.assert_allclose(tr.exponent_pred, base - tr.gamma * tr.gap, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tr.exponent_asymptote, 1 - tr.gamma * tr.gap, rtol=1e-12)


def test_committed_run_sees_the_transition_where_the_closed_form_puts_it():
    """The committed default: the measured exponent crosses 0 within 10% of where the closed form at
    the models' own gaps crosses it, and mass falls with n below the transition and not above it."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments" / "critical"
    m = read_json(root / "metrics.json")
    obs, pred = m["transition"]["observed"], m["transition"]["predicted"]
    assert obs is not None and pred is not None and abs(obs / pred - 1) < 0.1
    tr = pd.read_csv(root / "transition.csv")
    assert (tr[tr.gamma < 0.8 * obs].exponent_hi < 0).sum() == 0  # below: the odds grow with n
    assert (tr[tr.gamma > 1.25 * obs].exponent_lo > 0).sum() == 0  # above: they do not
