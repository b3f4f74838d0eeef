"""reproduce --jobs (parallel, byte-identical to one job, progress of every experiment in flight, a
failure stops it with one line and exports nothing) and reproduce --check (tables against the committed
ones at the stated tolerance, and a perturbed table is caught)."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssa_theory import cells, cli, registry, reproduce
from ssa_theory.testing import toy as toy_module

TOYS = [toy_module.REF, toy_module.OTHER_REF]


def _files(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file() and f.name != "env.json"}


def _reproduce(tmp_path, tag, *extra):
    to = tmp_path / f"to-{tag}"
    to.mkdir()
    only = [] if "--only" in extra else ["--only", *TOYS]
    rc = cli.main(["reproduce", *only, "--out", str(tmp_path / f"runs-{tag}"), "--to", str(to), *extra])
    return rc, to


def test_parallel_reproduce_equals_one_job_and_shows_what_is_in_flight(tmp_path, capsys):
    """With a split experiment among them (the toy's three models, tasks of their own in the pool)."""
    args = ["--only", *TOYS, toy_module.SPLIT_REF]
    rc, one = _reproduce(tmp_path, "one", *args, "--jobs", "1")
    assert rc == 0
    capsys.readouterr()
    rc, two = _reproduce(tmp_path, "two", *args, "--jobs", "2")
    err = capsys.readouterr().err
    assert rc == 0
    assert _files(one) == _files(two) and (two / "experiments" / "toy_split" / "summary.csv").is_file()
    assert "2 job(s)" in err and "started toy" in err and "in flight: " in err and "[6/6 done]" in err
    assert "started toy_split model a" in err and "started toy_split model c" in err


def test_a_failing_experiment_stops_a_parallel_reproduce_with_one_line(tmp_path, capsys):
    rc = cli.main(["reproduce", "--only", toy_module.FAILING_REF, toy_module.OTHER_REF, "--jobs", "2", "--quiet",
                   "--out", str(tmp_path / "runs"), "--to", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert "1 of 2 tasks did not finish: toy_failing (RuntimeError: the toy experiment was asked to fail)" in err
    assert "nothing was exported" in err
    assert not (tmp_path / "experiments").exists() or not any((tmp_path / "experiments").iterdir())


def test_an_experiment_registered_without_a_reference_cannot_go_to_workers(tmp_path, capsys):
    import dataclasses

    registry.register(dataclasses.replace(toy_module.EXPERIMENT, name="toy_local"))
    try:
        only = ["--only", "toy_local", toy_module.OTHER_REF, "--out", str(tmp_path / "o"), "--to", str(tmp_path)]
        assert cli.main(["reproduce", *only, "--jobs", "2"]) == 2
        assert "without a reference" in capsys.readouterr().err
        assert not (tmp_path / "o").exists() and not (tmp_path / "experiments").exists()
        assert cli.main(["reproduce", *only, "--jobs", "1", "--quiet"]) == 0
    finally:
        registry.unregister("toy_local")


def test_check_reports_every_table_within_tolerance_and_catches_a_change(tmp_path, capsys):
    rc, to = _reproduce(tmp_path, "c", "--jobs", "1")
    assert rc == 0
    capsys.readouterr()
    args = ["reproduce", "--only", *TOYS, "--check", "--jobs", "1", "--out", str(tmp_path / "runs-check"), "--to", str(to)]
    before = _files(to)
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| toy/summary.csv |" in out and "2 of 2 tables within the tolerance" in out
    assert _files(to) == before  # --check never touches the committed results
    # a committed number moved by 1e-7 relative stays within float32 noise; by 1e-2 it does not
    table = to / "experiments" / "toy" / "summary.csv"
    df = pd.read_csv(table)
    df.loc[0, "value"] *= 1 + 1e-7
    df.to_csv(table, index=False)
    assert cli.main(args) == 0
    capsys.readouterr()
    df.loc[0, "value"] *= 1 + 1e-2
    df.to_csv(table, index=False)
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("| toy/summary.csv |")][0]
    assert "| no |" in row or "False" in row, row
    assert "1 of 2 tables within the tolerance" in out


def test_compare_tables_flags_text_shape_and_one_sided_nan(tmp_path):
    fresh, committed = tmp_path / "f", tmp_path / "c"
    for root in (fresh, committed):
        (root / "experiments" / "x").mkdir(parents=True)
    pd.DataFrame({"name": ["a", "b"], "v": [1.0, float("nan")]}).to_csv(fresh / "experiments/x/t.csv", index=False)
    pd.DataFrame({"name": ["a", "b"], "v": [1.0, float("nan")]}).to_csv(committed / "experiments/x/t.csv", index=False)
    assert bool(reproduce.compare_tables(fresh, committed, ["x"]).within.all())
    pd.DataFrame({"name": ["a", "c"], "v": [1.0, float("nan")]}).to_csv(committed / "experiments/x/t.csv", index=False)
    assert not bool(reproduce.compare_tables(fresh, committed, ["x"]).within.any())
    pd.DataFrame({"name": ["a", "b"], "v": [1.0, 2.0]}).to_csv(committed / "experiments/x/t.csv", index=False)
    assert not bool(reproduce.compare_tables(fresh, committed, ["x"]).within.any())


@pytest.mark.slow  # about 45 s; the plumbing is tested on the toy (test_parallel_reproduce_equals_one_job_...)
def test_quick_reproduce_in_parallel_regenerates_the_in_process_runs(quick_run, tmp_path):
    """Every real experiment's quick preset from scratch in two worker processes: the tables and metrics
    equal, byte for byte, those of the same runs made one after another in this process."""
    fresh = tmp_path / "runs"
    assert cli.main(["reproduce", "--quick", "--jobs", "2", "--quiet", "--out", str(fresh), "--to",
                     str(tmp_path)]) == 0
    for name in registry.names():
        _, path = quick_run(name)
        exported = fresh / "reproduce-quick" / "experiments" / name
        for f in sorted((path / "tables").glob("*.csv")) + [path / "metrics.json"]:
            assert (exported / f.name).read_bytes() == f.read_bytes(), f"{name}/{f.name}"


def test_the_ablation_goes_to_the_pool_as_its_cells_longest_first_and_is_collected_last():
    names = registry.names()
    experiments = [registry.get(n) for n in names]
    plan = reproduce._plan(experiments, "default", 0)
    jobs = reproduce._jobs(plan, names, "default", device=torch.device("cpu"), out=Path("runs"), force=False)
    labels = [label for label, _, _ in jobs]
    ablation = registry.get("ablation")
    n_cells = len(ablation.config().tasks) * len(ablation.config().variants)
    n_models = sum(len(e.models.keys(c)) for e, c, _ in plan if e.models is not None)  # tests/test_cells.py
    assert len(jobs) == len(names) + n_cells + n_models and labels[-1] == "ablation"
    cell_jobs = [t for label, t, i in jobs if i is None and "task" in t["overrides"]]
    assert len(cell_jobs) == n_cells and all(t["name"] == "ssa_theory.experiments.ablation:CELL" for t in cell_jobs)
    assert {(t["overrides"]["task"], t["overrides"]["variant"]) for t in cell_jobs} == \
        {(t, v) for t in ablation.config().tasks for v in ablation.config().variants}
    minutes = {n: registry.get(n).presets["default"].minutes for n in names}
    models = {(e.name, o["model"]): m for e, c, _ in plan for _, o, m in cells.split(e, c, minutes[e.name]) if e.models}

    def estimate(label, t, i):
        if i is not None:
            return minutes[label]
        if "task" in t["overrides"]:
            return registry.get(t["overrides"]["task"]).ablation.minutes
        return models[(label.split(" model ")[0], t["overrides"]["model"])]

    collectors = [j for j in jobs if j[2] is not None and cells.split(registry.get(j[0]), plan[j[2]][1], 0.0)]
    assert jobs[-len(collectors):] == collectors and len(collectors) == 7  # ablation, dilution, critical, norm_spikiness, passkey, flipflop, text
    est = [estimate(*j) for j in jobs[:-len(collectors)]]
    assert est == sorted(est, reverse=True)  # longest first, the collectors after everything
    assert all(t["seeds"] == plan[names.index("ablation")][2] for t in cell_jobs)
