"""norm_spikiness: measurements on hand-built matrices, the norm bound, and a quick run against theory."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import log_softmax

from ssa_theory import measures, theory
from ssa_theory.config import ConfigError
from ssa_theory.experiments import norm_spikiness as ns
from ssa_theory.seeding import Members


# --- measurements on hand-built matrices -----------------------------------------------------------


def test_token_norms_known_answers():
    W = torch.diag(torch.tensor([2.0, 3.0]))
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1 / math.sqrt(2), 1 / math.sqrt(2)]])
    torch.testing.assert_close(measures.token_norms(W, X), torch.tensor([2.0, 3.0, math.sqrt(13 / 2)]))
    # ||W^T x||, not ||W x||: a non-symmetric W tells them apart
    W = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # x^T W = (0, x_0)
    torch.testing.assert_close(measures.token_norms(W, torch.tensor([[1.0, 0.0], [0.0, 1.0]])), torch.tensor([1.0, 0.0]))


def test_qk_matrix_is_the_score_bilinear_form():
    g = torch.Generator().manual_seed(0)
    wq, wk = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    x, y = torch.randn(5, generator=g), torch.randn(5, generator=g)
    W = measures.qk_matrix(wq, wk, 4)
    torch.testing.assert_close(x @ W @ y, (x @ wq) @ (y @ wk) / 2.0)


def test_spikiness_known_answers():
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1]])
    expected = torch.tensor([0.0, math.log(4), math.log(2), math.log(4) + (0.7 * math.log(0.7) + 0.3 * math.log(0.1))])
    torch.testing.assert_close(measures.spikiness(probs), expected)
    torch.testing.assert_close(measures.max_prob(probs), torch.tensor([0.25, 1.0, 0.5, 0.7]))


# --- the closed-form companion -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 300).flatmap(lambda K: st.tuples(st.just(K), st.integers(1, K - 1))), st.floats(1e-3, 0.5),
       st.floats(1e-4, 2.0))
def test_gap_for_accuracy_reaches_exactly_that_accuracy(Ks, g, eps):
    K, s = Ks
    G = theory.gap_for_accuracy(K, s, g, eps)
    target = theory.row_entropy(K, s, g) + eps
    if G == 0.0:
        assert theory.row_ce_at_gap(K, s, g, 0.0) <= target
    else:
        assert theory.row_ce_at_gap(K, s, g, G) == pytest.approx(target, abs=1e-9)
        assert G <= theory.optimal_gap(K, s, g) + 1e-9
        assert theory.gap_for_accuracy(K, s, g, eps * 1.5) <= G  # looser accuracy, smaller gap


@settings(max_examples=12, deadline=None)
@given(st.integers(3, 7).flatmap(lambda K: st.tuples(st.just(K), st.integers(1, K - 1))), st.floats(0.02, 0.3),
       st.floats(0.005, 0.3))
def test_min_norm_for_accuracy_matches_constrained_minimisation(Ks, g, eps):
    K, s = Ks
    p_in, p_out = theory.smoothed_row(K, s, g)
    target = np.full(K, p_out)
    target[:s] = p_in
    limit = theory.row_entropy(K, s, g) + eps
    cons = [{"type": "ineq", "fun": lambda z: limit + (target * log_softmax(z)).sum()}]
    best = math.inf
    for x0 in (np.linspace(3, -3, K), np.r_[np.full(s, 2.0), np.full(K - s, -2.0)]):
        res = minimize(lambda z: z @ z, x0=x0, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
        if cons[0]["fun"](res.x) >= -1e-9:
            best = min(best, math.sqrt(res.fun))
    closed = theory.min_norm_for_accuracy(K, s, g, eps)
    assert best >= closed * (1 - 1e-6)
    assert best == pytest.approx(closed, rel=1e-4, abs=1e-6)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.02, 0.3))
def test_query_norm_bound_holds_for_random_embeddings(seed, eps):
    """For random key embeddings X, the least ||q|| with CE(softmax(X q)) within eps is >= the bound."""
    rng = np.random.default_rng(seed)
    K, m, s, g = 8, 5, 2, 0.1
    X = rng.normal(size=(K, m))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    p_in, p_out = theory.smoothed_row(K, s, g)
    target = np.full(K, p_out)
    target[:s] = p_in
    limit = theory.row_entropy(K, s, g) + eps
    cons = [{"type": "ineq", "fun": lambda q: limit + (target * log_softmax(X @ q)).sum()}]
    bound = theory.query_norm_lower_bound(K, s, g, eps, np.linalg.norm(X, 2))
    # A feasible start: the CE minimiser. Where even it misses the accuracy, no q reaches it and the
    # bound says nothing: such draws are rejected rather than passed vacuously.
    ce = lambda q: -(target * log_softmax(X @ q)).sum()  # noqa: E731
    best = minimize(ce, x0=np.zeros(m), method="BFGS")
    assume(cons[0]["fun"](best.x) > 0)
    feasible = 0
    for x0 in (best.x, best.x * 3, rng.normal(size=m) * 5):
        res = minimize(lambda q: q @ q, x0=x0, constraints=cons, method="SLSQP",
                       options={"ftol": 1e-12, "maxiter": 1000})
        if cons[0]["fun"](res.x) >= -1e-9:  # feasible: its norm cannot be below the bound
            feasible += 1
            assert math.sqrt(res.fun) >= bound * (1 - 1e-6)
    assert feasible, "no start reached a feasible point: the check would be vacuous"


# --- the experiment ---------------------------------------------------------------------------------


def test_config_refuses_impossible_values():
    with pytest.raises(ConfigError, match="max_degree=300 must be < n_tokens=256"):
        ns.NormSpikinessConfig(max_degree=300)
    with pytest.raises(ConfigError, match="accuracy"):
        ns.NormSpikinessConfig(accuracy=0.0)
    assert ns.NormSpikinessConfig(weight_decay=1e-4, sweep_weight_decay=(0.0, 1e-4)).weight_decays == [1e-4, 0.0]


def test_embeddings_are_fixed_unit_vectors_sharing_directions():
    cfg = ns.NormSpikinessConfig()
    X = ns.embeddings(cfg)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0)
    np.testing.assert_array_equal(X, ns.embeddings(cfg))
    cos = X @ X.T - np.eye(len(X))
    assert np.abs(cos).max() > 0.2  # not orthogonal: queries share directions


def test_ssa_starts_as_vanilla():
    cfg = ns.NormSpikinessConfig(n_tokens=32, max_degree=4, embed_dim=8, d_head=8)
    X = ns.embeddings(cfg)
    task, one = ns.Task.build(cfg), Members.of([0])
    np.testing.assert_array_equal(task.X, X)
    van = ns.build_model(ns.model_specs(cfg)["vanilla"], cfg, task, one)
    ssa = ns.build_model(ns.model_specs(cfg)["ssa"], cfg, task, one)
    with torch.no_grad():
        ssa.attn.parameters_of("ssa_pos", "q")["alpha"].fill_(-math.inf)  # position term off; u = 0 already
        torch.testing.assert_close(ssa(), van())
        torch.testing.assert_close(ns.token_norms(ssa), ns.token_norms(van))


@pytest.fixture(scope="module")
def quick(quick_run):
    _, path = quick_run("norm_spikiness")
    return path, json.loads((path / "metrics.json").read_text())


def test_every_trained_token_respects_the_norm_bound(quick):
    """The closed form is a lower bound at the accuracy each row reached: it must hold for every token."""
    path, m = quick
    pt = pd.read_csv(path / "tables" / "per_token.csv")
    assert pt.norm_over_bound.dropna().min() >= 1 - 1e-4
    assert m["min_norm_over_bound"] >= 1 - 1e-4


def test_metrics_match_the_per_token_table(quick):
    path, m = quick
    pt = pd.read_csv(path / "tables" / "per_token.csv")
    for model in ("vanilla", "ssa"):
        assert m[f"mean_norm_{model}"] == pytest.approx(pt[pt.model == model].norm.mean(), rel=1e-5)
        assert m[f"mean_spikiness_{model}"] == pytest.approx(pt[pt.model == model].spikiness.mean(), rel=1e-5)
        assert len(m["per_seed"][f"mean_norm_{model}"]) == 2 and len(m["ci95"][f"mean_norm_{model}"]) == 2
        assert m[f"ce_{model}"] >= m["ce_floor"] - 1e-5
