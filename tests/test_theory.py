"""Closed forms of ssa_theory.theory against brute force and numerical optimisation (hypothesis)."""

import math

import numpy as np
import torch
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import expit, log_softmax

from ssa_theory import theory

FAST = settings(max_examples=60, deadline=None)
SLOW_OPT = settings(max_examples=12, deadline=None)  # each example runs a constrained optimiser


@st.composite
def support(draw, k_min=2, k_max=200):
    K = draw(st.integers(k_min, k_max))
    s = draw(st.integers(1, K - 1))
    return K, s


def two_level(K, s, gap):
    """Zero-mean logits, +gap (K - s)/K on the first s tokens, -gap s/K on the rest."""
    z = np.full(K, -gap * s / K)
    z[:s] = gap * (K - s) / K
    return z


def best_feasible(fun, starts, cons, tol=1e-7):
    """Best value SLSQP finds over several starts, among points that really satisfy ``cons``.

    Feasibility is checked here rather than trusting the optimiser's status, which can report a
    line-search failure at a point that is already optimal.
    """
    best = math.inf
    for x0 in starts:
        res = minimize(fun, x0=x0, constraints=cons, method="SLSQP", options={"ftol": 1e-12, "maxiter": 1000})
        ok = all(c["fun"](res.x) >= -tol if c["type"] == "ineq" else abs(c["fun"](res.x)) <= tol for c in cons)
        if ok:
            best = min(best, fun(res.x))
    assert math.isfinite(best), "no start reached a feasible point"
    return best


def ce(z, target):
    return -(target * log_softmax(z)).sum()


def smoothed_target(K, s, g):
    p_in, p_out = theory.smoothed_row(K, s, g)
    t = np.full(K, p_out)
    t[:s] = p_in
    return t


# --- unsmoothed closed forms ---------------------------------------------------------------------


@FAST
@given(support(), st.floats(1e-6, 0.999))
def test_logit_gap_leaves_exactly_eps_off_the_support(Ks, eps):
    K, s = Ks
    z = two_level(K, s, theory.logit_gap(K, s, eps))
    p = np.exp(log_softmax(z))
    assert p[s:].sum() == pytest.approx(eps, rel=1e-9, abs=1e-12)


@FAST
@given(support(), st.floats(0.0, 30.0))
def test_min_logit_norm_is_reached_by_the_zero_mean_two_level_vector(Ks, gap):
    K, s = Ks
    z = two_level(K, s, gap)
    assert z[:s].min() - z[s:].max() == pytest.approx(gap, abs=1e-9)
    assert np.linalg.norm(z) == pytest.approx(theory.min_logit_norm(K, s, gap), rel=1e-9, abs=1e-12)


@FAST
@given(support(k_max=30), st.floats(0.1, 10.0), st.integers(0, 2**32 - 1))
def test_no_vector_with_the_gap_has_a_smaller_norm(Ks, gap, seed):
    """Random vectors pushed to satisfy the gap constraint never beat the closed-form norm."""
    K, s = Ks
    rng = np.random.default_rng(seed)
    for _ in range(20):
        z = rng.normal(size=K) * rng.uniform(0.1, 5)
        short = gap - (z[:s].min() - z[s:].max())
        if short > 0:
            z[:s] += short  # now min_in - max_out == gap exactly
        assert np.linalg.norm(z) >= theory.min_logit_norm(K, s, gap) * (1 - 1e-9)


@SLOW_OPT
@given(support(k_max=7), st.floats(0.2, 8.0))
def test_min_logit_norm_matches_constrained_minimisation(Ks, gap):
    K, s = Ks
    cons = [{"type": "ineq", "fun": (lambda z, i=i, j=j: z[i] - z[j] - gap)} for i in range(s) for j in range(s, K)]
    rng = np.random.default_rng(K * 10 + s)
    starts = [np.linspace(1, -1, K) * gap] + [rng.normal(size=K) * gap for _ in range(3)]
    best = best_feasible(lambda z: z @ z, starts, cons)
    closed = theory.min_logit_norm(K, s, gap)
    assert math.sqrt(best) >= closed * (1 - 1e-6)  # nothing feasible beats the closed form
    assert math.sqrt(best) == pytest.approx(closed, rel=1e-4)


@SLOW_OPT
@given(support(k_max=7), st.floats(0.1, 12.0))
def test_best_ce_under_norm_matches_constrained_minimisation(Ks, r):
    K, s = Ks
    target = np.zeros(K)
    target[:s] = 1.0 / s
    starts = [x0 * r / math.sqrt(K) for x0 in (np.linspace(1, -1, K), -np.linspace(1, -1, K), np.zeros(K))]
    best = best_feasible(lambda z: ce(z, target), starts, [{"type": "ineq", "fun": lambda z: r * r - z @ z}])
    closed = theory.best_ce_under_norm(K, s, r)
    assert best >= closed - 1e-7
    assert best == pytest.approx(closed, rel=1e-5, abs=1e-7)


@FAST
@given(support(), st.floats(0.0, 50.0), st.floats(0.0, 50.0))
def test_best_ce_under_norm_decreases_to_the_log_s_floor(Ks, r1, r2):
    K, s = Ks
    lo, hi = sorted((r1, r2))
    assert theory.best_ce_under_norm(K, s, hi) <= theory.best_ce_under_norm(K, s, lo) + 1e-12
    assert theory.best_ce_under_norm(K, s, hi) >= math.log(s) - 1e-12
    assert theory.best_ce_under_norm(K, s, 0.0) == pytest.approx(math.log(K))  # r = 0: uniform row


# --- smoothed rows ---------------------------------------------------------------------------------


@FAST
@given(support(), st.floats(0.0, 0.99), st.floats(0.0, 40.0))
def test_row_ce_at_gap_is_the_two_level_cross_entropy(Ks, g, gap):
    K, s = Ks
    assert theory.row_ce_at_gap(K, s, g, gap) == pytest.approx(ce(two_level(K, s, gap), smoothed_target(K, s, g)), rel=1e-9, abs=1e-9)


@FAST
@given(support(), st.floats(1e-4, 0.99))
def test_optimal_gap_attains_the_entropy_floor(Ks, g):
    K, s = Ks
    d = theory.optimal_gap(K, s, g)
    assert theory.row_ce_at_gap(K, s, g, d) == pytest.approx(theory.row_entropy(K, s, g), rel=1e-9, abs=1e-12)
    for other in (0.9 * d, 1.1 * d + 0.01):
        assert theory.row_ce_at_gap(K, s, g, other) > theory.row_entropy(K, s, g) - 1e-12
    target = smoothed_target(K, s, g)
    assert theory.row_entropy(K, s, g) == pytest.approx(-(target * np.log(target)).sum(), rel=1e-9)


@FAST
@given(support(k_max=60), st.floats(1e-3, 0.5))
def test_optimal_gap_shrinks_with_degree(Ks, g):
    K, s = Ks
    if s + 1 < K:
        assert theory.optimal_gap(K, s + 1, g) < theory.optimal_gap(K, s, g)


def test_rownorm_max_gap_for_two_tokens():
    """K = 2: the only zero-mean vectors of norm B are +-(B, -B)/sqrt(2), with gap B sqrt(2)."""
    assert theory.max_gap(2, 1, "rownorm", 0.7) == pytest.approx(0.7 * math.sqrt(2))


@SLOW_OPT
@given(support(k_min=3, k_max=7), st.floats(0.3, 5.0))
def test_rownorm_max_gap_matches_optimisation(Ks, B):
    """Largest min_in - max_out over zero-mean vectors of norm B (K >= 3; K = 2 has two points)."""
    K, s = Ks
    cons = [{"type": "eq", "fun": lambda y: y[:K] @ y[:K] - B * B}, {"type": "eq", "fun": lambda y: y[:K].sum()}]
    cons += [{"type": "ineq", "fun": (lambda y, i=i, j=j: y[i] - y[j] - y[K])} for i in range(s) for j in range(s, K)]
    rng = np.random.default_rng(K * 10 + s)
    starts = [np.append(c / np.linalg.norm(c) * B, -B) for c in (rng.normal(size=K) for _ in range(4))]
    best = -best_feasible(lambda y: -y[K], [x - np.append(np.full(K, x[:K].mean()), 0) for x in starts], cons)
    closed = theory.max_gap(K, s, "rownorm", B)
    assert best <= closed * (1 + 1e-6)  # nothing feasible beats the closed form
    assert best == pytest.approx(closed, rel=1e-5)


@FAST
@given(support(k_max=50), st.floats(1e-3, 0.5), st.floats(0.1, 6.0))
def test_vanilla_reaches_the_floor_exactly_when_the_bound_allows_the_gap(Ks, g, B):
    """Threshold checked from both sides: floor iff 2B >= Delta(s)."""
    K, s = Ks
    best = theory.best_ce_under_bound(K, s, g, "softcap", B, tau=1.0)
    floor = theory.row_entropy(K, s, g)
    if 2 * B >= theory.optimal_gap(K, s, g):
        assert best == pytest.approx(floor, rel=1e-12, abs=1e-12)
    else:
        assert best > floor


# --- predicted temperatures ------------------------------------------------------------------------


@FAST
@given(support(k_max=60), st.floats(1e-3, 0.5), st.floats(0.5, 5.0), st.sampled_from(theory.BOUNDED_SCORES))
def test_vanishing_penalty_gives_the_smallest_sufficient_tau(Ks, g, B, score):
    K, s = Ks
    need = theory.optimal_gap(K, s, g) / theory.max_gap(K, s, score, B)
    tau0 = theory.predicted_inverse_temperature(K, s, g, score, B, penalty=0.0, tau_max=100.0)
    if score == "rownorm":
        assert tau0 == pytest.approx(need)  # a fixed row norm identifies tau without a price
    else:
        assert math.isnan(tau0)  # an entrywise box has slack: every tau >= need is optimal
    tau_small = theory.predicted_inverse_temperature(K, s, g, score, B, penalty=1e-9, tau_max=100.0)
    assert tau_small == pytest.approx(need, rel=1e-3)
    # a real price pulls tau below what the gap needs, never above
    assert theory.predicted_inverse_temperature(K, s, g, score, B, penalty=0.1, tau_max=100.0) <= need + 1e-9


@FAST
@given(st.integers(4, 80), st.floats(1e-3, 0.5), st.floats(0.5, 5.0), st.floats(1e-4, 0.1))
def test_softcap_temperature_rises_with_degree(K, g, B, penalty):
    """The paper's Table 1 trend follows from an entrywise score bound, at any price."""
    T = [theory.predicted_temperature(K, s, g, "softcap", B, penalty, tau_max=1e6) for s in range(1, K // 2)]
    assert all(b >= a - 1e-9 for a, b in zip(T, T[1:]))


def test_rownorm_reverses_the_trend_in_the_default_setting():
    T_row = [theory.predicted_temperature(16, s, 0.05, "rownorm", 5.0, 1e-2) for s in range(1, 6)]
    T_cap = [theory.predicted_temperature(16, s, 0.05, "softcap", 2.0, 1e-2) for s in range(1, 6)]
    assert all(b < a for a, b in zip(T_row, T_row[1:]))
    assert all(b > a for a, b in zip(T_cap, T_cap[1:]))


def _joint_optimum(K, s, g, score, B, penalty, tau_max, seed):
    """Brute force: minimise CE + penalty tau^2 over tau AND the full score row (no two-level assumption)."""
    target = smoothed_target(K, s, g)
    rng = np.random.default_rng(seed)

    def pattern(w):
        if score == "softcap":
            return B * np.tanh(w)
        c = w - w.mean()
        return B * c / max(np.linalg.norm(c), 1e-12)

    def objective(y):
        tau = tau_max * expit(y[0])  # tau in (0, tau_max)
        return ce(tau * pattern(y[1:]), target) + penalty * tau * tau, tau

    best = (math.inf, None)
    for _ in range(6):
        res = minimize(lambda y: objective(y)[0], x0=rng.normal(size=K + 1) * 2, method="BFGS", options={"gtol": 1e-10})
        if res.fun < best[0]:
            best = (res.fun, objective(res.x)[1])
    return best


@SLOW_OPT
@given(st.integers(3, 6).flatmap(lambda K: st.tuples(st.just(K), st.integers(1, K - 1))),
       st.floats(0.02, 0.3), st.floats(0.5, 3.0), st.sampled_from(theory.BOUNDED_SCORES), st.floats(1e-3, 0.1))
def test_predicted_temperature_matches_joint_brute_force(Ks, g, B, score, penalty):
    K, s = Ks
    tau_max = 4.0
    tau = theory.predicted_inverse_temperature(K, s, g, score, B, penalty, tau_max)
    closed = theory.best_ce_under_bound(K, s, g, score, B, tau) + penalty * tau * tau
    brute, brute_tau = _joint_optimum(K, s, g, score, B, penalty, tau_max, seed=K * 100 + s)
    # softcap's bound is approached only as scores saturate, so brute force can only come close from above
    assert brute >= closed - 1e-7
    assert brute == pytest.approx(closed, abs=2e-5)
    assert brute_tau == pytest.approx(tau, rel=2e-2, abs=2e-3)


def test_inputs_are_checked():
    with pytest.raises(ValueError):
        theory.logit_gap(5, 5, 0.1)
    with pytest.raises(ValueError):
        theory.logit_gap(5, 2, 1.0)
    with pytest.raises(ValueError):
        theory.max_gap(5, 2, "dot", 1.0)
    with pytest.raises(ValueError):
        theory.smoothed_row(5, 2, 1.0)


# --- denoising (paper Table 2) ---------------------------------------------------------------------------

sigma_lists = st.lists(st.floats(0.1, 20.0), min_size=1, max_size=24)


def monte_carlo_risks(sigmas, prior_var, n_samples, seed):
    """Per-coordinate squared errors of the naive, convex and Bayes estimators on simulated contexts."""
    rng = np.random.default_rng(seed)
    s = np.asarray(sigmas)
    mu = rng.normal(size=(n_samples, 1)) * np.sqrt(prior_var)
    x = mu + s * rng.normal(size=(n_samples, s.size))
    w = 1 / s**2
    est = {"naive": x.mean(1), "convex": x @ w / w.sum(), "bayes": x @ w / (1 / prior_var + w.sum())}
    return {k: (e - mu[:, 0]) ** 2 for k, e in est.items()}


@FAST
@given(sigma_lists, st.floats(0.2, 5.0), st.integers(0, 2**32 - 1))
def test_denoising_closed_forms_match_monte_carlo(sigmas, prior_var, seed):
    """20000 simulated contexts; tolerance: 5 standard errors of each Monte-Carlo mean."""
    errs = monte_carlo_risks(sigmas, prior_var, 20000, seed)
    closed = {"naive": theory.denoising_mse_naive(sigmas), "convex": theory.denoising_mse_convex(sigmas),
              "bayes": theory.denoising_mse_bayes(sigmas, prior_var)}
    for k, e in errs.items():
        se = e.std(ddof=1) / math.sqrt(e.size)
        assert abs(e.mean() - closed[k]) < 5 * se, (k, e.mean(), closed[k], se)


@FAST
@given(sigma_lists, st.floats(0.2, 5.0))
def test_denoising_risks_are_ordered(sigmas, prior_var):
    bayes = theory.denoising_mse_bayes(sigmas, prior_var)
    convex = theory.denoising_mse_convex(sigmas)
    naive = theory.denoising_mse_naive(sigmas)
    assert bayes <= convex * (1 + 1e-12) and convex <= naive * (1 + 1e-12)
    assert bayes <= prior_var  # never worse than predicting the prior mean


@FAST
@given(st.integers(1, 30), st.floats(0.1, 10.0), st.floats(0.1, 10.0), st.floats(0.2, 5.0), st.integers(0, 2**32 - 1))
def test_value_gains_make_attention_the_bayes_estimator(n, s1, s2, prior_var, seed):
    """For every class composition, softmax weights r_c / sum r with gains tau_c ARE the Bayes weights."""
    rng = np.random.default_rng(seed)
    r, tau = theory.value_selective_bayes_parameters(n, [s1, s2], prior_var)
    assert np.all((0 < tau) & (tau < 1))
    for _ in range(5):
        cls = rng.integers(0, 2, size=n)
        sig = np.array([s1, s2])[cls]
        attention = r[cls] * tau[cls] / r[cls].sum()
        bayes = (1 / sig**2) / (1 / prior_var + (1 / sig**2).sum())
        np.testing.assert_allclose(attention, bayes, rtol=1e-12)


@FAST
@given(st.integers(1, 40), st.floats(0.0, 1.0), st.floats(0.2, 5.0), st.floats(0.2, 40.0), st.floats(0.2, 4.0))
def test_expected_risks_enumerate_the_class_counts(n, p, s1, s2, prior_var):
    risks = theory.expected_denoising_mse(n, p, s1, s2, prior_var)
    pmf = theory.noisy_count_pmf(n, p)
    assert pmf.sum() == pytest.approx(1.0)
    brute_bayes = sum(pmf[k] * theory.denoising_mse_bayes([s1] * (n - k) + [s2] * k, prior_var) for k in range(n + 1))
    brute_naive = sum(pmf[k] * theory.denoising_mse_naive([s1] * (n - k) + [s2] * k) for k in range(n + 1))
    assert risks.bayes == pytest.approx(brute_bayes, rel=1e-10)
    assert risks.naive == pytest.approx(brute_naive, rel=1e-10)
    assert risks.bayes <= risks.vanilla * (1 + 1e-12) <= risks.convex * (1 + 1e-9) + 1e-15
    assert risks.vanilla <= prior_var


@SLOW_OPT
@given(st.integers(2, 24), st.floats(0.05, 0.95), st.floats(0.3, 3.0), st.floats(1.0, 30.0))
def test_best_vanilla_matches_numerical_optimisation(n, p, s1, s2):
    """Minimise the exact expected risk of class-weighted softmax attention with one gain, over (log r2/r1, g)."""
    pmf = theory.noisy_count_pmf(n, p)
    k = np.arange(n + 1)

    def risk(y):
        rho, g = np.exp(y[0]), y[1]  # weights: clean 1, noisy rho
        total = (n - k) + k * rho
        var = ((n - k) * s1**2 + k * rho**2 * s2**2) / total**2
        return pmf @ ((1 - g) ** 2 + g**2 * var)

    best = min(minimize(risk, x0=np.array([x0, 0.5]), method="Nelder-Mead",
                        options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000}).fun for x0 in (-4.0, 0.0, 2.0))
    closed = theory.expected_denoising_mse(n, p, s1, s2, 1.0).vanilla
    assert best >= closed * (1 - 1e-9)
    assert best == pytest.approx(closed, rel=1e-5)


def test_denoising_risks_at_known_points():
    """Exact risks computed independently (n = 16, p = 0.9): naive / best vanilla / Bayes."""
    for (s1, s2), expected in {(1, 10): (5.63, 0.620, 0.448), (1, 30): (50.6, 0.916, 0.485), (0.5, 5): (1.41, 0.290, 0.215)}.items():
        r = theory.expected_denoising_mse(16, 0.9, s1, s2, 1.0)
        assert (round(r.naive, 2 if r.naive < 10 else 1), round(r.vanilla, 3), round(r.bayes, 3)) == expected


# --- dilution (paper "Proposition 2") ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5000), st.floats(-3, 8), st.floats(0, 1.5))
def test_dilution_mass_is_the_softmax_of_one_raised_logit(n, gap, c):
    logits = np.zeros(n)
    logits[0] = gap
    scaled = logits * (1 + c * math.log(n))
    brute = np.exp(scaled[0] - scaled.max()) / np.exp(scaled - scaled.max()).sum()
    assert theory.dilution_mass(n, gap, c) == pytest.approx(brute, rel=1e-9, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 10**6), st.floats(1e-4, 0.999))
def test_gap_needed_leaves_exactly_one_minus_eps(n, eps):
    assert theory.dilution_mass(n, float(theory.gap_needed(n, eps))) == pytest.approx(1 - eps, rel=1e-9)
    assert theory.effective_gap(1 - eps, n) == pytest.approx(theory.gap_needed(n, eps), rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.1, 5.0), st.floats(0.0, 3.0))
def test_position_temperature_threshold_from_both_sides(gap, extra):
    """At or above c gap = 1 the mass never falls below 1/(1 + e^-gap), at any n; below, it decays."""
    floor = 1 / (1 + math.exp(-gap))
    n = np.array([2, 10, 1e3, 1e6, 1e12, 1e30])
    above = theory.dilution_mass(n, gap, (1 + extra) / gap)
    assert np.all(above >= floor * (1 - 1e-12))
    below = theory.dilution_mass(n, gap, 0.9 / gap)  # c gap = 0.9: (n-1) n^-0.9 grows like n^0.1
    assert below[-1] < 0.2 * floor and np.all(np.diff(below[2:]) < 0)
    assert theory.dilution_mass(1e30, gap, 0.0) < 1e-20  # no temperature: mass ~ e^gap / n


def test_dilution_numbers_at_known_points():
    """Delta = 2: without a position temperature 0.451, 0.069, 0.007 at n = 10, 100, 1000."""
    np.testing.assert_array_equal(np.round(theory.dilution_mass([10, 100, 1000], 2.0), 3), [0.451, 0.069, 0.007])
    # and with tau_pos = 1 + 0.5 log n (c gap = 1): bounded, about 0.88 at every n
    assert np.all(np.abs(theory.dilution_mass([10, 100, 1000, 1e6], 2.0, 0.5) - 0.88) < 0.012)


def test_mixed_distractors_reduce_to_equal_logits_and_match_monte_carlo():
    first, corr = theory.dilution_mass_mixed(50, 3.0, [0.0, 0.0, 0.0])
    assert first == pytest.approx(theory.dilution_mass(50, 3.0)) and corr == pytest.approx(0.0, abs=1e-15)
    rng = np.random.default_rng(0)
    levels, z_star, n, scale = np.array([-1.0, 0.0, 0.5, 1.5]), 2.5, 40, 1.3
    draws = rng.choice(levels, size=(200_000, n - 1)) * scale
    mass = 1 / (1 + np.exp(draws - scale * z_star).sum(1))
    first, corr = theory.dilution_mass_mixed(n, z_star, levels, scale=scale)
    se = mass.std() / math.sqrt(mass.size)
    assert abs(mass.mean() - (first + corr)) < 4 * se + abs(corr) * 0.2  # third-order terms: a fraction of corr
    assert abs(mass.mean() - first) > abs(mass.mean() - (first + corr))  # the correction helps


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["softcap", "rownorm"]), st.floats(1.0, 4.0), st.floats(1e-3, 5e-2))
def test_best_global_temperature_beats_every_other_single_temperature(score, B, penalty):
    K, degrees, g = 12, [1, 1, 2, 3, 4, 5], 0.05
    tau, ce = theory.best_global_inverse_temperature(K, degrees, g, score, B, penalty, 2.0)
    obj = lambda t: np.mean([theory.best_ce_under_bound(K, s, g, score, B, t) for s in degrees]) + penalty * t * t  # noqa: E731
    grid = np.linspace(1e-3, 2.0, 400)
    assert obj(tau) <= min(obj(t) for t in grid) + 1e-7  # bounded Brent stops within ~1e-8 of a boundary optimum
    assert ce == pytest.approx(np.mean([theory.best_ce_under_bound(K, s, g, score, B, tau) for s in degrees]))
    # a per-row temperature (SSA's) is never worse than one shared by all rows, at the same price
    per_row = np.mean([theory.best_ce_under_bound(K, s, g, score, B, t) + penalty * t * t for s, t in
                       ((s, theory.predicted_inverse_temperature(K, s, g, score, B, penalty, 2.0)) for s in degrees)])
    assert per_row <= obj(tau) + 1e-6


# --- specificity (the norm argument for the token term) -----------------------------------------------


def _least_norm_by_optimisation(z, beta_a, beta_b, rho, taus=None, tau_max=2.0):
    """Independent: min over the softmax constants (and temperatures) of the least-squares ||M||_F^2
    that hits both logit rows exactly, M found by the pseudo-inverse, minimised by Nelder-Mead."""
    from scipy.optimize import minimize

    X = np.array([[1.0, 0.0, 0.0], [rho, math.sqrt(1 - rho * rho), 0.0]])  # unit queries at cosine rho (rows)

    def cost(params):
        ca, cb = params[:2]
        ta, tb = (taus if taus is not None else np.clip(params[2:], 1e-6, tau_max))
        V = np.stack([beta_a / ta * z + ca, beta_b / tb * z + cb])  # (2, K): rows X M must equal
        M = np.linalg.pinv(X) @ V
        assert np.allclose(X @ M, V)
        return (M * M).sum()

    x0 = [0.3, -0.2] + ([] if taus is not None else [1.0, 1.0])
    best = min(minimize(cost, np.array(x0) + d, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                                  "maxiter": 20000}).fun
               for d in (0.0, 0.5, -0.5))
    return math.sqrt(best)


@settings(max_examples=25, deadline=None)
@given(st.floats(-0.95, 0.99), st.floats(0.2, 6.0), st.floats(0.2, 6.0), st.integers(0, 10**6))
def test_specificity_vanilla_least_norm_matches_optimisation(rho, beta_a, beta_b, seed):
    z = np.random.default_rng(seed).normal(size=6)
    z -= z.mean()
    closed = theory.specificity_min_norm(z @ z, beta_a, beta_b, rho, "vanilla")
    assert _least_norm_by_optimisation(z, beta_a, beta_b, rho, taus=(1.0, 1.0)) == pytest.approx(closed, rel=1e-5)
    # global: one temperature for both rows
    assert theory.specificity_min_norm(z @ z, beta_a, beta_b, rho, "global", 2.0) == pytest.approx(closed / 2.0)


@settings(max_examples=20, deadline=None)
@given(st.floats(-0.9, 0.99), st.floats(0.3, 6.0), st.floats(0.3, 6.0), st.integers(0, 10**6))
def test_specificity_token_least_norm_matches_optimisation(rho, beta_a, beta_b, seed):
    z = np.random.default_rng(seed).normal(size=5)
    z -= z.mean()
    closed = theory.specificity_min_norm(z @ z, beta_a, beta_b, rho, "token", 2.0)
    numeric = _least_norm_by_optimisation(z, beta_a, beta_b, rho)
    assert numeric == pytest.approx(closed, rel=1e-4)  # Nelder-Mead over 4 parameters: 1e-4 is its reach
    assert closed <= theory.specificity_min_norm(z @ z, beta_a, beta_b, rho, "global", 2.0) * (1 + 1e-12)


def test_specificity_limits_as_queries_become_identical():
    """Vanilla and global: unbounded like |beta_a - beta_b| ||z|| / sqrt(2 (1 - rho)); token: bounded."""
    zz, ba, bb = 4.0, 4.0, 0.5
    for eps in (1e-4, 1e-6, 1e-8):
        rho = 1 - eps
        van = theory.specificity_min_norm(zz, ba, bb, rho, "vanilla")
        assert van == pytest.approx(abs(ba - bb) * math.sqrt(zz) / math.sqrt(2 * eps), rel=2 * eps + 1e-6)
        assert theory.specificity_min_norm(zz, ba, bb, rho, "token", 2.0) == pytest.approx(math.sqrt(zz) * ba / 2.0)
    assert theory.specificity_min_norm(zz, ba, ba, 0.999, "vanilla") < 2 * math.sqrt(zz) * ba  # equal betas: no contrast, no blow-up


def _frontier_by_slsqp(z, beta_a, beta_b, rho, excess):
    """Independent: SLSQP on min ||M||^2 over the two logit rows, subject to the total KL budget."""
    from scipy.optimize import minimize

    K = len(z)
    t = [np.exp(b * z) / np.exp(b * z).sum() for b in (beta_a, beta_b)]

    def kl(w):
        rows = (w[:K], w[K:])
        return sum((ti * (np.log(ti) - (r - np.log(np.exp(r).sum())))).sum() for ti, r in zip(t, rows))

    def least_sq_norm(w):  # the least ||M||^2 for rows w, by the pseudo-inverse over the softmax constants
        X = np.array([[1.0, 0.0], [rho, math.sqrt(1 - rho * rho)]])
        V = np.stack([w[:K] - w[:K].mean(), w[K:] - w[K:].mean()])
        M = np.linalg.solve(X, V)
        return (M * M).sum()

    start = np.concatenate([beta_a * z, beta_b * z])
    runs = [minimize(least_sq_norm, start * s, method="SLSQP", constraints=[{"type": "ineq", "fun": lambda w: excess - kl(w)}],
                     options={"ftol": 1e-14, "maxiter": 2000}) for s in (1.0, 0.5, 0.2)]
    return math.sqrt(min(r.fun for r in runs if kl(r.x) <= excess * (1 + 1e-6)))


@settings(max_examples=12, deadline=None)
@given(st.floats(-0.9, 0.99), st.floats(0.3, 5.0), st.floats(0.3, 5.0), st.floats(0.002, 0.3), st.integers(0, 10**6))
def test_specificity_frontier_matches_constrained_optimisation(rho, beta_a, beta_b, excess, seed):
    z = np.random.default_rng(seed).normal(size=6)
    z -= z.mean()
    flat = sum(float((t * np.log(t * 6)).sum()) for t in (np.exp(b * z) / np.exp(b * z).sum() for b in (beta_a, beta_b)))
    assume(excess < 0.9 * flat)  # otherwise the flat rows (norm 0) already meet the budget
    ours = theory.specificity_frontier(z[None], beta_a, beta_b, rho, excess)[0]
    # ours is a lower bound at the bisection's accuracy; SLSQP's feasible point is an upper bound
    assert ours == pytest.approx(_frontier_by_slsqp(z, beta_a, beta_b, rho, excess), rel=1e-4)


def test_specificity_frontier_limits_and_order():
    """excess -> 0 gives the exact-reproduction closed form; the frontier falls as the budget grows; a
    budget the flat rows meet costs nothing; batched problems equal single ones."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 16))
    z -= z.mean(1, keepdims=True)
    rhos = np.array([0.0, 0.9, 0.99])
    exact = [theory.specificity_min_norm(zz @ zz, 4.0, 0.5, r, "vanilla") for zz, r in zip(z, rhos)]
    # the tails converge slowly (a tiny target mass costs little KL however wrong its logit): 1e-14
    assert theory.specificity_frontier(z, 4.0, 0.5, rhos, 1e-14) == pytest.approx(exact, rel=1e-3)
    budgets = [1e-4, 1e-2, 0.1, 0.5]
    curve = np.array([theory.specificity_frontier(z, 4.0, 0.5, rhos, e) for e in budgets])
    assert np.all(np.diff(curve, axis=0) < 0)
    assert np.all(curve < np.array(exact))
    assert np.all(theory.specificity_frontier(z, 4.0, 0.5, rhos, 1e3) == 0.0)
    single = theory.specificity_frontier(z[1:2], 4.0, 0.5, 0.9, 0.1)
    assert single[0] == pytest.approx(curve[2, 1], rel=1e-9)


def test_gelu_lipschitz_constant_is_the_largest_slope():
    x = torch.linspace(-6, 6, 200001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(torch.nn.functional.gelu(x).sum(), x)
    assert float(slope.max()) == pytest.approx(theory.GELU_LIPSCHITZ, abs=1e-4)
    assert float(slope.max()) <= theory.GELU_LIPSCHITZ + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.floats(-0.9, 0.999), st.integers(0, 10**6), st.floats(0.01, 10.0))
def test_token_swing_bound_holds_for_any_weights(rho, seed, scale):
    """For random u and W_q the token term's difference between two unit queries at cosine rho never
    exceeds what ``token_swing_min_gain`` allows: |u| ||W_q||_2 >= the bound at the realised swing."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 8, generator=g, dtype=torch.float64) * scale
    u = torch.randn(8, generator=g, dtype=torch.float64)
    xa = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    xb = torch.tensor([rho, math.sqrt(1 - rho * rho), 0.0, 0.0], dtype=torch.float64)
    s = lambda x: float(u @ torch.nn.functional.gelu(x @ W))  # noqa: E731
    gain = float(u.norm() * torch.linalg.matrix_norm(W, ord=2))
    assert gain >= theory.token_swing_min_gain(s(xa) - s(xb), rho) * (1 - 1e-12)
