"""Sweeps: grids checked before anything runs, the local pool (spawned workers; one that dies costs only
its own cell an attempt; Ctrl-C cancels the queue) and a real Dask LocalCluster (one per module), a
worker killed mid-task, two sweeps sharing one --out, resumption without recomputation, and collect's
tables and figure."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ssa_theory import cli, registry, sweep
from ssa_theory.config import ConfigError

from ssa_theory.testing import toy as toy_module

# The toy experiment (no training, well under a second a cell), by reference so that spawned workers find it.
TOY = toy_module.REF
GRID = ["--grid", "shift=0,1", "--grid", "n=40"]
BASE = ["sweep", TOY, "--seeds", "2", *GRID]


def _metrics(sdir: Path) -> dict:
    m = json.loads((sdir / sweep.MANIFEST).read_text())
    assert all(c["status"] == "done" for c in m["cells"]), m["cells"]
    return {json.dumps(c["overrides"], sort_keys=True): (Path(c["run_dir"]) / "metrics.json").read_text()
            for c in m["cells"]}


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


@pytest.fixture(scope="session")  # not module: a test process interleaves other modules' tests, and a module
# fixture is torn down and built again each time it comes back to this one
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert cli.main([*BASE, "--executor", "local", "--workers", "2", "--out", str(out)]) == 0
    (sdir,) = (out / "sweeps").iterdir()
    return out, sdir


@pytest.fixture(scope="session")  # not module: a test process interleaves other modules' tests, and a module
# fixture is torn down and built again each time it comes back to this one
def dask_client():
    """One LocalCluster of two worker processes for the whole session."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed (pip install -e '.[dask]')")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_local_sweep_records_cells_and_collects(local_sweep):
    out, sdir = local_sweep
    m = json.loads((sdir / sweep.MANIFEST).read_text())
    assert m["experiment"] == "toy" and sdir.name.startswith("toy-")
    assert [c["overrides"] for c in m["cells"]] == [{"shift": 0.0, "n": 40}, {"shift": 1.0, "n": 40}]
    assert all(Path(c["run_dir"]).parent == out / "toy" for c in m["cells"])
    cells = pd.read_csv(sdir / "cells.csv")
    assert len(cells) == 4 and {"shift", "seed", "value"} <= set(cells.columns)
    summary = pd.read_csv(sdir / "summary.csv")
    assert {"metric", "value", "value_lo", "value_hi"} <= set(summary.columns)
    assert (sdir / "figures" / "summary.png").is_file() and (sdir / "figures" / "summary.pdf").is_file()


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_cells_equal_the_same_run_alone(local_sweep, tmp_path):
    _, sdir = local_sweep
    alone = tmp_path / "alone"
    assert cli.main(["run", TOY, "--quiet", "--seeds", "2", "--set", "shift=1", "--set", "n=40",
                     "--out", str(alone)]) == 0
    (path,) = (alone / "toy").iterdir()
    assert _metrics(sdir)[json.dumps({"n": 40, "shift": 1.0}, sort_keys=True)] == (path / "metrics.json").read_text()


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_rerun_reuses_finished_cells(local_sweep, capsys):
    out, sdir = local_sweep
    stamps = {p: p.stat().st_mtime_ns for p in (out / "toy").glob("*/done")}
    assert cli.main([*BASE, "--executor", "local", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "toy").glob("*/done")} == stamps


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    """A sweep stopped after one cell: the rerun computes only the missing one."""
    one = tmp_path / "o"
    one_worker = ["--workers", "1"]  # resumption is the subject, not parallelism
    assert cli.main(["sweep", TOY, "--seeds", "2", "--grid", "shift=0", "--grid", "n=40", *one_worker, "--out", str(one)]) == 0
    (first,) = (one / "toy").iterdir()
    stamp = (first / "done").stat().st_mtime_ns
    assert cli.main([*BASE, *one_worker, "--out", str(one)]) == 0
    assert (first / "done").stat().st_mtime_ns == stamp
    assert len(list((one / "toy").iterdir())) == 2


def test_failed_cell_does_not_stop_the_others(tmp_path, capsys):
    """A cell that raises fails alone; the other cell finishes; exit code 1; what finished is collected."""
    rc = cli.main(["sweep", TOY, "--seeds", "1", "--grid", "fail=false,true", "--workers", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "asked to fail" in err and "1 of 2 cells did not finish" in err
    (sdir,) = (tmp_path / "sweeps").iterdir()
    status = [c["status"] for c in json.loads((sdir / sweep.MANIFEST).read_text())["cells"]]
    assert status == ["done", "failed"]
    assert (sdir / "cells.csv").is_file()


def test_a_worker_that_dies_costs_only_its_own_cell(tmp_path):
    """Cells that kill their worker process (os._exit) on every attempt, beside healthy cells that are
    slower than the crash: the healthy cells finish; only the crashing ones are charged, each twice."""
    grid = sweep.parse_grid(toy_module.EXPERIMENT, ["crash=false,true", "shift=0,1", "sleep_s=0.5"])
    events = []
    sdir = sweep.run_sweep(TOY, "default", grid, seeds=[0], device="cpu", out=tmp_path, threads=1,
                           pool=sweep.LocalPool(2, max_attempts=2), log=events.append)
    cells = json.loads((sdir / sweep.MANIFEST).read_text())["cells"]
    status = {(c["overrides"]["crash"], c["overrides"]["shift"]): c["status"] for c in cells}
    assert status == {(False, 0.0): "done", (False, 1.0): "done", (True, 0.0): "failed", (True, 1.0): "failed"}
    assert all("died (exit code 17) in each of 2 attempts" in c["error"] for c in cells if c["overrides"]["crash"])
    assert sum("retrying" in e for e in events) == 2  # one retry for each crashing cell, none for the others
    assert not list((tmp_path / "toy").glob(".*partial*"))  # the sweep removed what the dead workers left


def test_local_workers_inherit_none_of_the_parents_state(tmp_path, monkeypatch):
    """A worker forked from this process would inherit its state (and a CUDA context it cannot use); one
    forked from the fork server, or spawned, does not."""
    assert sweep._start_method().get_start_method() in ("forkserver", "spawn")
    monkeypatch.setitem(toy_module.STATE, "parent", True)
    grid = sweep.parse_grid(toy_module.EXPERIMENT, ["shift=0"])
    sdir = sweep.run_sweep(TOY, "quick", grid, seeds=[0], device="cpu", out=tmp_path, threads=1,
                           pool=sweep.LocalPool(1), log=lambda m: None)
    (cell,) = json.loads((sdir / sweep.MANIFEST).read_text())["cells"]
    assert json.loads((Path(cell["run_dir"]) / "metrics.json").read_text())["inherited_parent_state"] is False


# ``python -m ssa_theory`` as a terminal's foreground job starts it: SIGINT at Python's own handler. A
# process started in the background of a non-interactive shell (``cmd &`` in a script; a CI runner may
# start the suite so) inherits SIGINT *ignored*, Python keeps it ignored, and so would the sweep the test
# starts: the test then failed, the sweep running on as if no Ctrl-C had come. That is the shell's rule,
# not the sweep's; a user who backgrounds a sweep stops it with SIGTERM.
FOREGROUND = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "runpy.run_module('ssa_theory', run_name='__main__', alter_sys=True)")


def test_ctrl_c_cancels_queued_cells_and_exits_with_one_line(tmp_path):
    """SIGINT while the first cell runs: exit 130 with one line, the queued cells never start, the
    running one is stopped and leaves no partial directory, and the manifest says so."""
    proc = subprocess.Popen([sys.executable, "-c", FOREGROUND, "sweep", TOY, "--seeds", "1", "--workers", "1",
                             "--grid", "shift=0,1,2,3", "--grid", "sleep_s=30", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list((tmp_path / "toy").glob(".*partial*")) and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    # On a timeout, say what the sweep's signal state was (SigIgn bit 2: SIGINT ignored).
    status = Path(f"/proc/{proc.pid}/status")
    state = [ln for ln in status.read_text().splitlines() if ln.startswith(("SigBlk", "SigIgn", "SigCgt", "Threads"))] \
        if status.exists() else []
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"SIGINT not acted on within 60 s; the sweep's signal state before it: {state}; "
                             f"this test process blocks {signal.pthread_sigmask(signal.SIG_BLOCK, [])}; stderr: {err}")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("ssa-theory: interrupted: queued cells cancelled")
    assert "Traceback" not in err
    (sdir,) = (tmp_path / "sweeps").iterdir()
    cells = json.loads((sdir / sweep.MANIFEST).read_text())["cells"]
    assert [c["status"] for c in cells] == ["cancelled"] * 4
    assert [c["error"] for c in cells] == ["interrupted while running"] + ["interrupted before it started"] * 3
    assert list((tmp_path / "toy").iterdir()) == []


def test_two_sweeps_sharing_one_out_compute_each_cell_once(tmp_path):
    """Started together over one grid and one --out: both exit 0, the same cells.csv, and every cell was
    computed once (the other process waited on its lock and reused it)."""
    log = tmp_path / "computed.txt"
    args = [sys.executable, "-m", "ssa_theory", "sweep", TOY, "--seeds", "2", "--workers", "1",  # the race is between
            "--grid", "shift=0,1,2", "--grid", "sleep_s=0.5", "--out", str(tmp_path / "out")]  # the two sweeps
    env = {**os.environ, toy_module.LOG_ENV: str(log)}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    (sdir,) = (tmp_path / "out" / "sweeps").iterdir()
    runs = sorted(d.name for d in (tmp_path / "out" / "toy").iterdir())
    assert len(runs) == 3 and sorted(log.read_text().split()) == runs  # every cell computed exactly once
    first = (sdir / "cells.csv").read_text()
    assert len(pd.read_csv(sdir / "cells.csv")) == 6
    assert cli.main(["collect", str(sdir)]) == 0
    assert (sdir / "cells.csv").read_text() == first


@pytest.mark.cuda
def test_a_one_cell_sweep_on_cuda(tmp_path):
    """Spawned workers can use CUDA after the parent has (a forked one could not)."""
    import torch

    torch.zeros(1, device="cuda")  # the parent touches CUDA first
    assert cli.main(["sweep", "graph_transition", "--quick", "--seeds", "1", "--grid", "steps=20", "--device", "cuda",
                     "--out", str(tmp_path)]) == 0


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_dask_local_cluster_gives_the_local_executors_metrics(local_sweep, dask_client, tmp_path):
    _, local_dir = local_sweep
    grid = sweep.parse_grid(toy_module.EXPERIMENT, ["shift=0,1", "n=40"])
    sdir = sweep.run_sweep(TOY, "default", grid, seeds=[0, 1], device="cpu", out=tmp_path, threads=1,
                           pool=sweep.DaskPool(2, client=dask_client), log=lambda m: None)
    assert _metrics(sdir) == _metrics(local_dir)


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_dask_executor_from_the_command_line(dask_client, tmp_path):
    """--executor dask --address joins a running scheduler (the module's cluster)."""
    address = dask_client.scheduler.address
    assert cli.main(["sweep", TOY, "--seeds", "1", "--grid", "shift=0", "--executor", "dask", "--address", address,
                     "--out", str(tmp_path)]) == 0
    (sdir,) = (tmp_path / "sweeps").iterdir()
    assert json.loads((sdir / sweep.MANIFEST).read_text())["cells"][0]["status"] == "done"


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_a_worker_killed_mid_task_loses_nothing(local_sweep, dask_client, tmp_path):
    """SIGKILL the Dask worker process that holds a cell: the scheduler reruns the cell elsewhere, the
    sweep completes, and every cell's metrics equal those of the same cell run alone."""
    _, local_dir = local_sweep
    client = dask_client
    grid = sweep.parse_grid(toy_module.EXPERIMENT, ["shift=0,1", "n=40"])
    result = {}

    def go():
        # on the workers alive now, runs sleep 2 s first (worker state, not config: the cells stay equal to
        # the local ones), so the kill lands while a worker holds a task
        result["sdir"] = sweep.run_sweep(TOY, "default", grid, seeds=[0, 1], device="cpu", out=tmp_path, threads=1,
                                         pool=sweep.DaskPool(2, client=client), log=lambda msg: None)

    client.run(toy_module.set_state, "sleep_s", 2.0)
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
    client.wait_for_workers(2, timeout=60)


@pytest.mark.xdist_group("sweep_fixtures")  # one process builds the module's sweep and cluster
def test_reproduce_on_a_dask_cluster_equals_one_job(dask_client, tmp_path):
    """reproduce's experiments as tasks on the module's Dask cluster: the same exports as one job here."""
    import torch

    from ssa_theory import reproduce

    refs = [toy_module.REF, toy_module.OTHER_REF]
    roots = {}
    for tag, pool in (("one", None), ("dask", sweep.DaskPool(2, client=dask_client))):
        to = tmp_path / f"to-{tag}"
        to.mkdir()
        roots[tag], _ = reproduce.reproduce(refs, "default", device=torch.device("cpu"), out=tmp_path / f"runs-{tag}",
                                            to=to, quiet=True, log=lambda m: None, jobs=1, pool=pool)
    files = {tag: {str(f.relative_to(r)): f.read_bytes() for f in sorted(r.rglob("*")) if f.is_file()
                   and f.name != "env.json"} for tag, r in roots.items()}
    assert files["one"] == files["dask"] and "experiments/toy_other/summary.csv" in files["one"]
