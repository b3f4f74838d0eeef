"""Sweeps: grids checked before anything runs, the local pool and a real Dask LocalCluster, a worker
killed mid-task, resumption without recomputation, and collect's tables and figure."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ssa_theory import cli, registry, sweep
from ssa_theory.config import ConfigError

distributed = pytest.importorskip("distributed")

# A tiny grid of graph_transition's quick preset: two cells, two seeds, a few seconds each.
GRID = ["--grid", "smoothing=0.02,0.1", "--grid", "steps=40"]
BASE = ["sweep", "graph_transition", "--quick", "--seeds", "2", *GRID]


def _metrics(sdir: Path) -> dict:
    m = json.loads((sdir / sweep.MANIFEST).read_text())
    assert all(c["status"] == "done" for c in m["cells"]), m["cells"]
    return {json.dumps(c["overrides"], sort_keys=True): (Path(c["run_dir"]) / "metrics.json").read_text()
            for c in m["cells"]}


def _sdir(capsys) -> Path:
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("sweep directory: ")]
    return Path(line.split(": ", 1)[1])


# --- the grid ---------------------------------------------------------------------------------------


def test_grid_values_are_typed_and_checked():
    exp = registry.get("graph_transition")
    grid = sweep.parse_grid(exp, ["smoothing=0.02,0.05", "compare=rownorm;rownorm,dot", "steps=10"])
    assert grid == {"smoothing": [0.02, 0.05], "compare": [("rownorm",), ("rownorm", "dot")], "steps": [10]}
    assert len(sweep.cells_of(grid)) == 4
    with pytest.raises(ConfigError, match="did you mean 'smoothing'"):
        sweep.parse_grid(exp, ["smoothin=0.1"])
    with pytest.raises(ConfigError, match="smoothing must be a number"):
        sweep.parse_grid(exp, ["smoothing=0.1,abc"])


@pytest.mark.parametrize("args,expected", [
    (["--grid", "smoothing=0.1,1.5"], "smoothing must lie in [0, 1)"),  # impossible value in one cell
    (["--grid", "smoothing=inf"], "out of range"),
    (["--grid", "nope=1"], "unknown config key 'nope'"),
    (["--grid", "smoothing"], "--grid takes key=v1,v2"),
    (["--grid", "smoothing=0.1", "--set", "steps=3"], "sweep takes no --set"),
])
def test_bad_grid_is_one_line_exit_2_and_runs_nothing(tmp_path, capsys, args, expected):
    rc = cli.main(["sweep", "graph_transition", "--quick", *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


# --- executors ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert cli.main([*BASE, "--executor", "local", "--workers", "2", "--out", str(out)]) == 0
    (sdir,) = (out / "sweeps").iterdir()
    return out, sdir


def test_local_sweep_records_cells_and_collects(local_sweep):
    out, sdir = local_sweep
    m = json.loads((sdir / sweep.MANIFEST).read_text())
    assert [c["overrides"] for c in m["cells"]] == [{"smoothing": 0.02, "steps": 40}, {"smoothing": 0.1, "steps": 40}]
    assert all(Path(c["run_dir"]).parent == out / "graph_transition" for c in m["cells"])
    cells = pd.read_csv(sdir / "cells.csv")
    assert len(cells) == 4 and {"smoothing", "seed", "ce_ssa", "ce_vanilla"} <= set(cells.columns)
    summary = pd.read_csv(sdir / "summary.csv")
    assert {"metric", "value", "value_lo", "value_hi"} <= set(summary.columns)
    assert (sdir / "figures" / "summary.png").is_file() and (sdir / "figures" / "summary.pdf").is_file()


def test_cells_equal_the_same_run_alone(local_sweep, tmp_path):
    _, sdir = local_sweep
    alone = tmp_path / "alone"
    assert cli.main(["run", "graph_transition", "--quick", "--quiet", "--seeds", "2", "--set", "smoothing=0.1",
                     "--set", "steps=40", "--out", str(alone)]) == 0
    (path,) = (alone / "graph_transition").iterdir()
    assert _metrics(sdir)[json.dumps({"smoothing": 0.1, "steps": 40}, sort_keys=True)] == (path / "metrics.json").read_text()


def test_rerun_reuses_finished_cells(local_sweep, capsys):
    out, sdir = local_sweep
    stamps = {p: p.stat().st_mtime_ns for p in (out / "graph_transition").glob("*/done")}
    assert cli.main([*BASE, "--executor", "local", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "graph_transition").glob("*/done")} == stamps


def test_interrupted_sweep_resumes_without_recomputing(local_sweep, tmp_path):
    """A sweep stopped after one cell: the rerun computes only the missing one."""
    out, _ = local_sweep
    one = tmp_path / "o"
    assert cli.main(["sweep", "graph_transition", "--quick", "--seeds", "2", "--grid", "smoothing=0.02",
                     "--grid", "steps=40", "--out", str(one)]) == 0
    (first,) = (one / "graph_transition").iterdir()
    stamp = (first / "done").stat().st_mtime_ns
    assert cli.main([*BASE, "--out", str(one)]) == 0
    assert (first / "done").stat().st_mtime_ns == stamp
    assert len(list((one / "graph_transition").iterdir())) == 2


def test_failed_cell_does_not_stop_the_others(tmp_path, capsys):
    """lr=1e3 diverges (exit of that cell only); the other cell finishes; exit code 1."""
    rc = cli.main(["sweep", "graph_transition", "--quick", "--seeds", "1", "--grid", "lr=0.03,1000",
                   "--grid", "steps=120", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "diverged" in err and "1 of 2 cells did not finish" in err
    (sdir,) = (tmp_path / "sweeps").iterdir()
    status = [c["status"] for c in json.loads((sdir / sweep.MANIFEST).read_text())["cells"]]
    assert status == ["done", "failed"]
    assert (sdir / "cells.csv").is_file()  # what finished is still collected


def test_dask_local_cluster_gives_the_local_executors_metrics(local_sweep, tmp_path):
    _, local_dir = local_sweep
    assert cli.main([*BASE, "--executor", "dask", "--workers", "2", "--out", str(tmp_path)]) == 0
    (sdir,) = (tmp_path / "sweeps").iterdir()
    assert _metrics(sdir) == _metrics(local_dir)


def test_a_worker_killed_mid_task_loses_nothing(local_sweep, tmp_path):
    """SIGKILL the Dask worker process that holds a cell: the scheduler reruns the cell elsewhere, the
    sweep completes, and every cell's metrics equal those of the same cell run alone."""
    _, local_dir = local_sweep
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        grid = sweep.parse_grid(registry.get("graph_transition"), ["smoothing=0.02,0.1", "steps=40"])
        result = {}

        def go():
            result["sdir"] = sweep.run_sweep("graph_transition", "quick", grid, seeds=[0, 1], device="cpu",
                                             out=tmp_path, threads=1, pool=sweep.DaskPool(2, client=client),
                                             log=lambda msg: None)

        t = threading.Thread(target=go)
        t.start()
        killed = None
        deadline = time.time() + 60
        while killed is None and time.time() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                pids = client.run(os.getpid)
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)
            else:
                time.sleep(0.05)
        t.join(timeout=180)
        assert killed is not None, "no worker ever held a task"
        assert not t.is_alive() and "sdir" in result
        assert _metrics(result["sdir"]) == _metrics(local_dir)
    finally:
        client.close()
        cluster.close()
