"""Every claim rule, from both sides: "reproduced" on data with the effect, "not reproduced" on data of
its control kind (no effect, or an effect below the declared size, or one that shows in the controls
too), and "inconclusive (one seed)" on one seed. The data are written as the experiments export them."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from ssa_theory import claims as cl
from ssa_theory.experiments import denoising, dilution, flipflop, graph_transition, norm_spikiness, passkey, specificity

JITTER = np.array([1.0, 1.01, 0.99, 1.005, 0.995])  # five seeds that agree closely


def _write(tmp_path, metrics, tables=None):
    d = tmp_path / "exported"
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(metrics))
    for name, df in (tables or {}).items():
        df.to_csv(d / f"{name}.csv", index=False)
    return d


def _seeds(x, n):
    return list((x * JITTER)[:n])


# --- the helpers ---------------------------------------------------------------------------------------


def test_smaller_needs_a_clear_effect_of_the_declared_size():
    b = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    assert cl.smaller(0.5 * b, b, 0.1).ok
    assert not cl.smaller(0.95 * b, b, 0.1).ok  # clear (every seed 5% lower), but under the 10% declared
    assert not cl.smaller(b, b, 0.1).ok
    assert not cl.smaller(b * np.array([0.5, 1.5, 0.6, 1.4, 1.0]), b, 0.1).ok  # no clear direction
    one = cl.smaller([0.5], [1.0], 0.1)
    assert not one.ok and np.isnan(one.lo) and cl.decide(one.ok, one.n) == cl.ONE_SEED


def test_a_rule_that_passes_its_placebo_gives_no_verdict():
    def claim(verdict, placebo):
        return cl.Claim("C0", "x", "p", "m", 0.5, 0.4, 0.6, verdict, placebo)

    assert claim("reproduced", "reproduced").verdict == cl.PLACEBO_PASSED
    assert claim("reproduced under softcap", "reproduced under softcap").verdict == cl.PLACEBO_PASSED
    assert claim("reproduced", "not reproduced").verdict == "reproduced"
    assert claim("reproduced", "").verdict == "reproduced"  # no placebo run: the rule's word stands
    assert claim("not reproduced", "reproduced").verdict == "not reproduced"


def test_larger_bounded_interval_stays_in_the_range_of_differences():
    e = cl.larger([1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], 0.05, bounded=True)
    assert 0.0 <= e.lo <= e.value <= e.hi <= 1.0 and e.ok
    assert not cl.larger([0.52, 0.53, 0.51], [0.5, 0.51, 0.49], 0.05).ok  # clear but below 0.05


# --- C1, C2: graph_transition ------------------------------------------------------------------------------


def _graph(tmp_path, ssa_excess, n=5, slope=0.06, trend="rises with degree (as in Table 1)", placebo=None,
           glob=None, scrambled=None):
    floor = 1.1
    twin = {} if placebo is None else {"ce_placebo": list(floor + np.roll(_seeds(placebo, n), 1)),
                                       "l1_placebo": _seeds(0.13 * placebo / 0.04, n)}
    for name, x in (("global", glob), ("scrambled", scrambled)):
        if x is not None:
            twin.update({f"ce_{name}": list(floor + np.roll(_seeds(x, n), 2)), f"l1_{name}": _seeds(0.13 * x / 0.04, n)})
    m = {"score": "softcap", "ce_floor": floor,
         "per_seed": {"ce_vanilla": list(floor + np.array(_seeds(0.04, n))),
                      "ce_ssa": list(floor + np.array(_seeds(ssa_excess, n))[::-1]),
                      "l1_vanilla": _seeds(0.13, n), "l1_ssa": _seeds(0.13 * ssa_excess / 0.04, n),
                      "temperature_slope": _seeds(slope, n), **twin},
         "trend_by_geometry": {"softcap": trend, "rownorm": "falls with degree (reversed)"}}
    return graph_transition.claims(_write(tmp_path, m))


@pytest.mark.parametrize("ssa_excess,verdict", [(0.001, "reproduced"), (0.04, "not reproduced"),
                                                (0.038, "not reproduced")])  # 5% better: below the 10% declared
def test_c1(tmp_path, ssa_excess, verdict):
    c1, _ = _graph(tmp_path, ssa_excess)
    assert c1.verdict == verdict


@pytest.mark.parametrize("twin,placebo,verdict", [
    (0.04, "not reproduced", "reproduced"),  # a twin that learns as vanilla does
    (0.001, "reproduced", cl.PLACEBO_PASSED),  # a twin that beats vanilla: the rule would be at fault
])
def test_c1_placebo_goes_through_the_same_rule(tmp_path, twin, placebo, verdict):
    c1, _ = _graph(tmp_path, 0.001, placebo=twin)
    assert (c1.placebo, c1.verdict) == (placebo, verdict)
    assert _graph(tmp_path, 0.001)[0].placebo == ""  # no twin in the run: no placebo verdict


@pytest.mark.parametrize("scrambled,against,verdict,against_global", [
    # the scrambled twin learns as global does: it fails against global, and the selective claim stands
    (0.02, "not reproduced", "reproduced (as a temperature: the scrambled mechanism passes too)", "reproduced"),
    # the scrambled twin does as well as SSA: the rule cannot tell selectivity apart, and says so
    (0.001, "reproduced", "reproduced (as a temperature: the scrambled mechanism passes too)", cl.SCRAMBLED_PASSED),
    # the scrambled twin no better than vanilla: it fails both, and both verdicts stand
    (0.04, "not reproduced", "reproduced", "reproduced"),
])
def test_c1_reads_global_and_the_scrambled_twin_by_the_same_rule(tmp_path, scrambled, against, verdict, against_global):
    """The scrambled placebo can pass and can fail; where it passes, the verdict it shadows says so."""
    c1, _ = _graph(tmp_path, 0.001, glob=0.02, scrambled=scrambled)
    assert c1.scrambled_global == against
    assert (c1.verdict, c1.against_global) == (verdict, against_global)
    assert _graph(tmp_path, 0.001, glob=0.0011)[0].against_global == "not reproduced"  # global as good: no selectivity


def test_a_twin_that_reaches_vanilla_s_optimum_is_labelled_so():
    v = np.array([0.04, 0.041, 0.039])
    assert cl.twin_reading("not reproduced", v * (1 + 1e-5), v) == cl.DETERMINISTIC
    assert cl.twin_reading("not reproduced", v * 1.01, v) == "not reproduced"  # it sampled noise: a real placebo


def test_spread_words_say_when_ssa_acted_as_one_temperature():
    assert cl.spread_words([0.01, 0.02]).endswith("SSA acted as a global temperature")
    assert "global" not in cl.spread_words([0.2, 0.3])
    assert cl.spread_words([]) == ""
    np.testing.assert_allclose(cl.coefficient_of_variation(np.array([[1.0, 1.0], [1.0, 3.0]])), [0.0, 0.5])


def test_null_runs_count_the_rule_s_false_positives():
    x = np.arange(40.0)
    assert cl.null_runs(x, 5, lambda a, b: True) == (4, 4)
    assert cl.null_runs(x, 5, lambda a, b: a.mean() > b.mean()) == (0, 4)  # group a always precedes group b
    assert cl.null_runs(x, 5, lambda a: a.mean() > 20, paired=False) == (4, 8)  # one group per run
    power = cl.calibrate(np.linspace(-1, 1, 8), lambda d: cl.clearly_above(d, 0.1), 0.5, "test")
    cal = cl.with_null_runs(power, 1, 20, "null runs")
    assert (cal.fpr, cal.power) == (0.05, power.power) and cal.fpr_lo > 0 and "1/20 null runs" in cal.how


def test_c1_c2_one_seed(tmp_path):
    c1, c2 = _graph(tmp_path, 0.001, n=1)
    assert c1.verdict == c2.verdict == cl.ONE_SEED


def test_c2_follows_the_trend_rule(tmp_path):
    _, c2 = _graph(tmp_path, 0.001)
    assert c2.verdict == "reproduced under softcap; reversed under rownorm"
    _, c2 = _graph(tmp_path, 0.001, trend="no clear trend (CI spans 0, or the change is below 0.01)")
    assert c2.verdict.startswith("not reproduced under softcap")


def test_c2_placebo_reads_the_temperatures_against_permuted_degrees(tmp_path):
    """T rising steeply with degree on every seed: the rule sees it, the placebo (degrees permuted) must not;
    without a per-node table there is no placebo ("")."""
    _, c2 = _graph(tmp_path, 0.001)
    assert c2.placebo == ""
    degrees = np.repeat(np.arange(1, 9), 4)
    rows = [{"score": "softcap", "seed": s, "node": k, "degree": d, "T": 0.5 + 0.06 * d + 0.001 * s}
            for s in range(5) for k, d in enumerate(degrees)]
    pd.DataFrame(rows).to_csv(tmp_path / "exported" / "per_node.csv", index=False)
    _, c2 = graph_transition.claims(tmp_path / "exported")
    assert c2.verdict.startswith("reproduced") and c2.placebo.startswith("not reproduced")


@pytest.mark.parametrize("slope,span,label", [
    (np.array([0.06, 0.061, 0.059]), 3.0, "rises"),
    (np.array([0.002, 0.0021, 0.0019]), 3.0, "no clear trend"),  # clear, but a rise of 0.006 < 0.01
    (np.array([0.06, -0.06, 0.001]), 3.0, "no clear trend"),
    (np.array([-0.06, -0.061, -0.059]), 3.0, "falls"),
    (np.array([0.06]), 3.0, "no clear trend (one seed)"),
])
def test_trend_label_needs_the_smallest_rise(slope, span, label):
    temps = np.full((len(slope), 4), 0.8)
    assert graph_transition.trend_label(slope, temps, span).startswith(label)


# --- C3: denoising --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vs,verdict", [(0.45, "reproduced"), (0.62, "not reproduced"),
                                        (0.55, "not reproduced")])  # 11% below vanilla: under the 20% declared
def test_c3(tmp_path, vs, verdict):
    m = {"regime": {"p_noisy": 0.9, "sigma_noisy": 10.0},
         "per_seed": {"mse_vanilla": _seeds(0.62, 5), "mse_naive": _seeds(5.6, 5), "mse_value_selective": _seeds(vs, 5)}}
    (c3,) = denoising.claims(_write(tmp_path, m))
    assert c3.verdict == verdict


@pytest.mark.parametrize("twin,placebo,verdict", [(0.62, "not reproduced", "reproduced"),
                                                (0.3, "reproduced", cl.PLACEBO_PASSED)])
def test_c3_placebo_goes_through_the_same_rule(tmp_path, twin, placebo, verdict):
    m = {"regime": {"p_noisy": 0.9, "sigma_noisy": 10.0},
         "per_seed": {"mse_vanilla": _seeds(0.62, 5), "mse_naive": _seeds(5.6, 5), "mse_value_selective": _seeds(0.45, 5),
                      "mse_placebo": list(np.roll(_seeds(twin, 5), 2))}}
    (c3,) = denoising.claims(_write(tmp_path, m))
    assert (c3.placebo, c3.verdict) == (placebo, verdict)


def test_c3_one_seed(tmp_path):
    m = {"regime": {"p_noisy": 0.9, "sigma_noisy": 10.0},
         "per_seed": {"mse_vanilla": [0.62], "mse_naive": [5.6], "mse_value_selective": [0.3]}}
    assert denoising.claims(_write(tmp_path, m))[0].verdict == cl.ONE_SEED


# --- C4: norm_spikiness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ssa_norm,ssa_spiky,n,verdict", [
    (5.3, 1.95, 5, "reproduced at every weight decay"),
    (19.5, 1.30, 5, "not reproduced"),  # the control kind: SSA as vanilla
    (5.3, 1.32, 5, "not reproduced"),  # smaller norm, but not spikier
    (5.3, 1.95, 1, cl.ONE_SEED),
])
def test_c4(tmp_path, ssa_norm, ssa_spiky, n, verdict):
    assert _norm_spikiness(tmp_path, ssa_norm, ssa_spiky, n).verdict == verdict


def _norm_spikiness(tmp_path, ssa_norm, ssa_spiky, n=5, twin=None):
    m = {"weight_decay": 1e-5, "per_seed": {"mean_norm_vanilla": _seeds(19.5, n), "mean_norm_ssa": _seeds(ssa_norm, n),
                                            "mean_spikiness_vanilla": _seeds(1.30, n),
                                            "mean_spikiness_ssa": _seeds(ssa_spiky, n)}}
    if twin is not None:
        m["per_seed"].update({"mean_norm_placebo": list(np.roll(_seeds(twin[0], n), 1)),
                              "mean_spikiness_placebo": list(np.roll(_seeds(twin[1], n), 3))})
    sweep = pd.DataFrame({"model": ["vanilla", "ssa"], "weight_decay": [0, 0], "mean_norm": [28.0, 7.0]})
    return norm_spikiness.claims(_write(tmp_path, m, {"weight_decay_sweep": sweep}))[0]


@pytest.mark.parametrize("twin,placebo,verdict", [
    ((19.5, 1.30), "not reproduced", "reproduced at every weight decay"),  # the twin as vanilla
    ((5.3, 1.30), "not reproduced", "reproduced at every weight decay"),  # smaller, not spikier: both tests must pass
    ((5.3, 1.95), "reproduced", cl.PLACEBO_PASSED),
])
def test_c4_placebo_goes_through_the_same_rule(tmp_path, twin, placebo, verdict):
    c4 = _norm_spikiness(tmp_path, 5.3, 1.95, twin=twin)
    assert (c4.placebo, c4.verdict) == (placebo, verdict)


# --- C5: dilution ---------------------------------------------------------------------------------------------


def _dilution(tmp_path, van_train, van_max, pos_max, glob_max, n=5):
    block = lambda t, x: {"per_seed": {"mass_at_train_len": _seeds(t, n), "mass_at_max_len": _seeds(x, n)}}  # noqa: E731
    m = {"max_length": 4096, "train_length": 16,
         "strategies": {"vanilla": block(van_train, van_max), "ssa_q_pos": block(0.9, pos_max), "global": block(0.9, glob_max)}}
    return dilution.claims(_write(tmp_path, m))[0]


def test_c5_reproduced_against_vanilla_and_against_global(tmp_path):
    c5 = _dilution(tmp_path, 0.92, 0.11, 0.8, 0.3)
    assert c5.verdict == "reproduced" and np.isclose(c5.value, 0.69, atol=0.01)
    assert c5.against_global.startswith("reproduced (+0.500")


def test_c5_control_kind_global_does_as_well(tmp_path):
    """A learned global scale keeps as much mass: the position term's gain over vanilla is no evidence of
    growth with n, and the verdict against global says so."""
    c5 = _dilution(tmp_path, 0.92, 0.11, 0.8, 0.79)
    assert c5.verdict == "reproduced"
    assert c5.against_global.startswith("dilution reproduced; the position term's growth with n does not keep")


def test_c5_no_dilution(tmp_path):
    assert _dilution(tmp_path, 0.12, 0.11, 0.8, 0.3).verdict.startswith("no dilution measured")


def test_c5_one_seed(tmp_path):
    assert _dilution(tmp_path, 0.92, 0.11, 0.8, 0.3, n=1).verdict == cl.ONE_SEED


# --- C6: specificity --------------------------------------------------------------------------------------------


def _specificity(tmp_path, ratio_hard, ratio_dis, ratio_flat, n=5, twin=None):
    """``twin``: the placebo's (hard, dissimilar, no contrast) excess over vanilla's (0.5 in every cell)."""
    glob = 0.3
    cell = lambda x: {"per_seed": {"excess": _seeds(x, n)}, "excess": x}  # noqa: E731
    cells = ("hard", "dissimilar", "no_contrast")
    m = {"cells": {"hard": {"rho": 0.99, "contrast": 8}, "dissimilar": {"rho": 0.0, "contrast": 8},
                   "no_contrast": {"rho": 0.99, "contrast": 1}},
         "strategies": {"global": {k: cell(glob) for k in cells}, "vanilla": {k: cell(glob) for k in cells},
                        "ssa_q_tok": {"hard": cell(glob * ratio_hard), "dissimilar": cell(glob * ratio_dis),
                                      "no_contrast": cell(glob * ratio_flat)}}}
    if twin is not None:
        m["strategies"].update({"vanilla": {k: cell(0.5) for k in cells},
                                "placebo": {k: cell(0.5 * r) for k, r in zip(cells, twin)}})
    return specificity.claims(_write(tmp_path, m))[0]


def test_c6_reproduced_as_an_interaction(tmp_path):
    c6 = _specificity(tmp_path, 0.4, 0.98, 0.97)
    assert c6.verdict.startswith("reproduced: token / vanilla excess 0.40 there")
    assert c6.against_global.startswith("reproduced: token / global excess 0.40 there")
    assert np.isclose(c6.value, 0.4 / 0.97, rtol=0.02)


def test_c6_control_kind_a_token_term_better_everywhere(tmp_path):
    """The old rule (a paired difference in the hard cell) passes here; the interaction must not."""
    c6 = _specificity(tmp_path, 0.5, 0.55, 0.5)
    assert c6.verdict.startswith("not reproduced") and c6.against_global.startswith("not reproduced")


def test_c6_control_kind_no_effect(tmp_path):
    c6 = _specificity(tmp_path, 1.0, 1.0, 1.0)
    assert c6.verdict.startswith("not reproduced") and c6.against_global.startswith("not reproduced")


@pytest.mark.parametrize("twin,placebo", [
    ((1.0, 1.0, 1.0), cl.DETERMINISTIC),  # the twin equals vanilla on every seed: it samples no noise
    ((0.5, 0.55, 0.5), "not reproduced: placebo / vanilla excess 0.50 there, 0.55 at rho = 0, 0.50 without contrast"),
    ((0.4, 0.98, 0.97), "reproduced: placebo / vanilla excess 0.40 there, 0.98 at rho = 0, 0.97 without contrast"),
])
def test_c6_placebo_reads_the_twin_against_vanilla_by_the_same_rule(tmp_path, twin, placebo):
    """The twin in the token term's place and vanilla in global's: global's own numbers play no part."""
    c6 = _specificity(tmp_path, 0.4, 0.98, 0.97, twin=twin)
    assert c6.placebo == placebo
    assert c6.against_global == "reproduced: token / global excess 0.40 there, 0.98 at rho = 0, 0.97 without contrast"
    if placebo.startswith("reproduced"):
        assert c6.verdict == cl.PLACEBO_PASSED
    else:
        assert c6.verdict.startswith("reproduced: token / vanilla excess 0.24 there")


def test_c6_one_seed(tmp_path):
    assert _specificity(tmp_path, 0.4, 0.98, 0.97, n=1).verdict == cl.ONE_SEED


# --- C7, C8: passkey; C9: flipflop ---------------------------------------------------------------------------------


def _passkey(tmp_path, van_max, ssa_max, learn=None):
    n = len(van_max)
    arm = lambda mx: {"1": {"acc_train": [1.0] * n, "acc_max": list(mx), "gap_slope": [0.0] * n}}  # noqa: E731
    m = {"digits": [1], "lengths": [128, 4096], "train_lengths": [32, 128],
         "strategies": {"vanilla": arm(van_max), "ssa": arm(ssa_max)},
         "learn": {"digits": 2, "lengths": [32, 64], "per_seed": learn or {}}}
    return passkey.claims(_write(tmp_path, m))


def test_c7_c8_control_kind_and_one_seed(tmp_path):
    same = {"steps": [800, 700, 900, 850, 760, 820, 790, 810], "reached": [1.0] * 8}
    c7, c8 = _passkey(tmp_path, (0.5, 0.55, 0.45), (0.5, 0.56, 0.44), learn={"vanilla": same, "ssa": same})
    assert c7.verdict == "not reproduced" and c8.verdict == "no clear difference"
    one = {"steps": [800], "reached": [1.0]}
    c7, c8 = _passkey(tmp_path, (0.5,), (0.9,), learn={"vanilla": one, "ssa": one})
    assert c7.verdict == cl.ONE_SEED and c8.verdict.startswith("not testable: 1 seeds, the rule needs 8")


def _flipflop(tmp_path, van, ssa, reads=400):
    """Per-seed glitch rates of each arm on the sparse set, as errors over ``reads`` reads a seed."""
    arm = lambda rates: {"errors": {"sparse": [round(r * reads) for r in rates]},  # noqa: E731
                         "reads": {"sparse": [reads] * len(rates)}}
    m = {"strategies": {"vanilla": arm(van), "ssa": arm(ssa)}, "tests": {"sparse": {"p_ignore": 0.99}}}
    return flipflop.claims(_write(tmp_path, m))[0]


def test_c9_control_kind_and_one_seed(tmp_path):
    assert _flipflop(tmp_path, [0.2, 0.3, 0.25], [0.2, 0.3, 0.25]).verdict == "not reproduced"
    assert _flipflop(tmp_path, [0.2, 0.3, 0.25], [0.05, 0.1, 0.08]).verdict == "reproduced"
    assert _flipflop(tmp_path, [0.2], [0.05]).verdict == cl.ONE_SEED


def test_calibration_from_both_sides():
    """A rule on per-seed differences: no false positives where the twin's noise is small against the
    threshold, full power at twice it; a noise as wide as the effect gives neither."""
    def passes(x):
        m, lo, _ = __import__("ssa_theory.stats", fromlist=["mean_ci"]).mean_ci(x)
        return m >= 0.05 and lo > 0

    tight = cl.calibrate(np.array([0.01, -0.01, 0.005, -0.005, 0.0, 0.01, -0.01, 0.0]), passes, 0.1, "test")
    assert tight.fpr == 0 and tight.power == 1 and tight.testable() and tight.fpr_hi > 0  # an interval with width
    wide = cl.calibrate(np.array([0.3, -0.3, 0.2, -0.25, 0.1, 0.35, -0.4, 0.0]), passes, 0.1, "test")
    assert wide.power < cl.MIN_POWER and not wide.testable()
    assert cl.gated("not reproduced", wide) == f"not testable (power {wide.power:.0%})"
    assert cl.gated("reproduced", wide) == "reproduced" and cl.gated("not reproduced", tight) == "not reproduced"
    assert cl.gated("not reproduced: clearly higher", wide) == f"not testable (power {wide.power:.0%}); clearly higher"
    assert cl.calibrate([0.1], passes, 0.1, "test") is None


def test_an_unbounded_interval_is_never_printed_as_evidence():
    c = cl.Claim("C", "x", "p", "m", 0.98, 0.5, math.inf, "v")
    assert "inf" not in c.interval() and "—" in c.interval()
    assert "—" in cl.Claim("C", "x", "p", "m", math.inf, math.inf, math.inf, "v").interval()


# --- every rule on simulated nulls: its false-positive rate -----------------------------------------------
# Each rule runs, through the experiment's own ``claims``, on N_NULL data sets with no effect, shaped like
# its committed input: the same number of seeds, the same measure, both arms drawn from the control arm's
# committed values (their centre and seed-to-seed spread, with a floor where the seeds agree exactly).
# "reproduced" on such data is a false positive; each rate is printed (pytest -s) and must be at most 5%.
# With 200 sets, a rule whose true rate is 2.5% (a one-sided 95% interval) passes with near certainty.

N_NULL = 200
COMMITTED = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments"


def _committed(name):
    return json.loads((COMMITTED / name / "metrics.json").read_text())


def _positive(rng, ref, floor=0.05):
    """Per-seed values of a positive measure like ``ref``: log-normal with ref's log mean and spread."""
    lr = np.log(np.asarray(ref, dtype=float))
    return list(np.exp(rng.normal(lr.mean(), max(lr.std(ddof=1), floor), lr.size)))


def _unit(rng, ref, floor=0.02):
    """Per-seed values of a measure in [0, 1] like ``ref`` (a mass): normal, clipped to the range."""
    x = np.asarray(ref, dtype=float)
    return list(np.clip(rng.normal(x.mean(), max(x.std(ddof=1), floor), x.size), 0.0, 1.0))


def _rate(rng, p, n, trials):
    """Per-seed rates of ``trials`` Bernoulli(p) outcomes each (accuracies, glitch rates)."""
    return list(rng.binomial(trials, p, n) / trials)


def _null_c1(rng, tmp_path):
    m = _committed("graph_transition")
    s, floor = m["per_seed"], m["ce_floor"]
    excess = np.asarray(s["ce_vanilla"]) - floor
    m = {**m, "per_seed": {**s, "ce_vanilla": list(floor + np.array(_positive(rng, excess))),
                           "ce_ssa": list(floor + np.array(_positive(rng, excess))),
                           "l1_vanilla": _positive(rng, s["l1_vanilla"]), "l1_ssa": _positive(rng, s["l1_vanilla"])}}
    return graph_transition.claims(_write(tmp_path, m))[0]


def _null_c2(rng, tmp_path):
    """The placebo of a slope: SSA's committed node temperatures against a random permutation of the
    nodes' degrees, per seed (no relation by construction), through the same trend rule."""
    m = _committed("graph_transition")
    nodes = pd.read_csv(COMMITTED / "graph_transition" / "per_node.csv")
    label = graph_transition.permuted_trend(nodes[nodes.score == m["score"]], lambda seed: rng)
    return graph_transition.claims(_write(tmp_path, {**m, "trend_by_geometry": {m["score"]: label}}))[1]


def _null_c3(rng, tmp_path):
    m = _committed("denoising")
    s = m["per_seed"]
    m = {**m, "per_seed": {**s, "mse_vanilla": _positive(rng, s["mse_vanilla"]),
                           "mse_value_selective": _positive(rng, s["mse_vanilla"])}}
    return denoising.claims(_write(tmp_path, m))[0]


def _null_c4(rng, tmp_path):
    m = _committed("norm_spikiness")
    s = m["per_seed"]
    m = {**m, "per_seed": {**s, "mean_norm_vanilla": _positive(rng, s["mean_norm_vanilla"]),
                           "mean_norm_ssa": _positive(rng, s["mean_norm_vanilla"]),
                           "mean_spikiness_vanilla": _positive(rng, s["mean_spikiness_vanilla"]),
                           "mean_spikiness_ssa": _positive(rng, s["mean_spikiness_vanilla"])}}
    sweep = pd.read_csv(COMMITTED / "norm_spikiness" / "weight_decay_sweep.csv")
    return norm_spikiness.claims(_write(tmp_path, m, {"weight_decay_sweep": sweep}))[0]


def _null_c5(rng, tmp_path):
    m = _committed("dilution")
    ref = m["strategies"]["global"]["per_seed"]["mass_at_max_len"]
    st = {k: {"per_seed": dict(v["per_seed"])} for k, v in m["strategies"].items()}
    st["ssa_q_pos"]["per_seed"]["mass_at_max_len"] = _unit(rng, ref)
    st["global"]["per_seed"]["mass_at_max_len"] = _unit(rng, ref)
    return dilution.claims(_write(tmp_path, {**m, "strategies": st}))[0]


def _null_c6(rng, tmp_path):
    """No interaction: the token term's excess is global's times the same random factor law in every cell."""
    m = _committed("specificity")
    g, t = m["strategies"]["global"], m["strategies"]["ssa_q_tok"]
    log_r = np.concatenate([np.log(np.asarray(t[k]["per_seed"]["excess"]) / np.asarray(g[k]["per_seed"]["excess"]))
                            for k in ("dissimilar", "no_contrast")])
    sd = max(log_r.std(ddof=1), 0.05)
    tok = dict(t)
    for k in ("hard", "dissimilar", "no_contrast"):
        cell = t[k]
        ge = np.asarray(g[k]["per_seed"]["excess"], dtype=float)
        te = ge * np.exp(rng.normal(0.0, sd, ge.size))
        tok[k] = {**cell, "per_seed": {**cell["per_seed"], "excess": list(te)}, "excess": float(te.mean())}
    return specificity.claims(_write(tmp_path, {**m, "strategies": {**m["strategies"], "ssa_q_tok": tok}}))[0]


PASSKEY_CONTEXTS = 40  # evaluation contexts per seed at the longest length in the committed run (5 depths x 8)


def _null_c7(rng, tmp_path, prefix=""):
    """Both arms retrieving alike, at an accuracy where the rule can decide (the committed vanilla's 0.99
    in the free geometry leaves it no headroom: "not testable"), over the committed run's seeds and
    contexts; ``prefix`` names the geometry's models (``passkey.COSINE``: C7b)."""
    m = _committed("passkey")
    d = str(max(m["digits"]))
    n = len(m["seeds"])
    st = {prefix + k: {d: {**m["strategies"][prefix + k][d], "acc_max": _rate(rng, 0.75, n, PASSKEY_CONTEXTS)}}
          for k in ("vanilla", "ssa")}
    return [c for c in passkey.claims(_write(tmp_path, {**m, "strategies": st})) if c.id.startswith("C7")][0]


def _null_c8(rng, tmp_path):
    """Two identical learners under the rule's preconditions (8 seeds; a task learned in about 800 steps),
    each seed's steps log-normal with the spread seeds have (0.25), paired by seed, through the paired
    rule on per-seed log ratios."""
    learner = lambda: {"steps": list(np.exp(rng.normal(np.log(800.0), 0.25, 8))), "reached": [1.0] * 8}  # noqa: E731
    m = {"digits": [1], "lengths": [128, 4096], "train_lengths": [32, 128], "strategies": {},
         "learn": {"digits": 2, "lengths": [32, 64], "per_seed": {"vanilla": learner(), "ssa": learner()}}}
    return [c for c in passkey.claims(_write(tmp_path, m)) if c.id == "C8"][0]


def _null_c9(rng, tmp_path):
    """Both arms glitching alike, at 3% (above the rule's 1% floor), over 8 seeds of 330 sparse reads."""
    reads = np.full(8, 330)
    arm = lambda: {"errors": {"sparse": rng.binomial(reads, 0.03).tolist()}, "reads": {"sparse": reads.tolist()}}  # noqa: E731
    return flipflop.claims(_write(tmp_path, {"strategies": {"vanilla": arm(), "ssa": arm()},
                                             "tests": {"sparse": {"p_ignore": 0.99}}}))[0]


NULLS = {"C1": _null_c1, "C2": _null_c2, "C3": _null_c3, "C4": _null_c4, "C5": _null_c5, "C6": _null_c6,
         "C7": _null_c7, "C7b": lambda rng, tmp: _null_c7(rng, tmp, passkey.COSINE), "C8": _null_c8, "C9": _null_c9}
KNOWN_DEFECTS: dict[str, str] = {}  # rules that fail their null: the issue that fixes them; the test then flips (strict)


@pytest.mark.parametrize("claim", [pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN_DEFECTS[c], strict=True))
                                   if c in KNOWN_DEFECTS else c for c in NULLS])
def test_every_rule_passes_at_most_5_percent_of_simulated_nulls(claim, tmp_path):
    rng = np.random.default_rng(sorted(NULLS).index(claim))
    # C5's and C6's nulls put the claimed model level with global: they test the verdict against global
    field = "against_global" if claim in ("C5", "C6") else "verdict"
    verdicts = [getattr(NULLS[claim](rng, tmp_path / str(i)), field) for i in range(N_NULL)]
    rate = sum(v.startswith("reproduced") for v in verdicts) / N_NULL
    print(f"{claim}: 'reproduced' on {rate:.1%} of {N_NULL} simulated nulls")
    assert rate <= 0.05, f"{claim} says 'reproduced' on {rate:.1%} of {N_NULL} nulls"


@pytest.mark.parametrize("sign, by", [(1.0, 0.1), (-1.0, 0.25)])
def test_above_decides_every_resample_as_the_paired_test_does_one_at_a_time(sign, by):
    """``Above.many`` (calibrate's vectorised path) against ``clearly_above`` row by row, on resamples that
    straddle the threshold both ways."""
    rng = np.random.default_rng(0)
    samples = sign * (by + rng.normal(0.0, 0.2, (400, 6)))
    rule = cl.Above(by, sign)
    many = rule.many(samples)
    assert 0 < many.sum() < len(many)  # both outcomes occur
    assert many.tolist() == [cl.clearly_above(sign * row, by) for row in samples]
    assert not cl.Above(by).many(np.ones((3, 1))).any()  # one seed: no interval, never "reproduced"
