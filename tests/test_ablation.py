"""ablation: it covers every task that trains attention and every variant, and its cells are the tasks' own numbers."""

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory import registry
from ssa_theory.attention import VARIANTS
from ssa_theory.config import ConfigError
from ssa_theory.experiments import ablation, specificity
from ssa_theory.rundir import RunContext, load_frame, read_json

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


# experiments that are not (yet) tasks of the ablation, and why: adding one reruns the whole ablation
NOT_ABLATED = {"text": "a cell would train a character LM on real text for two minutes per variant (#36); "
                       "its column waits for the ablation's next rerun"}


def test_every_other_registered_experiment_is_a_task_of_the_ablation():
    others = [n for n in registry.names() if n != "ablation" and n not in NOT_ABLATED]
    assert all(registry.get(n).ablation is None for n in NOT_ABLATED)
    assert registry.with_ablation() == others
    assert ablation.AblationConfig().tasks == tuple(others)
    for n in others:
        assert registry.get(n).ablation is not None, n
    deps = ablation.depends(ablation.AblationConfig())
    for n in others:  # a task's new version must invalidate the ablation's cached run
        assert deps[f"experiment:{n}"] == registry.get(n).version


def test_config_refuses_unknown_names():
    with pytest.raises(ConfigError, match="did you mean 'ssa_q'"):
        ablation.AblationConfig(variants=("ssa_qq",))
    with pytest.raises(ConfigError, match="tasks"):
        ablation.AblationConfig(tasks=("graph",))
    assert ablation.describe("vanilla") == "none"
    assert ablation.describe("ssa_v_tok_noshare") == "v: tok, own projection"
    assert ablation.describe("ssa") == "q: pos+tok, v: pos+tok"


@pytest.fixture(scope="module")
def quick(quick_run):
    _, path = quick_run("ablation")
    return path


# The tests that read the quick ablation stay in the process that makes it (as test_cli's do): in
# another, a test waited on the run's lock for the whole run (20 s of a core idle).
ON_QUICK = pytest.mark.xdist_group("quick:ablation")


@ON_QUICK
def test_quick_run_fills_every_cell_and_neutral_variants_equal_vanilla(quick):
    cells = pd.read_csv(quick / "tables" / "cells.csv")
    cfg = ablation.AblationConfig(**registry.get("ablation").presets["quick"].overrides)
    assert len(cells) == len(cfg.variants) * len(registry.with_ablation())
    assert np.isfinite(cells["mean"]).all()
    # YaRN's factor is exactly 1 up to the training length: every task but the two that test past it
    # (dilution, critical) trains it as vanilla
    per_seed = load_frame(quick, "per_seed")
    for task in registry.with_ablation():
        y = per_seed[(per_seed.task == task) & (per_seed.variant == "yarn")].value.to_numpy()
        v = per_seed[(per_seed.task == task) & (per_seed.variant == "vanilla")].value.to_numpy()
        if task not in ("dilution", "critical"):
            np.testing.assert_array_equal(y, v)
    assert (quick / "figures" / "ablation.png").exists()


def test_a_cell_is_the_experiments_own_number(tmp_path, quick_run):
    """specificity's ablation hook, at the experiment's quick config, gives the quick run's hard-cell
    excess for the same variant and seeds (members are independent, so the other cells do not matter)."""
    _, path = quick_run("specificity")
    cfg = specificity.SpecificityConfig(**registry.get("specificity").presets["quick"].overrides)
    got = specificity.ablate(cfg, "ssa_q_tok", RunContext(tmp_path, [0, 1], torch.device("cpu"), quiet=True))
    d = load_frame(path, "per_seed")
    d = d[(d.strategy == "ssa_q_tok") & (d.rho == max(cfg.rhos)) & (d.contrast == max(cfg.contrasts))].sort_values("seed")
    np.testing.assert_allclose(got, d.excess.to_numpy(), rtol=1e-4)


def test_committed_table_covers_every_variant_on_every_task():
    m = read_json(ROOT / "experiments" / "ablation" / "metrics.json")
    assert sorted(m["tasks"]) == sorted(registry.with_ablation())
    for t in registry.with_ablation():
        assert sorted(m["tasks"][t]["variants"]) == sorted(VARIANTS), t
    table = pd.read_csv(ROOT / "experiments" / "ablation" / "ablation.csv")
    assert list(table.variant) == list(VARIANTS)


@ON_QUICK
def test_bounded_measures_keep_their_intervals_inside_0_1(quick):
    """dilution's, critical's, passkey's and flipflop's cells are fractions: their intervals are
    bootstraps over seeds, inside [0, 1]; the unbounded measures keep the t-interval."""
    table = pd.read_csv(quick / "tables" / "ablation.csv")
    bounded = [t for t in registry.with_ablation() if registry.get(t).ablation.bounded]
    assert set(bounded) == {"dilution", "critical", "passkey", "flipflop"}
    for t in bounded:
        lo, hi = table[f"{t}_lo"].dropna(), table[f"{t}_hi"].dropna()
        assert (lo >= 0).all() and (hi <= 1).all() and (lo <= table[t]).all(), t


def test_a_cell_against_a_vanilla_at_its_floor_has_no_finite_ratio():
    """passkey's vanilla can miss no passkey at all: its mean is 0, and a ratio to it is undefined
    (NaN) where the variant is at 0 too, infinite where it is not; nothing divides by zero."""
    zero = np.zeros(3)
    assert np.isnan(ablation._cell("passkey", "ssa", zero, zero, bounded=True)["vs_vanilla"])
    assert ablation._cell("passkey", "ssa", np.array([0.0, 0.1, 0.0]), zero, bounded=True)["vs_vanilla"] == np.inf
    assert ablation._cell("passkey", "ssa", np.array([0.2, 0.1]), np.array([0.4, 0.2]))["vs_vanilla"] == 0.5


def test_holm_adjusts_step_down_and_leaves_untested_cells_out():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    adj = ablation.holm(p)
    # four tests: 0.01 * 4, then max(0.04, 0.03 * 3), then max(0.09, 0.04 * 2), then 0.5
    assert np.allclose(adj[[0, 3, 1, 4]], [0.04, 0.09, 0.09, 0.5]) and np.isnan(adj[2])
    assert (adj[~np.isnan(adj)] >= p[~np.isnan(p)]).all()


def test_a_cell_reads_its_share_of_vanilla_gap_and_its_paired_test():
    van, x = np.array([1.0, 1.1, 0.9]), np.array([0.5, 0.56, 0.44])
    cell = ablation._cell("toy", "v", x, van, floor=0.0)
    assert np.isclose(cell["gap_closed"], 0.5) and cell["p"] < 0.05
    assert np.isnan(ablation._cell("toy", "vanilla", van, van)["p"])  # vanilla is never tested against itself
    assert np.isnan(ablation._cell("toy", "v", van.copy(), van)["p"])  # identical seeds: no spread, no test
    assert ablation._cell("toy", "v", np.array([2.0, 2.2, 1.8]), van, floor=0.0)["gap_closed"] < 0


def test_committed_marks_are_holm_corrected_and_the_matched_table_is_the_token_term_against_global():
    cells = pd.read_csv(ROOT / "experiments" / "ablation" / "cells.csv")
    tested = cells.p.notna()
    assert (cells.p_holm[tested] >= cells.p[tested]).all() and (cells.differs == (cells.p_holm < ablation.ALPHA)).all()
    assert not cells.differs[~tested].any()
    matched = pd.read_csv(ROOT / "experiments" / "ablation" / "matched.csv")
    assert list(matched.columns[1:3]) == list(ablation.MATCHED) and set(matched.task) == set(cells.task)
    for row in matched.itertuples():
        tie = row.diff_lo <= 0 <= row.diff_hi
        assert (row.outcome == "tie") == tie


@ON_QUICK
def test_dilution_cells_carry_their_accuracy(quick):
    table = pd.read_csv(quick / "tables" / "ablation.csv")
    acc = table["dilution_acc"]
    assert acc.between(0, 1).all() and (table["dilution_acc_lo"].dropna() >= 0).all()


def test_ranking_against_defaults_reads_the_committed_runs():
    r = ablation.ranking_against_defaults(ROOT).set_index("task")
    assert set(r.index) == set(ablation.DEFAULT_MEASURES)
    assert r.loc["dilution", "variants"] == 12 and -1 <= r.loc["dilution", "kendall_tau"] <= 1
    assert ablation.ranking_against_defaults(ROOT / "nowhere").empty


def test_a_cell_whose_models_did_not_learn_is_marked_and_left_out_of_the_tests():
    """Two variants far from vanilla on a toy task: the one whose seeds all learned is tested (and
    differs after Holm); the one with a seed that did not learn is marked and untested, whatever its
    difference."""
    seeds = list(range(5))
    rows = []
    for v, shift, learned in (("vanilla", 0.0, [1] * 5), ("ssa", -0.5, [1] * 5), ("global", -0.5, [1, 1, 0, 1, 1])):
        rows += [{"task": "dilution", "variant": v, "seed": s, "value": 0.8 + shift + 0.01 * ((3 * s + len(v)) % 5),
                  "learned": float(ok)} for s, ok in zip(seeds, learned)]
    cfg = ablation.AblationConfig(tasks=("dilution",), variants=("vanilla", "ssa", "global"))
    res = ablation.measure(cfg, pd.DataFrame(rows), seeds)
    cells = res.tables["cells"][0].set_index("variant")
    assert cells.loc["ssa", "differs"] and not cells.loc["ssa", "unlearned"] and cells.loc["ssa", "learned"] == "5/5"
    assert cells.loc["global", "unlearned"] and np.isnan(cells.loc["global", "p"]) and not cells.loc["global", "differs"]
    assert cells.loc["global", "learned"] == "4/5"
    wide = res.tables["ablation"][0].set_index("variant")
    assert wide.loc["global", "dilution_learned"] == "4/5" and "dilution_learned_lo" not in wide.columns
