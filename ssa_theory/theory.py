"""Closed forms behind the experiments: pure functions of numbers, no torch.

Each function names the claim it encodes (the paper's figure or table; ``paper_repro.md``). Everything here is our derivation
(the paper's exact theorem statements were not available to us); every formula has a property test
in ``tests/test_theory.py`` against brute force or numerical optimisation.

Conventions for the graph task (paper Fig. p5, Table 1). A query row has K candidate next tokens; its target
is uniform on a support of s of them, optionally smoothed with uniform mass g:

    p_in  = (1 - g) / s + g / K     on the s support tokens
    p_out = g / K                   on the K - s others

The model's row is ``softmax(z)`` over K logits. By symmetry and convexity of the cross-entropy, the
best logits under any permutation-symmetric convex budget (an entrywise bound, a 2-norm bound) take
two levels, one on the support and one off it, so everything reduces to the in/out logit *gap* G.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "logit_gap",
    "min_logit_norm",
    "best_ce_under_norm",
    "smoothed_row",
    "optimal_gap",
    "row_ce_at_gap",
    "row_entropy",
    "max_gap",
    "best_ce_under_bound",
    "predicted_inverse_temperature",
    "predicted_temperature",
    "BOUNDED_SCORES",
    "denoising_mse_naive",
    "denoising_mse_convex",
    "denoising_mse_bayes",
    "value_selective_bayes_parameters",
    "noisy_count_pmf",
    "DenoisingRisks",
    "expected_denoising_mse",
    "gap_for_accuracy",
    "min_norm_for_accuracy",
    "query_norm_lower_bound",
    "position_scale",
    "dilution_mass",
    "gap_needed",
    "effective_gap",
    "dilution_mass_moments",
    "dilution_mass_mixed",
    "best_global_inverse_temperature",
    "specificity_min_norm_sq",
    "specificity_min_norm",
    "specificity_frontier",
    "GELU_LIPSCHITZ",
    "token_swing_min_gain",
]

# Score geometries for which the largest reachable in/out gap has a closed form (see ``max_gap``).
BOUNDED_SCORES = ("softcap", "rownorm")


def _check_support(K: int, s: int) -> None:
    if not (isinstance(K, int) and isinstance(s, int)) or not 1 <= s < K:
        raise ValueError(f"need integers 1 <= s < K (got K={K}, s={s})")


# --- unsmoothed targets: the gap/norm trade-off (paper Fig. p5) -----


def logit_gap(K: int, s: int, eps: float) -> float:
    """The in/out logit gap that leaves mass ``eps`` off a uniform support of s among K tokens.

    With two-level logits, off-support mass is ``(K - s) / (s e^G + K - s)``; setting it to eps gives
    ``G = log((K - s)(1 - eps) / (s eps))``. Smaller supports need a larger gap (claim: sparse
    rows need spikier logits).
    """
    _check_support(K, s)
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1) (got {eps})")
    return math.log((K - s) * (1.0 - eps) / (s * eps))


def min_logit_norm(K: int, s: int, gap: float) -> float:
    """The smallest 2-norm of a logit vector whose support entries all exceed the others by ``gap``.

    The minimiser is two-level and zero-mean: ``+gap (K - s)/K`` on the support, ``-gap s/K`` off it,
    so ``||z||^2 = gap^2 s (K - s) / K``. The norm a row must pay grows with its support size s (for
    s < K/2): wide rows cost more norm per unit of gap than narrow ones.
    """
    _check_support(K, s)
    if gap < 0:
        raise ValueError(f"gap must be >= 0 (got {gap})")
    return gap * math.sqrt(s * (K - s) / K)


def best_ce_under_norm(K: int, s: int, r: float) -> float:
    """Best cross-entropy to a uniform-on-s target reachable by logits of 2-norm at most r.

    The largest gap a norm-r vector can carry is ``Delta_max = r sqrt(K / (s (K - s)))``
    (invert ``min_logit_norm``), and the cross-entropy of two-level logits with gap G against the
    uniform-on-s target is ``log(s + (K - s) e^{-G})``, decreasing in G down to the floor ``log s``.
    """
    _check_support(K, s)
    if r < 0:
        raise ValueError(f"r must be >= 0 (got {r})")
    delta_max = r * math.sqrt(K / (s * (K - s)))
    return math.log(s + (K - s) * math.exp(-delta_max))


# --- smoothed targets: finite optimum, predicted temperatures (paper Table 1) ---------


def smoothed_row(K: int, s: int, g: float) -> tuple[float, float]:
    """(p_in, p_out) of a degree-s row of ``P* = (1 - g) D^-1 A + g / K``."""
    _check_support(K, s)
    if not 0.0 <= g < 1.0:
        raise ValueError(f"smoothing g must lie in [0, 1) (got {g})")
    return (1.0 - g) / s + g / K, g / K


def optimal_gap(K: int, s: int, g: float) -> float:
    """CE-optimal in/out logit gap of a smoothed degree-s row: ``log(p_in / p_out)``.

    ``Delta(s) = log(((1 - g)/s + g/K) / (g/K))``; finite for g > 0 and decreasing in s, so
    low-degree (specific) tokens need the spikiest rows. Infinite for g = 0.
    """
    p_in, p_out = smoothed_row(K, s, g)
    return math.inf if p_out == 0.0 else math.log(p_in / p_out)


def row_ce_at_gap(K: int, s: int, g: float, gap: float) -> float:
    """Cross-entropy of two-level logits with in/out gap ``gap`` against the smoothed row.

    ``CE(G) = -s p_in G + log(s e^G + K - s)`` (the logits' common shift cancels). Convex in G,
    minimised at ``optimal_gap``, where it equals ``row_entropy``.
    """
    p_in, _ = smoothed_row(K, s, g)
    if gap < 0:
        raise ValueError(f"gap must be >= 0 (got {gap})")
    # log(s e^G + K - s) written stably for large G.
    return -s * p_in * gap + gap + math.log(s + (K - s) * math.exp(-gap))


def row_entropy(K: int, s: int, g: float) -> float:
    """Entropy of the smoothed degree-s row: the cross-entropy floor of that row."""
    p_in, p_out = smoothed_row(K, s, g)
    h = -s * p_in * math.log(p_in)
    if p_out > 0:
        h -= (K - s) * p_out * math.log(p_out)
    return h


def max_gap(K: int, s: int, score: str, bound: float) -> float:
    """Largest in/out gap a score row can carry at inverse temperature 1, by score geometry.

    - ``softcap``: every score lies in (-B, B) (``B tanh(.)``), so the gap is below ``2B`` for any
      support size (an entrywise, L-infinity budget). A temperature tau scales it to ``2 B tau``.
    - ``rownorm``: each query's centred score row has 2-norm B (an L2 budget), so the gap is
      ``B sqrt(K / (s (K - s)))`` (``min_logit_norm`` inverted): wide rows get less gap.
    """
    _check_support(K, s)
    if bound <= 0:
        raise ValueError(f"bound must be > 0 (got {bound})")
    if score == "softcap":
        return 2.0 * bound
    if score == "rownorm":
        return bound * math.sqrt(K / (s * (K - s)))
    raise ValueError(f"no closed-form gap for score {score!r}; known: {', '.join(BOUNDED_SCORES)}")


def best_ce_under_bound(K: int, s: int, g: float, score: str, bound: float, tau: float = 1.0) -> float:
    """Best cross-entropy of a degree-s row when its logits are ``tau`` times a bounded score row.

    Vanilla attention is ``tau = 1``: this is the floor no vanilla layer with that score bound can
    beat, whatever its weights.
    """
    gap = min(optimal_gap(K, s, g), tau * max_gap(K, s, score, bound))
    return row_ce_at_gap(K, s, g, gap)


def predicted_inverse_temperature(
    K: int, s: int, g: float, score: str, bound: float, penalty: float, tau_max: float = 2.0
) -> float:
    """Inverse temperature tau a degree-s row settles at under a temperature budget.

    The SSA model of ``graph_transition`` minimises, per row, ``CE + penalty * tau^2`` with logits
    ``tau * (bounded score row)`` and ``tau`` in ``(0, tau_max)`` (``1 + tanh`` gives ``tau_max = 2``).
    The score pattern is free inside its bound, so the row's CE is ``best_ce_under_bound`` and the
    optimum is a one-dimensional problem, solved numerically here. As ``penalty -> 0`` it tends to
    the smallest tau that reaches the optimal gap: ``Delta(s) / max_gap(s)``. Hence:

    - softcap: ``tau ~ Delta(s) / 2B``, largest for low degree: fewer neighbours, lower temperature
      (the paper's Table 1 trend);
    - rownorm: ``tau ~ Delta(s) sqrt(s (K - s) / K) / B``, which *grows* with s for s << K: the trend
      reverses.

    At ``penalty = 0`` the two geometries differ. A row norm fixed at B leaves no slack: the optimal
    logits are unique up to a shift, so ``tau * B`` must equal their centred norm and tau is
    identified (``Delta(s) / max_gap(s)``). An entrywise bound leaves slack: the pattern can shrink
    inside its box, every tau in ``[Delta / 2B, tau_max)`` is optimal, and this returns NaN (the
    temperature is identified only when it has a price).
    """
    if penalty < 0:
        raise ValueError(f"penalty must be >= 0 (got {penalty})")
    if tau_max <= 0:
        raise ValueError(f"tau_max must be > 0 (got {tau_max})")
    need = optimal_gap(K, s, g) / max_gap(K, s, score, bound)
    if penalty == 0.0:
        if score == "softcap" and need < tau_max:
            return math.nan
        return min(need, tau_max)

    def objective(tau: float) -> float:
        return best_ce_under_bound(K, s, g, score, bound, tau) + penalty * tau * tau

    # The objective is increasing beyond ``need`` (CE is flat there, the penalty grows), so the
    # minimiser lies in (0, min(need, tau_max)].
    hi = min(need, tau_max)
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(objective, bounds=(1e-9, hi), method="bounded", options={"xatol": 1e-10})
    return float(res.x)


def predicted_temperature(
    K: int, s: int, g: float, score: str, bound: float, penalty: float, tau_max: float = 2.0
) -> float:
    """Temperature ``T = 1 / tau`` of ``predicted_inverse_temperature``."""
    return 1.0 / predicted_inverse_temperature(K, s, g, score, bound, penalty, tau_max)


# --- denoising: value selectivity (paper Table 2) ------------------------------
#
# A target mu ~ N(0, v I_d) is seen through n tokens x_i = mu + sigma_i g_i, g_i ~ N(0, I_d), with
# every sigma_i known to the estimator. All risks are per coordinate (MSE averaged over the d
# coordinates), for one context with the given noise levels unless the name says "expected".


def _precision(sigmas: Sequence[float]) -> np.ndarray:
    s = np.asarray(sigmas, dtype=float)
    if s.ndim != 1 or s.size == 0 or np.any(s <= 0):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers (got {sigmas})")
    return 1.0 / s**2


def denoising_mse_naive(sigmas: Sequence[float]) -> float:
    """Risk of the plain average: ``sum_i sigma_i^2 / n^2``."""
    w = _precision(sigmas)
    return float(np.sum(1.0 / w) / w.size**2)


def denoising_mse_convex(sigmas: Sequence[float]) -> float:
    """Risk of the best convex combination (inverse-variance weights): ``1 / S``, ``S = sum 1/sigma_i^2``.

    Weights that sum to one, as softmax attention's do, cannot shrink towards the prior mean; among
    them the inverse-variance weights are best, and softmax reaches them with class scores
    ``log(1/sigma_c^2)`` for every context at once.
    """
    return float(1.0 / np.sum(_precision(sigmas)))


def denoising_mse_bayes(sigmas: Sequence[float], prior_var: float = 1.0) -> float:
    """Bayes risk: the posterior mean ``sum_i (x_i / sigma_i^2) / (1/v + S)`` has risk ``1 / (1/v + S)``."""
    if prior_var <= 0:
        raise ValueError(f"prior_var must be > 0 (got {prior_var})")
    return float(1.0 / (1.0 / prior_var + np.sum(_precision(sigmas))))


def value_selective_bayes_parameters(n: int, sigmas: Sequence[float],
                                     prior_var: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Softmax weights ``r`` and value gains ``tau`` per noise class with which attention IS the Bayes estimator.

    With unnormalised weights ``r_c = 1/sigma_c^2 + 1/(n v)`` the normaliser of any context of n
    tokens is ``sum_j r_j = S + 1/v`` whatever its composition, and gains
    ``tau_c = (1/sigma_c^2) / r_c`` turn ``r_c tau_c / sum_j r_j`` into the Bayes weights
    ``(1/sigma_c^2) / (1/v + S)``. A single global gain cannot do this: it would have to follow S,
    which changes with the context's composition. (``tau_c`` lies in (0, 1), inside SSA's range.)
    """
    w = _precision(sigmas)
    r = w + 1.0 / (n * prior_var)
    return r, w / r


def noisy_count_pmf(n: int, p: float) -> np.ndarray:
    """P(k of n tokens are noisy), k = 0..n, each token noisy independently with probability p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1] (got {p})")
    from scipy.stats import binom

    return binom.pmf(np.arange(n + 1), n, p)


@dataclass(frozen=True)
class DenoisingRisks:
    """Expected per-coordinate risks over contexts with random noise classes (exact, by enumeration)."""

    naive: float  # plain average
    convex: float  # best convex weights, i.e. best softmax attention without a value gain
    vanilla: float  # best softmax attention with one global value gain (also: a query-side output gate)
    bayes: float  # Bayes posterior mean; reached exactly by value-selective attention and by a zero-valued sink
    vanilla_gain: float  # the global gain that attains ``vanilla``


def expected_denoising_mse(n: int, p: float, sigma_clean: float, sigma_noisy: float,
                           prior_var: float = 1.0) -> DenoisingRisks:
    """Exact expected risks when each of n tokens is noisy (sigma_noisy) with probability p, else clean.

    Enumerates the number k of noisy tokens (Binomial(n, p)). For vanilla attention with class
    weights r and one global gain g the risk of a context is ``(1-g)^2 v + g^2 V_k(r)`` with
    ``V_k(r)`` the variance of its convex combination. Inverse-variance weights minimise ``V_k`` for
    every k at once, hence ``E V_k`` too; with ``c = E[1/S]`` the best gain is ``g = v / (v + c)`` and
    the risk ``v c / (v + c)``. That is the best vanilla attention can do in this task (its scores
    come from a fixed query, so they see only each token's class and content); a query-side output
    gate is another global gain and has the same limit.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    if min(sigma_clean, sigma_noisy, prior_var) <= 0:
        raise ValueError("sigmas and prior_var must be > 0")
    pmf = noisy_count_pmf(n, p)
    k = np.arange(n + 1)
    S = (n - k) / sigma_clean**2 + k / sigma_noisy**2
    naive = float(pmf @ (((n - k) * sigma_clean**2 + k * sigma_noisy**2) / n**2))
    convex = float(pmf @ (1.0 / S))
    bayes = float(pmf @ (1.0 / (1.0 / prior_var + S)))
    return DenoisingRisks(
        naive=naive,
        convex=convex,
        vanilla=prior_var * convex / (prior_var + convex),
        bayes=bayes,
        vanilla_gain=prior_var / (prior_var + convex),
    )


# --- norms and spikiness: what a query temperature saves (paper Fig. p4) -------


def gap_for_accuracy(K: int, s: int, g: float, eps: float) -> float:
    """Smallest in/out gap whose two-level logits come within ``eps`` nats of a smoothed row's entropy.

    ``row_ce_at_gap`` falls monotonically from ``log K`` (gap 0) to the entropy (gap ``Delta(s)``),
    so the gap is the root of ``row_ce_at_gap(G) = entropy + eps`` on ``[0, Delta(s)]`` (0 if even
    the uniform row is within eps).
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (got {eps})")
    target = row_entropy(K, s, g) + eps
    if row_ce_at_gap(K, s, g, 0.0) <= target:
        return 0.0
    hi = optimal_gap(K, s, g)
    if not math.isfinite(hi):  # g = 0: the CE keeps falling; bracket the root by doubling
        hi = 1.0
        while row_ce_at_gap(K, s, g, hi) > target:
            hi *= 2.0
    from scipy.optimize import brentq

    return brentq(lambda G: row_ce_at_gap(K, s, g, G) - target, 0.0, hi, xtol=1e-12)


def min_norm_for_accuracy(K: int, s: int, g: float, eps: float) -> float:
    """Smallest 2-norm of a logit row whose CE to the smoothed degree-s row is within eps of its floor.

    For a fixed norm the best CE is reached by two-level logits (``best_ce_under_norm``), so the
    answer is ``min_logit_norm(K, s, gap_for_accuracy(...))``. For s << K it grows with s: wide rows
    need more norm for the same accuracy, even though they need a smaller gap.
    """
    return min_logit_norm(K, s, gap_for_accuracy(K, s, g, eps))


def query_norm_lower_bound(K: int, s: int, g: float, eps: float, sigma_max: float, tau_max: float = 1.0) -> float:
    """Lower bound on a query's key-space norm ``||W^T x_t||`` for eps-accurate rows.

    The logit row of query t is ``X W^T x_t`` (X: the K key embeddings), so
    ``||logits|| <= sigma_max(X) ||W^T x_t||`` and ``||W^T x_t|| >= min_norm_for_accuracy / sigma_max``.
    A query temperature tau <= tau_max multiplies the logits, dividing the bound by tau_max; more to
    the point, it lets the norm stop depending on the row's degree. Vanilla attention is
    ``tau_max = 1``. Exact for orthonormal (one-hot) embeddings, a bound otherwise.
    """
    if sigma_max <= 0 or tau_max <= 0:
        raise ValueError("sigma_max and tau_max must be > 0")
    return min_norm_for_accuracy(K, s, g, eps) / (sigma_max * tau_max)


# --- dilution: one relevant token among n (paper "Proposition 2", imbalanced tokens) ------------------


def position_scale(n, c: float):
    """``tau_pos(n) = 1 + c log n``: the position temperature's inverse temperature at n keys."""
    return 1.0 + c * np.log(np.asarray(n, dtype=float))


def dilution_mass(n, gap: float, c: float = 0.0):
    """Attention on one relevant key whose logit exceeds each of the other ``n - 1`` by ``gap``.

    With the logits scaled by ``tau_pos(n) = 1 + c log n``:
    ``a*(n) = 1 / (1 + (n - 1) exp(-tau_pos(n) gap)) = 1 / (1 + (n - 1) n^(-c gap) e^(-gap))``.
    For ``c gap < 1`` it tends to 0 as n grows (dilution); at ``c gap = 1`` to ``1 / (1 + e^-gap)``;
    above, to 1. Vectorised over n.
    """
    n = np.asarray(n, dtype=float)
    if np.any(n < 1):
        raise ValueError("n must be >= 1")
    return 1.0 / (1.0 + (n - 1.0) * np.exp(-position_scale(n, c) * gap))


def critical_mass(n, gamma: float, gap):
    """Attention on one key whose bounded score exceeds each of the other ``n - 1`` by ``gap``, every
    score multiplied by ``gamma log n`` (critical attention scaling; Chen, Lin, Polyanskiy and Rigollet,
    arXiv 2510.05554, 2025): ``1 / (1 + (n - 1) n^(-gamma gap))``, ``dilution_mass`` at the logit gap
    ``gamma gap log n``. For ``gamma gap < 1`` it tends to 0 as n grows, for ``gamma gap > 1`` to 1:
    the transition is at ``gamma = 1 / gap``. Vectorised over n and gap."""
    n = np.asarray(n, dtype=float)
    return dilution_mass(n, gamma * np.asarray(gap, dtype=float) * np.log(n))


def critical_log_odds(n, gamma: float, gap):
    """The log odds against the needle of ``critical_mass``, ``log(n - 1) - gamma gap log n``, exact in
    float64 however close the mass is to 1."""
    n = np.asarray(n, dtype=float)
    return np.log(n - 1.0) - gamma * np.asarray(gap, dtype=float) * np.log(n)


def off_needle_exponent(log_odds, n) -> float:
    """The least-squares slope of the log odds against the needle, ``log((1 - mass) / mass)``, on
    ``log n``: how the odds grow with the context. For ``critical_mass`` it tends to ``1 - gamma gap``
    as n grows: positive where the needle dilutes, negative where attention concentrates on it."""
    log_odds, n = np.asarray(log_odds, dtype=float), np.asarray(n, dtype=float)
    if log_odds.shape != n.shape or n.size < 2:
        raise ValueError("need one log odds per length, at two lengths or more")
    return float(np.polyfit(np.log(n), log_odds, 1)[0])


def critical_gamma(gap: float, fit_lengths, gammas) -> float:
    """The transition of ``critical_mass`` at a fixed ``gap``, read as a measurement reads it: the gamma
    where the off-needle exponent fitted over ``fit_lengths`` (``off_needle_exponent`` of
    ``critical_log_odds``) crosses 0 on the grid ``gammas`` (``crossing``). The exponent is
    ``a - gamma gap`` with ``a`` the slope of ``log(n - 1)`` on ``log n`` (just above 1), so this is
    ``a / gap`` up to the grid's interpolation; ``1 / gap`` in the large-n limit."""
    n = np.asarray(fit_lengths, dtype=float)
    g = np.asarray(gammas, dtype=float)
    return crossing(g, [off_needle_exponent(critical_log_odds(n, x, gap), n) for x in g])


def crossing(x, y) -> float:
    """Where a sequence ``y`` over increasing ``x`` first changes sign from positive to non-positive,
    linearly interpolated in ``log x``; NaN if it never does."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    for i in range(len(x) - 1):
        if y[i] > 0 >= y[i + 1]:
            t = y[i] / (y[i] - y[i + 1])
            return float(np.exp(np.log(x[i]) + t * (np.log(x[i + 1]) - np.log(x[i]))))
    return math.nan


def gap_needed(n, eps: float):
    """The gap that leaves mass ``1 - eps`` on the relevant key among n: ``log((n - 1)(1 - eps) / eps)``.

    It grows like ``log n``: no fixed gap keeps the mass as the context grows.
    """
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1) (got {eps})")
    n = np.asarray(n, dtype=float)
    if np.any(n < 2):
        raise ValueError("n must be >= 2 (with one key the mass is 1 at any gap)")
    return np.log((n - 1.0) * (1.0 - eps) / eps)


def effective_gap(mass, n):
    """The gap that a measured mass on one key among n implies: ``logit(mass) + log(n - 1)``.

    The inverse of ``dilution_mass`` at ``c = 0`` (``mass / (1 - mass) = e^gap / (n - 1)``). Constant
    in n for a layer that dilutes (a fixed gap); rising like ``c gap log n`` for one whose logits
    scale with ``1 + c log n``.
    """
    mass, n = np.asarray(mass, dtype=float), np.asarray(n, dtype=float)
    return np.log(mass / (1.0 - mass)) + np.log(n - 1.0)


def dilution_mass_moments(n, relevant_logit, log_mean_exp, log_mean_exp2):
    """Expected attention on the relevant key among n whose ``n - 1`` distractors' logits z are drawn
    independently, from the moments ``log E[e^z]`` and ``log E[e^2z]`` (log domain: no overflow).

    With ``S`` the sum of the distractors' ``e^z``, the mass is ``f(S) = 1 / (1 + S e^-z*)``. Returned:
    ``f(E S)``, the equal-logit formula with the distractors' *mean of exp* as their level, and the
    second-order term ``f''(E S) Var(S) / 2 = a^3 (n - 1) Var(e^z) e^(-2 z*)``, which vanishes like
    1/n (the gap the model effectively has is ``z* - log E[e^z]``). Vectorised.
    """
    n = np.asarray(n, dtype=float)
    z, m1, m2 = (np.asarray(v, dtype=float) for v in (relevant_logit, log_mean_exp, log_mean_exp2))
    a = 1.0 / (1.0 + (n - 1.0) * np.exp(m1 - z))
    var_rel = np.exp(m2 - 2 * z) - np.exp(2 * (m1 - z))  # Var(e^z) e^(-2 z*)
    return a, a**3 * (n - 1.0) * var_rel


def dilution_mass_mixed(n, relevant_logit: float, distractor_logits, weights=None, scale: float = 1.0):
    """``dilution_mass_moments`` for distractor logits drawn from the levels ``distractor_logits`` with
    probabilities ``weights`` (default uniform), every logit multiplied by ``scale`` (a strategy's
    inverse temperature at n): ``(first_order, correction)``."""
    z = np.asarray(distractor_logits, dtype=float) * scale
    w = np.full(z.shape, 1.0 / z.size) if weights is None else np.asarray(weights, dtype=float)
    lse = lambda v: v.max() + np.log((w * np.exp(v - v.max())).sum())  # noqa: E731
    return dilution_mass_moments(n, scale * relevant_logit, lse(z), lse(2 * z))


# --- one global temperature for every row (paper Table 1's competitor; the `global` strategy) ---------


def best_global_inverse_temperature(K: int, degrees, g: float, score: str, bound: float, penalty: float,
                                    tau_max: float) -> tuple[float, float]:
    """The single inverse temperature shared by every row that minimises the mean over rows of
    ``best_ce_under_bound(K, s, g, score, bound, tau) + penalty tau^2``, on ``(0, tau_max]``; returns
    ``(tau, mean CE at tau)``. One scale for all rows: under an entrywise bound a row that needs less
    gap than ``2 B tau`` shrinks its own pattern inside the box, so a single tau large enough for the
    sparsest row serves them all (then the price alone decides). Bounded score geometries only."""
    from scipy.optimize import minimize_scalar

    degrees = [int(s) for s in degrees]
    ce = lambda t: float(np.mean([best_ce_under_bound(K, s, g, score, bound, t) for s in degrees]))  # noqa: E731
    res = minimize_scalar(lambda t: ce(t) + penalty * t * t, bounds=(1e-3, tau_max), method="bounded",
                          options={"xatol": 1e-10})
    return float(res.x), ce(float(res.x))


# --- specificity: similar queries that need different sparsity (the paper's norm argument, Fig. p4) ----


def specificity_min_norm_sq(z_norm_sq: float, beta_a: float, beta_b: float, rho: float,
                            tau_a: float = 1.0, tau_b: float = 1.0) -> float:
    """Least ``||M||_F^2`` of a score map M (query space x K one-hot keys) whose logit rows, times the
    inverse temperatures ``tau_a``, ``tau_b``, reproduce ``softmax(beta_a z)`` for the unit query x_a and
    ``softmax(beta_b z)`` for the unit query x_b, with ``x_a . x_b = rho`` and z centred.

    Column by column, the least-norm m_k with ``x_a . m_k = l_a[k]``, ``x_b . m_k = l_b[k]`` costs
    ``v_k^T G^-1 v_k`` (G the queries' Gram matrix); the free constants of the softmax are best left at
    0 because z is centred. With ``u = beta_a / tau_a``, ``v = beta_b / tau_b``:
    ``||z||^2 (u^2 + v^2 - 2 rho u v) / (1 - rho^2)``; for vanilla (tau = 1) it grows like
    ``||z||^2 (beta_a - beta_b)^2 / (2 (1 - rho))`` as rho -> 1: similar queries that need different
    sparsity cost unbounded norm.
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must lie in (-1, 1) (got {rho})")
    u, v = beta_a / tau_a, beta_b / tau_b
    return z_norm_sq * (u * u + v * v - 2.0 * rho * u * v) / (1.0 - rho * rho)


def specificity_min_norm(z_norm_sq: float, beta_a: float, beta_b: float, rho: float, strategy: str,
                         tau_max: float = 2.0) -> float:
    """Least ``||M||_F`` for the two targets of ``specificity_min_norm_sq`` when the temperatures are
    chosen freely in ``(0, tau_max]``: ``vanilla`` (tau = 1), ``global`` (one tau for both queries) or
    ``token`` (one tau per query, as SSA's token term; betas > 0).

    global: both rows scale alike, so the best is ``tau = tau_max`` and the cost is vanilla's divided by
    ``tau_max^2``: it still grows like ``1 / (1 - rho)``. token: with ``u >= u0 = beta_a / tau_max`` and
    ``v >= v0 = beta_b / tau_max`` the convex quadratic is least on the boundary: if ``rho p >= q``
    (``p >= q`` the two lower limits) at ``(p, rho p)`` with cost ``||z||^2 p^2``, bounded as rho -> 1;
    otherwise at ``(p, q)``.
    """
    if strategy == "vanilla":
        return math.sqrt(specificity_min_norm_sq(z_norm_sq, beta_a, beta_b, rho))
    if strategy == "global":
        return math.sqrt(specificity_min_norm_sq(z_norm_sq, beta_a, beta_b, rho)) / tau_max
    if strategy == "token":
        if beta_a <= 0 or beta_b <= 0:
            raise ValueError("the token closed form needs beta_a, beta_b > 0")
        p, q = max(beta_a, beta_b) / tau_max, min(beta_a, beta_b) / tau_max
        if rho * p >= q:
            return math.sqrt(z_norm_sq) * p
        return math.sqrt(specificity_min_norm_sq(z_norm_sq, p, q, rho))
    raise ValueError(f"unknown strategy {strategy!r}; choose vanilla, global or token")


def _softmax_rows(w: np.ndarray) -> np.ndarray:
    e = np.exp(w - w.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl_rows(t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """KL(t || softmax(w)) over the last axis (t > 0)."""
    logp = w - w.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return (t * (np.log(t) - logp)).sum(-1)


class _FrontierProblem:
    """N penalised problems ``KL_a + KL_b + lam Q(a, b)`` of ``specificity_frontier``, over rows w (N, 2, K):
    the targets t (N, 2, K), and Q's Hessian / 2 on (a, b), ``c [[I, -rho I], [-rho I, I]]``."""

    def __init__(self, t: np.ndarray, rho: np.ndarray) -> None:
        self.t, self.rho = t, rho
        self.N, _, self.K = t.shape
        N, K = self.N, self.K
        self.c = 1.0 / (1.0 - rho**2)  # (N,)
        self.eye = np.eye(K)
        self.Qh = np.zeros((N, 2 * K, 2 * K))
        self.Qh[:, :K, :K] = self.Qh[:, K:, K:] = self.c[:, None, None] * self.eye
        self.Qh[:, :K, K:] = self.Qh[:, K:, :K] = (-rho * self.c)[:, None, None] * self.eye

    def qform(self, w: np.ndarray) -> np.ndarray:
        a, b = w[:, 0], w[:, 1]
        return self.c * ((a * a).sum(-1) + (b * b).sum(-1) - 2 * self.rho * (a * b).sum(-1))

    def kl(self, w: np.ndarray) -> np.ndarray:
        return _kl_rows(self.t, w).sum(-1)

    def _newton_step(self, lam: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Newton's direction (N, 2, K) for ``KL + lam Q`` at w, and its decrement (N,)."""
        N, K = self.N, self.K
        p = _softmax_rows(w)
        grad = (p - self.t).reshape(N, 2 * K) + 2 * lam[:, None] * np.einsum("nij,nj->ni", self.Qh, w.reshape(N, 2 * K))
        H = 2 * lam[:, None, None] * self.Qh
        for s in range(2):  # the softmax Hessian of each row: diag(p) - p p^T
            blk = slice(s * K, (s + 1) * K)
            H[:, blk, blk] += np.einsum("nk,kl->nkl", p[:, s], self.eye) - p[:, s, :, None] * p[:, s, None, :]
        step = np.linalg.solve(H, grad[..., None])[..., 0].reshape(N, 2, K)
        return step, (grad * step.reshape(N, 2 * K)).sum(-1)

    def solve(self, lam: np.ndarray, w: np.ndarray, newton_steps: int) -> np.ndarray:
        """Damped Newton on ``KL + lam Q`` from w (N, 2, K)."""
        F = self.kl(w) + lam * self.qform(w)
        for _ in range(newton_steps):
            step, decrement = self._newton_step(lam, w)
            if np.all(decrement <= 1e-13 * (1.0 + np.abs(F))):  # F within ~1e-13 of its least value
                break
            eta = np.ones(self.N)
            for _ in range(30):  # backtracking: keep each problem's objective from rising
                cand = w - eta[:, None, None] * step
                Fc = self.kl(cand) + lam * self.qform(cand)
                bad = Fc > F - 0.25 * eta * decrement
                if not bad.any():
                    break
                eta = np.where(bad, eta / 2, eta)
            else:  # every halving used: evaluate the last step lengths
                cand = w - eta[:, None, None] * step
                Fc = self.kl(cand) + lam * self.qform(cand)
            ok = Fc <= F
            w = np.where(ok[:, None, None], cand, w)
            F = np.where(ok, Fc, F)
        return w


def specificity_frontier(z: np.ndarray, beta_a, beta_b, rho, excess, *, newton_steps: int = 60,
                         bisections: int = 60) -> np.ndarray:
    """The least ``||M||_F`` of a score map (vanilla: tau = 1) whose two rows, for unit queries at cosine
    ``rho``, miss the targets ``softmax(beta_a z)``, ``softmax(beta_b z)`` by at most ``excess`` in
    total: ``KL(t_a || softmax(a)) + KL(t_b || softmax(b)) <= excess``. The frontier of
    ``specificity_min_norm`` (its ``excess -> 0`` limit); divide by tau_max for one global temperature
    in ``(0, tau_max]``, which scales both rows alike.

    Batched over N problems: z (N, K), the others broadcastable to (N,). A convex program, solved
    numerically: for a multiplier lam the penalised problem ``KL_a + KL_b + lam Q(a, b)``, with
    ``Q = (|a|^2 + |b|^2 - 2 rho a.b) / (1 - rho^2)`` the least ``||M||^2`` that gives rows a and b
    (``specificity_min_norm_sq``; Q is least at centred rows, where the optimum sits), is strictly convex
    and solved by damped Newton; the total KL at its optimum rises with lam, and lam is bisected to meet
    ``excess``. The value returned is ``sqrt(Q)`` at the side of the bisection whose KL exceeds
    ``excess``: a lower bound on the least norm up to Newton's accuracy (0 where the flat rows already
    meet the budget).
    """
    z = np.atleast_2d(np.asarray(z, dtype=float))
    N, K = z.shape
    bc = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (N,)).copy()  # noqa: E731
    beta_a, beta_b, rho, excess = bc(beta_a), bc(beta_b), bc(rho), bc(excess)
    if np.any(np.abs(rho) >= 1):
        raise ValueError("rho must lie in (-1, 1)")
    if np.any(excess < 0):
        raise ValueError("excess must be >= 0")
    t = np.stack([_softmax_rows(beta_a[:, None] * z), _softmax_rows(beta_b[:, None] * z)], 1)  # (N, 2, K)
    prob = _FrontierProblem(t, rho)

    # bisect log lam: small lam reproduces the targets closely (large norm); large lam flattens them
    lo, hi = np.full(N, math.log(1e-16)), np.full(N, math.log(1e4))
    w_lo = prob.solve(np.exp(lo), np.stack([beta_a[:, None] * z, beta_b[:, None] * z], 1), newton_steps)
    w_hi = prob.solve(np.exp(hi), np.zeros((N, 2, K)), newton_steps)
    for _ in range(bisections):
        mid = (lo + hi) / 2
        w_mid = prob.solve(np.exp(mid), (w_lo + w_hi) / 2, newton_steps)
        over = prob.kl(w_mid) > excess  # too flat: lower lam
        hi, w_hi = np.where(over, mid, hi), np.where(over[:, None, None], w_mid, w_hi)
        lo, w_lo = np.where(over, lo, mid), np.where(over[:, None, None], w_lo, w_mid)
    out = np.sqrt(np.maximum(prob.qform(w_hi), 0.0))
    flat_ok = prob.kl(np.zeros((N, 2, K))) <= excess
    return np.where(flat_ok, 0.0, out)


# max of GELU'(x) = Phi(x) + x phi(x), reached at x = sqrt(2) (where GELU'' = phi(x) (2 - x^2) = 0)
GELU_LIPSCHITZ = 0.5 * (1.0 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(2.0 * math.pi)


def token_swing_min_gain(swing: float, rho: float) -> float:
    """The least ``|u| ||W_q||_2`` with which SSA's token term ``u . GELU(W_q^T x)`` can differ by ``swing``
    between two unit queries at cosine rho: ``swing / (L sqrt(2 (1 - rho)))``, L the Lipschitz constant
    of GELU. What a token temperature pays instead of vanilla's ``||z|| |beta_a - beta_b| /
    sqrt(2 (1 - rho))``: the same growth in rho, but set by the swing of tanh's argument (O(1)) rather
    than by the pattern's norm times the contrast. A lower bound (GELU is not linear), not an optimum.
    """
    if not -1.0 <= rho < 1.0:
        raise ValueError(f"rho must lie in [-1, 1) (got {rho})")
    return abs(swing) / (GELU_LIPSCHITZ * math.sqrt(2.0 * (1.0 - rho)))
