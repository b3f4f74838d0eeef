"""``card STRATEGY``: a strategy's report card from the ablation's own cells, beside vanilla, global and ssa."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory import cli
from ssa_theory.card import Plan, committed_references, make_card

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["norm_spikiness", "specificity"]  # the two quickest tasks


def test_a_card_reuses_the_ablations_cells_and_reads_against_vanilla(tmp_path, capsys):
    from ssa_theory.experiments import ablation

    out = tmp_path / "runs"
    folder = make_card("log_n", quick=True, seeds=[0, 1], out=out, device=torch.device("cpu"), jobs=1, no_check=False,
                       tasks=TASKS, log=lambda m: None)
    card = pd.read_csv(folder / "card.csv")
    assert list(card.task) == TASKS and {"log_n", "vanilla", "global", "ssa", "p_holm", "gap_closed"} <= set(card.columns)
    assert (folder / "card.png").is_file() and "## Per task" in (folder / "card.md").read_text()
    # the cells are the ablation's: the same values as an ablation run of the same cells, reused
    cells = sorted(p.parent.name for p in (out / "ablation_cell").glob("*/done"))
    assert len(cells) == 2 * 4
    cfg = ablation.AblationConfig(tasks=tuple(TASKS), variants=("vanilla", "log_n"), scale="quick")
    from ssa_theory.rundir import execute

    from ssa_theory import registry

    path, _ = execute(registry.get("ablation"), cfg, seeds=[0, 1], device=torch.device("cpu"), out=out, preset="quick",
                      quiet=True)
    assert sorted(p.parent.name for p in (out / "ablation_cell").glob("*/done")) == cells  # nothing retrained
    long = pd.read_csv(path / "tables" / "cells.csv")
    for t in TASKS:
        mean = long[(long.task == t) & (long.variant == "log_n")]["mean"].item()
        assert mean == pytest.approx(card[card.task == t].log_n.item(), rel=1e-12)


def test_committed_references_are_read_only_when_core_scale_tasks_and_seeds_match(tmp_path):
    from ssa_theory import core
    from ssa_theory.rundir import write_json

    folder = tmp_path / "experiments" / "ablation"
    folder.mkdir(parents=True)
    metrics = {"scale": "moderate", "seeds": [0, 1], "tasks": {t: {"variants": {v: {"per_seed": [0.1, 0.2]}
                                                                                 for v in ("vanilla", "global", "ssa", "x")}}
                                                                for t in TASKS}}
    write_json(folder / "metrics.json", metrics)
    write_json(folder / "config.json", {"core": core.VERSION})
    plan = Plan("log_n", "moderate", [0, 1], TASKS)
    got = committed_references(tmp_path, plan)
    assert set(got) == {(t, v) for t in TASKS for v in ("vanilla", "global", "ssa")}
    assert np.allclose(got[(TASKS[0], "vanilla")], [0.1, 0.2])
    for other in (Plan("log_n", "quick", [0, 1], TASKS), Plan("log_n", "moderate", [0, 1, 2], TASKS),
                  Plan("log_n", "moderate", [0, 1], TASKS + ["dilution"])):
        assert committed_references(tmp_path, other) == {}
    write_json(folder / "config.json", {"core": core.VERSION + "-old"})
    assert committed_references(tmp_path, plan) == {}


def test_card_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["card", "log_m", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'log_n'" in err and len(err.strip().splitlines()) == 1
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert cli.main(["card", "log_n", "--quick", "--out", str(blocked / "sub")]) == 2
    assert "--out" in capsys.readouterr().err


_PEEKING = '''
import math, torch
from ssa_theory.strategies import Param, Strategy

def peek(inputs, params):
    return 1 + torch.sigmoid(params["c"]).view(-1, 1, 1, 1) * torch.tanh(inputs.x.mean((-2, -1)))[..., None, None]

PEEK = Strategy("peek", "q", "mul", peek, {"c": Param((), 0.0, -math.inf)}, range=(0, 2), source="a broken plug-in")
'''


def test_a_failing_plugin_stops_the_card_unless_no_check(tmp_path):
    (tmp_path / "peeking.py").write_text(_PEEKING)
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "ssa_theory", "card", "peeking:PEEK", "--quick", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "fails the conformance check (causal:" in proc.stderr and "--no-check" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_card_quick_for_a_builtin_a_dotted_path_and_the_example_plugins_entry_point(tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "examples" / "uniform_scale_plugin")}
    for strategy in ("ssa_q_pos", "ssa_uniform_scale:UNIFORM_SCALE"):
        proc = subprocess.run([sys.executable, "-m", "ssa_theory", "card", strategy, "--quick", "--jobs", "2", "--out",
                               str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert "| graph_transition |" in proc.stdout


def test_a_task_whose_models_did_not_learn_is_not_tested_on_the_card():
    """The card reads the ablation's learned counts: a task where the strategy (or vanilla) did not learn
    on every seed is marked and leaves the Holm family; one where both learned is tested."""
    from ssa_theory.card import task_rows

    plan = Plan("log_n", "quick", [0, 1, 2, 3, 4], ["dilution", "passkey"])
    rng = np.random.default_rng(0)
    values = {}
    for t in plan.tasks:
        van = 0.8 + 0.01 * rng.standard_normal(5)
        values.update({(t, "vanilla"): van, (t, "log_n"): van - 0.5 + 0.01 * rng.standard_normal(5),
                       (t, "global"): van, (t, "ssa"): van})
    learned = {("dilution", "log_n"): "5/5", ("dilution", "vanilla"): "5/5",
               ("passkey", "log_n"): "5/5", ("passkey", "vanilla"): "3/5"}
    rows = task_rows(plan, values, {}, learned).set_index("task")
    assert rows.loc["dilution", "differs"] and not rows.loc["dilution", "unlearned"]
    assert rows.loc["passkey", "unlearned"] and np.isnan(rows.loc["passkey", "p"]) and not rows.loc["passkey", "differs"]


@pytest.mark.parametrize("seeds, mark", [(2, "cannot be tested at 2 seeds (needs 3)"), (3, "yes: lower (better)")])
def test_the_card_tests_nothing_below_three_seeds_and_names_its_comparison(seeds, mark):
    """A clear 0.5 drop on every seed: at 3 seeds the card says so against vanilla and against global; at 2
    it says it cannot test (a paired t-test on 2 seeds is no evidence here), whatever the p-value."""
    from ssa_theory.card import significance, task_rows

    plan = Plan("log_n", "quick", list(range(seeds)), ["dilution"])
    rng = np.random.default_rng(0)
    van = 0.8 + 0.01 * rng.standard_normal(seeds)
    values = {("dilution", "vanilla"): van, ("dilution", "log_n"): van - 0.5 + 0.01 * rng.standard_normal(seeds),
              ("dilution", "global"): van + 0.001, ("dilution", "ssa"): van}
    row = task_rows(plan, values, {}).iloc[0].to_dict()
    assert significance(row, "log_n", "vanilla") == mark and significance(row, "log_n", "global") == mark
    assert significance(row, "vanilla", "vanilla") == "—"
    same = task_rows(plan, {**values, ("dilution", "log_n"): van}, {}).iloc[0].to_dict()
    if seeds >= 3:  # a strategy that computes vanilla's numbers: no difference, said so (no p-value to print)
        assert significance(same, "log_n", "vanilla") == "no (the same on every seed)"


_EDIT_ME = '''
import math
import torch
from ssa_theory.strategies import Param, Strategy

def scale(inputs, params):
    return 1.0 + FACTOR * torch.sigmoid(params["c"]) * torch.ones_like(torch.log(inputs.n))

EDIT_ME = Strategy("edit_me", "q", "mul", scale, {"c": Param(("H",), 0.0, -math.inf)}, range=(1, 1 + FACTOR),
                   reads={"n"}, source="a test's plug-in")
'''


@pytest.mark.slow
def test_an_edited_plugin_moves_the_card_s_header_and_its_table_together(tmp_path):
    """A card's header (the learned temperature) and its table (the strategy's cells) come from the plug-in as
    it is now: after an edit of its formula both move, and the references do not (their cells are reused)."""
    from ssa_theory.card import card_name

    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    cards = []
    for factor in ("0.5", "2.0"):
        (tmp_path / "edit_me.py").write_text(_EDIT_ME.replace("FACTOR", factor))
        proc = subprocess.run([sys.executable, "-m", "ssa_theory", "card", "edit_me:EDIT_ME", "--quick", "--jobs", "2",
                               "--out", str(tmp_path / "runs")], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        folder = tmp_path / "runs" / "cards" / card_name("edit_me:EDIT_ME")
        learned = [ln for ln in (folder / "card.md").read_text().splitlines() if "Learned query inverse" in ln]
        cards.append((learned, pd.read_csv(folder / "card.csv").set_index("task")))
    (head_a, table_a), (head_b, table_b) = cards
    assert head_a != head_b  # the header read the edited formula
    column = next(c for c in table_a.columns if c.startswith("edit_me") and not c.endswith(("_lo", "_hi")))
    assert not np.allclose(table_a[column], table_b[column])  # so did the strategy's cells
    np.testing.assert_array_equal(table_a["vanilla"], table_b["vanilla"])  # the references were reused
