"""Sweeps: a grid of configs of one experiment, each cell one task, on a process pool or a Dask cluster.

Every cell is an ordinary run (``ssa_theory.rundir.execute``): its directory is named by the hash of
its resolved config, seeds, device and threads, so a finished cell is reused and an interrupted
sweep resumes where it stopped. Two sweeps sharing ``--out`` compute each shared cell once (the run
lock; the second waits and reuses it). A failed cell does not stop the others; the sweep's exit code
says whether every cell finished.

The local pool (``LocalPool``) runs ``--workers`` processes that inherit nothing from this one (a
forked child cannot use CUDA once the parent has touched it): forked from a clean fork server where
the platform has one (``_start_method``), spawned otherwise. Each is fed one cell at a time, so the
pool knows which cell each worker holds. A worker that dies costs an attempt to the cell it held
and no other; it is replaced, and the cell is run again up to ``max_attempts`` times. Queued cells
are not "in flight".
On Ctrl-C the queued cells are cancelled, the running ones stopped (their partial directories
removed) and the manifest says so. Dask reschedules a dead worker's task itself.

The sweep itself is recorded in ``OUT/sweeps/NAME-<hash>/manifest.json`` (experiment, preset, grid,
seeds, and per cell its overrides, run directory and status); ``collect`` turns it into tidy tables
(one row per cell and seed; a summary with mean and 95% CI over seeds) and a figure of each headline
metric against each swept key.

Grid syntax: ``--grid key=v1,v2,v3``; for a tuple-valued key the values are separated by ``;`` and
the items of one value by ``,`` (``--grid compare="rownorm;rownorm,dot"``).
"""

from __future__ import annotations

import itertools
import time
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from ssa_theory import registry
from ssa_theory.config import ConfigError, UsageError, build_config, field_types, parse_value
from ssa_theory.rundir import read_json, remove_stale_partials, run_hash, write_json

MANIFEST = "manifest.json"


# --- the grid -------------------------------------------------------------------------------------------


def parse_grid(experiment, pairs: Sequence[str]) -> dict[str, list[Any]]:
    """``["key=v1,v2", ...]`` -> ``{key: [typed values]}``, checked like ``--set`` (unknown key, wrong type)."""
    types = field_types(experiment.config)
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid takes key=v1,v2,... (got {pair!r}); e.g. --grid {next(iter(types))}=...")
        if key not in types:
            from difflib import get_close_matches

            close = get_close_matches(key, list(types), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown config key {key!r} for {experiment.name}; {hint}valid keys: {', '.join(types)}")
        if key in grid:
            raise ConfigError(f"--grid names {key!r} twice; give all its values in one --grid {key}=...")
        is_tuple = typing.get_origin(types[key]) is tuple
        values = [v for v in text.split(";" if is_tuple else ",") if v.strip() or is_tuple]
        grid[key] = list(dict.fromkeys(parse_value(key, v, types[key]) for v in values))
    return grid


def check_cells(experiment, preset: str, grid: dict[str, list[Any]], check=None) -> list[dict[str, Any]]:
    """Every cell's config built (and so validated) before any task starts, and given to ``check``
    (the CLI's plug-in check) where one is passed; the cells."""
    cells = cells_of(grid)
    for c in cells:
        config = build_config(experiment.config, experiment.presets[preset].overrides, c)
        if check is not None:
            check(config)
    return cells


def cells_of(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the grid's order (the first key varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


# --- one cell: runs in a worker process ------------------------------------------------------------------


def run_cell(name: str, preset: str, overrides: dict[str, Any], seeds: list[int], device: str, out: str,
             threads: int, force: bool = False) -> str:
    """Run (or reuse) one cell in this process; return its run directory. Importable by any worker.

    ``name`` is a built-in experiment's name or a ``module:attr`` reference (``registry.ref``).
    """
    import torch

    from ssa_theory.rundir import execute
    from ssa_theory.threads import use_threads

    use_threads(threads)
    experiment = registry.get(name)
    config = build_config(experiment.config, experiment.presets[preset].overrides, overrides)
    path, _ = execute(experiment, config, seeds=seeds, device=torch.device(device), out=Path(out), preset=preset,
                      force=force, quiet=True)
    return str(path)


def task(name: str, preset: str, overrides: dict[str, Any], seeds, *, device: str, out: Path, threads: int,
         force: bool = False) -> dict[str, Any]:
    """``run_cell``'s keyword arguments for one task: what a pool sends a worker (sweeps, ``reproduce``,
    ``cells.execute_all``)."""
    return {"name": name, "preset": preset, "overrides": dict(overrides), "seeds": list(seeds), "device": device,
            "out": str(Path(out).resolve()), "threads": threads, "force": force}


# --- executors -------------------------------------------------------------------------------------------


Event = Callable[[int, str, "str | None"], None]  # (cell index, status, detail)


def _worker_main(conn) -> None:
    """A local worker: run the cells it is sent, one at a time, until it gets None."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    def stop(signum, frame):  # the parent stops a running cell: unwind, so execute removes its partial
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            reply = ("done", run_cell(**task))
        except Exception as e:  # noqa: BLE001  a failed cell must not stop the worker
            reply = ("failed", _one_line(e))
        conn.send(reply)


class _Worker:
    """One worker process and the pipe to it; ``cell`` is the cell it holds, if any."""

    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.cell: int | None = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.is_alive():
            if self.cell is None:
                try:
                    self.conn.send(None)
                except OSError:
                    pass
            else:
                self.proc.terminate()
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.conn.close()


# What the fork server imports once, so that a worker forked from it starts in milliseconds, not seconds.
PRELOAD = ["torch", "ssa_theory.sweep", "ssa_theory.cells"]


def _start_method():
    """The multiprocessing context of local workers. Where the platform has one (Linux, macOS), a fork
    server: a fresh process, started at this process's first pool, that imports ``PRELOAD`` and forks
    every worker, so each starts at once and inherits none of this process's state (nor a CUDA context;
    it does inherit the environment the server started with, so set variables before the first pool).
    Elsewhere (Windows), spawn: every worker a fresh interpreter that imports torch itself."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


TICK = 1.0  # seconds: the longest the parent waits on its workers before it looks at pending signals


def _wait(objects, timeout: float, wait_ready) -> list:
    """``multiprocessing.connection.wait`` in ticks of ``TICK`` seconds, up to ``timeout``: the ready
    objects, or [] at the timeout. A process-directed signal (Ctrl-C) may be taken by another thread
    of this process (torch starts some), and then it does not interrupt the main thread's wait; Python
    runs its handler (KeyboardInterrupt) only once the main thread wakes, so it wakes every tick."""
    start = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - start)
        ready = wait_ready(objects, timeout=max(0.0, min(TICK, left)))
        if ready or left <= TICK:
            return ready


class LocalPool:
    """``workers`` processes on this machine (``_start_method``), one cell each at a time.

    A worker that dies (a crash, the OOM killer, ``kill -9``) is replaced; the cell it held is charged
    one attempt and queued again, failing after ``max_attempts``. Cells on other workers go on.
    """

    def __init__(self, workers: int, max_attempts: int = 3) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.workers, self.max_attempts = workers, max_attempts

    def _settle(self, w: "_Worker", attempts: dict[int, int], queue, on_event: Event) -> None:
        """A busy worker's news: its cell's result, or its death (the cell retried, or failed after
        ``max_attempts``); nothing while it is still working."""
        i = w.cell
        reply = None
        try:
            if w.conn.poll():
                reply = w.conn.recv()
        except (EOFError, OSError):
            reply = None
        if reply is not None:
            w.cell = None
            on_event(i, *reply)
        elif not w.proc.is_alive():  # died holding cell i
            w.cell = None
            w.stop()
            code = w.proc.exitcode
            if attempts[i] >= self.max_attempts:
                on_event(i, "failed", f"its worker process died (exit code {code}) in each of {attempts[i]} attempts")
            else:
                queue.appendleft(i)
                on_event(i, "retrying", f"its worker process died (exit code {code})")

    def run(self, tasks: list[dict], on_event: Event, heartbeat: Callable[[], None] | None = None,
            every: float = 60.0) -> None:
        """Run every task (``run_cell``'s keyword arguments); report through ``on_event``; call
        ``heartbeat`` after each ``every`` seconds without an event."""
        from collections import deque
        from multiprocessing.connection import wait as wait_ready

        ctx = _start_method()
        queue = deque(range(len(tasks)))
        attempts = dict.fromkeys(queue, 0)
        pool: list[_Worker] = []
        try:
            while queue or any(w.cell is not None for w in pool):
                pool = [w for w in pool if w.proc.is_alive() or w.cell is not None]
                while len(pool) < min(self.workers, len(queue) + sum(w.cell is not None for w in pool)):
                    pool.append(_Worker(ctx))
                for w in pool:
                    if w.cell is None and queue:
                        i = queue.popleft()
                        attempts[i] += 1
                        w.cell = i
                        w.conn.send(tasks[i])
                        on_event(i, "running", None)
                busy = [w for w in pool if w.cell is not None]
                if not _wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], every, wait_ready):
                    if heartbeat is not None:
                        heartbeat()
                    continue
                for w in busy:
                    self._settle(w, attempts, queue, on_event)
        except KeyboardInterrupt:
            for i in queue:
                on_event(i, "cancelled", "interrupted before it started")
            queue.clear()
            for w in pool:
                if w.cell is not None:
                    i, _ = w.cell, w.stop()
                    on_event(i, "cancelled", "interrupted while running")
                    w.cell = None
            raise
        finally:
            for w in pool:
                w.stop()


class DaskPool:
    """A ``dask.distributed`` client: joins ``address`` or starts a ``LocalCluster`` of ``workers``
    processes (one thread each). Cells that need a GPU ask for it as a worker resource ``GPU``."""

    def __init__(self, workers: int, address: str | None = None, gpu: bool = False, client=None) -> None:
        self.workers, self.address, self.gpu, self.client = workers, address, gpu, client

    def run(self, tasks: list[dict], on_event: Event, heartbeat: Callable[[], None] | None = None) -> None:
        """Submit every task; report each as it completes (the scheduler owns retries and placement)."""
        from distributed import Client, LocalCluster, as_completed

        own = self.client is None
        cluster = None
        if own:
            if self.address:
                client = Client(self.address)
            else:
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, resources={"GPU": 1} if self.gpu else None)
                client = Client(cluster)
        else:
            client = self.client
        try:
            resources = {"GPU": 1} if self.gpu else None
            futures = {}
            for i, t in enumerate(tasks):
                # pure=False: a resubmitted sweep must run again (finished cells are skipped by execute)
                futures[client.submit(run_cell, **t, key=f"cell-{i}-{time.time_ns()}", pure=False,
                                      resources=resources, retries=2)] = i
                on_event(i, "submitted", None)  # the scheduler decides when it runs
            try:
                for f in as_completed(futures):
                    i = futures[f]
                    try:
                        on_event(i, "done", f.result())
                    except Exception as e:  # noqa: BLE001
                        on_event(i, "failed", _one_line(e))
            except KeyboardInterrupt:
                for f, i in futures.items():
                    if not f.done():
                        f.cancel()
                        on_event(i, "cancelled", "interrupted")
                raise
        finally:
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()


STATUSES = ("done", "running", "submitted", "pending", "failed", "cancelled")


def progress_counts(cells: list[dict]) -> str:
    """``2 done, 2 running, 3 pending, of 7``: every status that some cell has, in a fixed order."""
    counts = {s: sum(c["status"] == s for c in cells) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f", of {len(cells)}"


def _describe(overrides: dict) -> str:
    return ", ".join(f"{k}={_cell_value(v)}" for k, v in overrides.items())


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


# --- the sweep -------------------------------------------------------------------------------------------


def _write_manifest(sdir: Path, manifest: dict) -> None:
    """Write the manifest, merged with what is on disk, under the sweep's lock.

    Two sweeps of the same grid under one ``--out`` share a sweep directory. A cell that either of
    them finished stays ``done`` (its run directory exists, so the other reuses it), so neither
    sweep's view undoes the other's progress; every write is atomic.
    """
    import filelock

    with filelock.FileLock(str(sdir / ".manifest.lock")):
        path = sdir / MANIFEST
        if path.is_file():
            try:
                disk = read_json(path)
            except ValueError:  # unreadable: a manifest written by an older version mid-kill
                disk = None
            if disk is not None and [c["overrides"] for c in disk.get("cells", [])] == \
                    [c["overrides"] for c in manifest["cells"]]:
                for mine, theirs in zip(manifest["cells"], disk["cells"]):
                    if theirs["status"] == "done" and mine["status"] != "done":
                        mine.update(status="done", run_dir=theirs["run_dir"], error=None)
        write_json(path, manifest)


def sweep_dir(out: Path, name: str, preset: str, grid: dict, seeds: list[int], device: str, threads: int) -> Path:
    key = {"experiment": name, "preset": preset, "grid": grid, "seeds": seeds, "device": device, "threads": threads}
    return Path(out) / "sweeps" / f"{name}-{run_hash(key)}"


def run_sweep(name: str, preset: str, grid: dict[str, list[Any]], *, seeds: list[int], device: str, out: Path,
              threads: int, pool, log: Callable[[str], None] = print) -> Path:
    """Run every cell of the grid on ``pool``; write and keep updating the manifest; return the sweep dir."""
    experiment = registry.get(name)
    ref = name if ":" in name else registry.ref(experiment.name)  # what a fresh worker process can find
    name = experiment.name
    cells = check_cells(experiment, preset, grid)
    sdir = sweep_dir(out, name, preset, grid, seeds, device, threads)
    sdir.mkdir(parents=True, exist_ok=True)
    manifest = {"experiment": name, "version": experiment.version, "preset": preset, "grid": grid, "seeds": seeds,
                "device": device, "threads": threads, "out": str(Path(out).resolve()),
                "cells": [{"overrides": c, "status": "pending", "run_dir": None, "error": None} for c in cells]}
    _write_manifest(sdir, manifest)
    tasks = [task(ref, preset, c, seeds, device=device, out=out, threads=threads) for c in cells]

    def on_event(i: int, status: str, info: str | None) -> None:
        cell = manifest["cells"][i]
        cell["status"] = "pending" if status == "retrying" else status
        if status == "done":
            cell["run_dir"], cell["error"] = info, None
        elif status in ("failed", "retrying", "cancelled"):
            cell["error"] = info
        _write_manifest(sdir, manifest)
        if status not in ("running", "submitted"):
            what = f"cell {i} ({_describe(cell['overrides'])}) {status}" + (f": {info}" if status != "done" and info else "")
            log(f"[{progress_counts(manifest['cells'])}] {what}")

    try:
        pool.run(tasks, on_event)
    finally:
        remove_stale_partials(out)  # what workers that died left behind
    return sdir


# --- collect ---------------------------------------------------------------------------------------------


def _per_seed_series(metrics: dict, n_seeds: int, prefix: str = "") -> dict[str, list[float]]:
    """Every per-seed series in a metrics.json: lists of ``n_seeds`` numbers under a ``per_seed`` key,
    named by their path (``strategies.vanilla.mass_at_max_len`` for nested experiments)."""
    out: dict[str, list[float]] = {}
    for key, value in metrics.items():
        if key == "per_seed" and isinstance(value, dict):
            for name, series in value.items():
                numbers = isinstance(series, list) and all(isinstance(v, (int, float)) for v in series)
                if numbers and len(series) == n_seeds:
                    out[f"{prefix}{name}"] = series
        elif isinstance(value, dict):
            out.update(_per_seed_series(value, n_seeds, f"{prefix}{key}."))
    return out


def collect(sdir: Path) -> tuple[Path, Path]:
    """Tidy tables and a figure from a sweep directory: ``cells.csv/.md`` (one row per cell and seed),
    ``summary.csv/.md`` (mean and 95% CI over seeds), ``figures/summary.png/.pdf``."""
    import pandas as pd

    from ssa_theory.rundir import markdown_table, with_ci
    from ssa_theory.stats import ci_columns

    sdir = Path(sdir)
    if not (sdir / MANIFEST).is_file():
        raise UsageError(f"{sdir} is not a sweep directory (no {MANIFEST}); pass OUT/sweeps/NAME-HASH")
    try:
        manifest = read_json(sdir / MANIFEST)
        keys = list(manifest["grid"])
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{sdir / MANIFEST} is unreadable ({type(e).__name__}: {e}); rerun the sweep to rewrite "
                         "it (finished cells are reused)") from None
    rows, summary = [], []
    for i, cell in enumerate(manifest["cells"]):
        if cell["status"] != "done":
            continue
        try:
            metrics = read_json(Path(cell["run_dir"]) / "metrics.json")
        except (OSError, ValueError) as e:
            raise UsageError(f"cell {i}'s run {cell['run_dir']} is missing or unreadable ({type(e).__name__}); "
                             "rerun the sweep to recompute it") from None
        series = _per_seed_series(metrics, len(manifest["seeds"]))
        for e, seed in enumerate(manifest["seeds"]):
            rows.append({"cell": i, **{k: _cell_value(cell["overrides"][k]) for k in keys}, "seed": seed,
                         **{m: v[e] for m, v in series.items()}})
        for m, v in series.items():
            summary.append({"cell": i, **{k: _cell_value(cell["overrides"][k]) for k in keys}, "metric": m,
                            **ci_columns("value", v)})
    if not rows:
        raise UsageError(f"no finished cell in {sdir}; run the sweep first")
    cells, summ = pd.DataFrame(rows), pd.DataFrame(summary)
    cells.to_csv(sdir / "cells.csv", index=False)
    (sdir / "cells.md").write_text(markdown_table(cells))
    summ.to_csv(sdir / "summary.csv", index=False)
    (sdir / "summary.md").write_text(markdown_table(with_ci(summ, ["value"])))
    _figure(sdir, summ, keys)
    return sdir / "summary.md", sdir / "figures" / "summary.png"


def _cell_value(v: Any) -> Any:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v


MAX_METRICS = 8


def _figure(sdir: Path, summ, keys: list[str]) -> None:
    """Each headline metric (at most ``MAX_METRICS``, in metrics.json order) against each swept key;
    cells that differ in the other keys are separate lines; error bars are 95% CIs."""
    import matplotlib.pyplot as plt

    from ssa_theory.plotting import ci_err, save

    metrics = list(dict.fromkeys(summ.metric))[:MAX_METRICS]
    panels = [(m, key) for m in metrics for key in keys]
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (m, key) in zip(axes.flat, panels):
        d = summ[summ.metric == m]
        others = [k for k in keys if k != key]
        groups = d.groupby(others, sort=False) if others else [((), d)]
        for label, g in groups:
            g = g.sort_values(key)
            x = g[key].astype(str) if g[key].dtype == object else g[key]
            values = label if isinstance(label, tuple) else (label,)
            ax.errorbar(x, g.value, yerr=ci_err(g, "value"), marker="o", ms=3, capsize=2,
                        label=", ".join(f"{k}={v}" for k, v in zip(others, values)) or None)
        ax.set_xlabel(key)
        ax.set_title(m, fontsize=8)
        if others:
            ax.legend(fontsize=6)
    save(fig, sdir, "summary")
