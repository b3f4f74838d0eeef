"""Run directories under faults and load: one computation per hash (a lock), a finished run swapped in
by rename (never delete-then-rename), kills at the swap, --force under a concurrent reader, stale
partials judged by their lock, strict and atomic JSON, and the project's own git commit."""

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ssa_theory import cli, rundir
from ssa_theory.testing import toy as toy_module

TOY = toy_module.REF


def _runs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "toy").iterdir() if not p.name.startswith("."))


def _partials(out: Path) -> list[Path]:
    return sorted((out / "toy").glob(".*partial*"))


def test_two_processes_racing_on_one_hash_make_one_result(tmp_path):
    """Started together on one config: both exit 0 and print the same run; it was computed once, and
    the second process said it waited."""
    log = tmp_path / "computed.txt"
    args = [sys.executable, "-m", "ssa_theory", "run", TOY, "--set", "sleep_s=1.5", "--out", str(tmp_path / "out")]
    env = {**os.environ, toy_module.LOG_ENV: str(log)}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    dirs = {line.split()[2] for out, _ in results for line in out.splitlines() if line.startswith("run directory:")}
    assert len(dirs) == 1
    (run,) = _runs(tmp_path / "out")
    assert log.read_text().split() == [run.name]  # computed once
    assert sum("reused a finished run" in out for out, _ in results) == 1
    assert sum("waiting for another process computing" in err for _, err in results) == 1


_KILL_AT_SWAP = """
import os, sys
from pathlib import Path
import torch
from ssa_theory import rundir
from ssa_theory.testing import toy
when = sys.argv[2]
real = rundir._exchange
def kill(*args):
    if when == "after":
        assert real(*args)  # the exchange happened; the old run, now at the partial's path, is not yet deleted
    os._exit(9)
if when == "after":
    rundir._exchange = kill
else:
    rundir.swap_in = kill
cfg = toy.ToyConfig(shift=float(sys.argv[3]))
rundir.execute(toy.EXPERIMENT, cfg, seeds=[0, 1], device=torch.device("cpu"), out=Path(sys.argv[1]),
               preset="default", force=True, quiet=True)
"""


def _exchange_works(tmp_path: Path) -> bool:
    """Whether this system swaps two directories atomically (Linux renameat2 with RENAME_EXCHANGE, on a file
    system that supports it): the guarantee that --force never leaves a moment without a run rests on it."""
    a, b = tmp_path / "exchange-a", tmp_path / "exchange-b"
    a.mkdir(), b.mkdir()
    (a / "x").touch()
    return rundir._exchange(a, b) and (b / "x").exists()


NO_EXCHANGE = "needs an atomic directory exchange (Linux renameat2 with RENAME_EXCHANGE), which this system lacks"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_at_the_final_swap_never_leaves_a_partial_run_in_place(tmp_path, when):
    """--force over a finished run, killed at the swap: the run in place is complete (the old one if
    killed before, the new one if after); the next call reuses it, and what the kill left is removed by
    the next run that computes anything under the same --out."""
    import torch

    if when == "after" and not _exchange_works(tmp_path):
        pytest.skip(NO_EXCHANGE)

    out = tmp_path / "out"
    cfg = toy_module.ToyConfig()
    final, _ = rundir.execute(toy_module.EXPERIMENT, cfg, seeds=[0, 1], device=torch.device("cpu"), out=out,
                              preset="default", quiet=True)
    before = (final / "config.json").read_text()
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_SWAP, str(out), when, "0"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert rundir.is_complete(final) and (final / "metrics.json").is_file()
    assert (final / "config.json").read_text() == before  # same config, same hash: complete either way
    assert len(_partials(out)) == 1  # the new run (killed before) or the old one (after)
    path, reused = rundir.execute(toy_module.EXPERIMENT, cfg, seeds=[0, 1], device=torch.device("cpu"), out=out,
                                  preset="default", quiet=True)
    assert path == final and reused
    rundir.execute(toy_module.EXPERIMENT, toy_module.ToyConfig(shift=1.0), seeds=[0], device=torch.device("cpu"),
                   out=out, preset="default", quiet=True)
    assert not _partials(out)


def test_force_never_leaves_a_moment_without_a_run(tmp_path):
    if not _exchange_works(tmp_path):
        pytest.skip(NO_EXCHANGE)
    """A reader polls the run while --force recomputes it five times: the run is always there, complete."""
    import torch

    out = tmp_path / "out"
    cfg = toy_module.ToyConfig()
    seeds, cpu = [0, 1], torch.device("cpu")
    final, _ = rundir.execute(toy_module.EXPERIMENT, cfg, seeds=seeds, device=cpu, out=out, preset="default",
                              quiet=True)
    missing, reads, stop = [], [0], threading.Event()

    def reader():
        while not stop.is_set():
            if not (final / "done").is_file() or not (final / "metrics.json").is_file():
                missing.append(time.perf_counter())
            reads[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(5):
            rundir.execute(toy_module.EXPERIMENT, cfg, seeds=seeds, device=cpu, out=out, preset="default",
                           force=True, quiet=True)
    finally:
        stop.set()
        t.join()
    assert reads[0] > 100 and missing == []
    assert _runs(out) == [final] and not _partials(out)


def test_stale_partials_are_judged_by_their_lock(tmp_path):
    """A partial directory whose lock nobody holds is removed (its process died, on any host); one
    whose lock another process holds is kept."""
    base = tmp_path / "toy"
    base.mkdir()
    dead = base / ".aaa.partial-otherhost-123"
    live = base / ".bbb.partial-otherhost-456"
    for d in (dead, live):
        (d / "tables").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, filelock; from pathlib import Path; from ssa_theory import rundir; "
        "l = rundir._lock(Path(sys.argv[1]), 'bbb'); l.acquire(); print('held', flush=True); time.sleep(60)"),
        str(base)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert rundir.remove_stale_partials(tmp_path) == [dead]
        assert not dead.exists() and live.exists()
    finally:
        holder.kill()
        holder.wait()
    assert rundir.remove_stale_partials(tmp_path) == [live]


def test_json_is_strict_and_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    rundir.write_json(path, {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "x": 1.5})
    text = path.read_text()
    assert json.loads(text) == {"nan": None, "inf": None, "minus_inf": None, "x": 1.5}
    assert "Infinity" not in text and "NaN" not in text

    real = Path.write_text

    def killed_midway(self, data, *a, **k):  # half the bytes, then the process "dies"
        real(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        rundir.write_json(path, {"x": 2.5, "padding": list(range(100))})
    monkeypatch.undo()
    assert json.loads(path.read_text())["x"] == 1.5  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left


def test_collect_on_a_truncated_manifest_is_a_one_line_error(tmp_path, capsys):
    sdir = tmp_path / "sweeps" / "toy-abc"
    sdir.mkdir(parents=True)
    (sdir / "manifest.json").write_text('{"experiment": "toy", "cells": [{"over')
    assert cli.main(["collect", str(sdir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable" in err


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_git_commit_is_the_projects_own_or_none(tmp_path):
    """Inside some other repository the commit says nothing about this code: None. In the project's own
    checkout: the commit, '+dirty' only when the code (not the results) differs."""
    outer = tmp_path / "outer"
    (outer / "vendored" / "ssa_theory").mkdir(parents=True)
    (outer / "vendored" / "pyproject.toml").write_text("")
    _git(outer, "init", "-q")
    _git(outer, "add", ".")
    _git(outer, "commit", "-q", "--allow-empty", "-m", "x")
    assert rundir.git_commit(outer / "vendored") is None

    own = tmp_path / "own"
    (own / "ssa_theory").mkdir(parents=True)
    (own / "experiments").mkdir()
    (own / "pyproject.toml").write_text("")
    (own / "ssa_theory" / "a.py").write_text("x = 1\n")
    (own / "experiments" / "t.csv").write_text("a\n1\n")
    _git(own, "init", "-q")
    _git(own, "add", ".")
    _git(own, "commit", "-q", "-m", "x")
    sha = rundir.git_commit(own)
    assert sha is not None and len(sha) == 40
    (own / "experiments" / "t.csv").write_text("a\n2\n")  # regenerated results: still clean
    assert rundir.git_commit(own) == sha
    (own / "ssa_theory" / "a.py").write_text("x = 2\n")
    assert rundir.git_commit(own) == sha + "+dirty"


def test_this_checkout_records_its_commit():
    """In a git checkout of the project, the commit of HEAD (with +dirty where the code differs); run from
    anywhere else (an sdist, a wheel), there is no commit to record: the test says so instead of passing."""
    root = Path(rundir.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout of the project: no commit to record")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    commit = rundir.git_commit()
    assert commit is not None and commit.split("+")[0] == head
