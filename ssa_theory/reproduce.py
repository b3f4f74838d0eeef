"""Regenerate everything: run every experiment, export its results, re-render ``paper_repro.md``.

``export_run`` copies one run directory's tables, metrics and figures to ``ROOT/experiments/NAME/``
and ``ROOT/figures/NAME/`` (the committed results). ``reproduce`` does that for every registered
experiment (reusing finished runs), then renders the generated blocks of ``ROOT/paper_repro.md``
(``ssa_theory.report``) and returns every claim with its verdict.

A scratch preset (``--quick``) never touches the committed results: it exports into
``OUT/reproduce-quick/`` and renders a copy of ``paper_repro.md`` there. ``check`` never touches
them either: it exports into ``OUT/reproduce-check-PRESET/`` and compares every table there with the
committed one (``compare_tables``).

Parallel runs (``jobs > 1``, or a Dask pool). The experiments are independent computations (the
ablation trains its own models; it reads no other experiment's run), so each is one task of the
sweep machinery (``ssa_theory.sweep``), run in a fresh process at the same thread count, longest
first (``Preset.minutes``). An experiment collected from runs of its own (``Experiment.split``: the
ablation's cells, one per variant and task; the models of a split experiment, ``Experiment.models``)
is split into them, each a task of its own in the same pool, so that any number of workers stays
busy; the experiment itself runs last and only collects them. Each run's numbers depend only on its hash, not on which process made it
or what ran before, so the results are byte-identical to ``jobs=1``. Exports and the report are
written afterwards, in registration order, by this process.

What "reproduce" promises. On the machine that made the committed results (same torch, threads and
CPU capability, recorded in each ``env.json``), byte for byte. Elsewhere, the same numbers within
float32 noise: matrix kernels of another CPU capability (AVX2 instead of AVX-512, say) round
differently, and training carries those differences into the last digits. ``check`` measures that
against the stated tolerance ``RTOL`` / ``ATOL``.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ssa_theory import cells, registry, report
from ssa_theory.claims import Claim
from ssa_theory.config import UsageError
from ssa_theory.progress import clock, stage
from ssa_theory.rundir import execute, is_complete, prepare_out, run_dir
from ssa_theory.seeding import member_seeds

# A fresh table matches the committed one when every number agrees to |a - b| <= ATOL + RTOL max(|a|, |b|):
# float32 carries about 7 significant digits, and a few thousand optimiser steps amplify a change in the
# last bit by up to a few orders of magnitude; a real change of result (another seed, a bug) moves digits
# far above that. Text cells must agree exactly.
RTOL = 1e-3
ATOL = 1e-6


class ReproduceFailed(RuntimeError):
    """An experiment failed (or diverged) in a parallel reproduce; the message is one line."""

PAPER_REPRO = "paper_repro.md"


def export_run(run_path: Path, name: str, root: Path) -> tuple[Path, Path]:
    """Copy a finished run's tables, config/env/metrics and figures under ``root``; return the two folders."""
    tables, figures = Path(root) / "experiments" / name, Path(root) / "figures" / name
    for dest in (tables, figures):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
    for f in sorted((run_path / "tables").iterdir()):
        shutil.copy2(f, tables / f.name)
    for f in ("config.json", "env.json", "metrics.json"):
        shutil.copy2(run_path / f, tables / f)
    for f in sorted((run_path / "figures").iterdir()):
        shutil.copy2(f, figures / f.name)
    return tables, figures


def export_root(preset: str, out: Path, to: Path) -> Path:
    """Where ``reproduce`` writes: ``to`` for a full preset, a scratch folder under ``out`` otherwise."""
    scratch = any(registry.get(n).presets.get(preset) is not None and registry.get(n).presets[preset].scratch
                  for n in registry.names())
    return Path(out) / f"reproduce-{preset}" if scratch else Path(to)


def _plan(experiments, preset: str, seed: int) -> list[tuple]:
    """(experiment, config, seeds) per experiment, in the order given."""
    out = []
    for e in experiments:
        p = e.presets[preset]
        out.append((e, e.config(**p.overrides), member_seeds(seed, p.seeds)))
    return out


def _worker_ref(name: str) -> str:
    """How a fresh worker process finds the experiment given as ``name`` (a name or module:attr)."""
    if ":" in name:
        return name
    ref = registry.ref(registry.get(name).name)
    if ref == name and not registry.get(name).run.__module__.startswith("ssa_theory.experiments."):
        raise UsageError(f"{name} was registered in this process without a reference, so worker processes cannot "
                         "find it; register it with ref='module:ATTR', pass --only module:ATTR, or use --jobs 1")
    return ref


def _run_sequential(plan, preset, *, device, out, force, quiet, log) -> list[tuple[Path, bool]]:
    results = []
    for i, (e, config, seeds) in enumerate(plan):
        start = time.perf_counter()
        with stage(f"[{i + 1}/{len(plan)}] {e.name}"):
            path, reused = execute(e, config, seeds=seeds, device=device, out=out, preset=preset, force=force,
                                   quiet=quiet)
        log(f"[{i + 1}/{len(plan)}] {e.name}: {'reused' if reused else 'ran'} {path} "
            f"({clock(time.perf_counter() - start)})")
        results.append((path, reused))
    return results


def _jobs(plan, refs, preset, *, device, out, force) -> list[tuple[str, dict, int | None]]:
    """The pool's tasks, in the order they start: (label, task, index in ``plan`` or None for a cell).

    An experiment collected from runs (``Experiment.split``: the ablation's cells, a split experiment's
    models) is split into them: each is a task of its own, and the experiment follows every other
    task, so that it finds its runs finished (or waits on the lock of one still running) and only
    collects them.
    The rest go longest first (``Preset.minutes``; a cell's own estimate)."""
    from ssa_theory import sweep

    threads = torch.get_num_threads()

    def task(ref, p, overrides, seeds):
        return sweep.task(ref, p, overrides, seeds, device=device.type, out=out, threads=threads, force=force)

    timed, collectors = [], []
    for i, (e, config, seeds) in enumerate(plan):
        split = cells.split(e, config, e.presets[preset].minutes)
        if not split:
            timed.append((e.presets[preset].minutes, (e.name, task(refs[i], preset, {}, seeds), i)))
            continue
        cell_preset = "quick" if e.presets[preset].scratch else "default"
        for ref, overrides, minutes in split:
            timed.append((minutes, (f"{e.name} {_label(overrides)}", task(ref, cell_preset, overrides, seeds), None)))
        collectors.append((e.name, task(refs[i], preset, {}, seeds), i))
    timed.sort(key=lambda t: -t[0])  # stable: equal estimates keep the plan's order
    return [job for _, job in timed] + collectors


def _label(overrides) -> str:
    """A cell's name in progress lines: a model's key (a split experiment's), else its overrides."""
    if "model" in overrides:
        return f"model {overrides['model']}"
    return "cell " + " ".join(f"{k}={v}" for k, v in overrides.items())


def _run_parallel(plan, refs, preset, *, device, out, force, pool, log) -> list[tuple[Path, bool]]:
    """Every experiment (the ablation as its cells) as tasks on ``pool`` (``sweep.LocalPool`` or
    ``sweep.DaskPool``), longest first."""
    reused = [is_complete(run_dir(out, e, c, s, device)) and not force for e, c, s in plan]
    jobs = _jobs(plan, refs, preset, device=device, out=out, force=force)
    labels = [label for label, _, _ in jobs]
    started: dict[int, float] = {}
    results: dict[int, tuple[str, str | None]] = {}

    def in_flight() -> str:
        now = time.perf_counter()
        running = [f"{labels[j]} {clock(now - t)}" for j, t in started.items() if j not in results]
        return ", ".join(running) or "nothing"

    def on_event(j: int, status: str, info: str | None) -> None:
        if status == "running":
            started[j] = time.perf_counter()
            log(f"started {labels[j]}; in flight: {in_flight()}")
        elif status in ("done", "failed", "cancelled"):
            results[j] = (status, info)
            took = f" in {clock(time.perf_counter() - started[j])}" if j in started else ""
            plan_index = jobs[j][2]
            what = "reused" if status == "done" and plan_index is not None and reused[plan_index] else status
            log(f"[{sum(r[0] == 'done' for r in results.values())}/{len(jobs)} done] {labels[j]} {what}{took}"
                + (f": {info}" if status != "done" and info else "") + f"; in flight: {in_flight()}")
        elif status == "retrying":
            started.pop(j, None)
            log(f"{labels[j]}: {info}; running it again")

    pool.run([t for _, t, _ in jobs], on_event, heartbeat=lambda: log(f"in flight: {in_flight()}"))
    failed = [f"{labels[j]} ({info})" for j, (status, info) in sorted(results.items()) if status != "done"]
    if failed or len(results) < len(jobs):
        raise ReproduceFailed(f"{len(failed)} of {len(jobs)} tasks did not finish: {'; '.join(failed)}; "
                              "nothing was exported (rerun to retry: finished runs are reused)")
    where = {i: j for j, (_, _, i) in enumerate(jobs) if i is not None}
    return [(Path(results[where[i]][1]), reused[i]) for i in range(len(plan))]


def reproduce(names: Sequence[str], preset: str, *, device: torch.device, out: Path, to: Path,
              force: bool = False, quiet: bool = False, seed: int = 0, log=print, jobs: int = 1, pool=None,
              check: bool = False) -> tuple[Path, list[Claim]]:
    """Run and export ``names`` with ``preset``; render ``paper_repro.md``; return (root written, claims).

    ``jobs`` > 1 (or a ``pool``) runs the experiments in parallel worker processes; ``check`` exports
    into a scratch root (``OUT/reproduce-check-PRESET``) for ``compare_tables``.
    """
    experiments = [registry.get(n) for n in names]
    for e in experiments:
        if preset not in e.presets:
            raise UsageError(f"{e.name} has no preset {preset!r}; presets: {', '.join(e.presets)}")
    plan = _plan(experiments, preset, seed)
    n_tasks = sum(1 + len(cells.split(e, c, 0.0)) for e, c, _ in plan)  # an experiment collected from runs counts them
    parallel = pool is not None or min(jobs, n_tasks) > 1
    refs = [_worker_ref(n) for n in names] if parallel else None  # checked before anything is written
    root = Path(out) / f"reproduce-check-{preset}" if check else export_root(preset, out, to)
    prepare_out(out)
    prepare_out(root / "experiments")
    prepare_out(root / "figures")
    if parallel:
        if pool is None:
            from ssa_theory.sweep import LocalPool

            pool = LocalPool(min(jobs, n_tasks), max_attempts=2)
        runs = _run_parallel(plan, refs, preset, device=device, out=out, force=force, pool=pool, log=log)
    else:
        runs = _run_sequential(plan, preset, device=device, out=out, force=force, quiet=quiet, log=log)
    for (e, _, _), (path, reused) in zip(plan, runs):
        if reused:  # figures are drawn from the saved results: redraw them with the current plotting code
            e.plot(path)
        report.record_claims(e, path, e.presets[preset].scratch)  # the current rules' verdicts, into its metrics.json
        export_run(path, e.name, root)
    _render_report(root, Path(to), scratch=check or root != Path(to), log=log)
    return root, report.all_claims(root)


def _render_report(root: Path, to: Path, *, scratch: bool, log) -> None:
    template = to / PAPER_REPRO
    if not template.is_file():
        log(f"no {PAPER_REPRO} under {to}: tables and figures written, the report skipped")
        return
    kept: list[str] = []
    changed: list[str] = []
    rendered = report.render(template.read_text(), root, kept, changed)
    if changed and not scratch:
        log(f"{PAPER_REPRO}: {len(changed)} quoted number(s) moved; reread their sentences: " + "; ".join(changed))
    if kept:
        log(f"{PAPER_REPRO}: kept {len(kept)} generated block(s) whose results are not under {root}: {', '.join(kept)}")
    target = root / PAPER_REPRO
    if not target.is_file() or target.read_text() != rendered:
        target.write_text(rendered)
    stale = [] if scratch else report.stale_numbers(rendered, root)
    if stale:
        log(f"warning: {target}: prose numbers without a source, or not their source's: {'; '.join(stale)}")


# --- check: a fresh reproduce against the committed results ----------------------------------------------


def _deviation(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """(largest |a - b|, largest |a - b| / max(|a|, |b|), cells outside the tolerance) of two numeric columns."""
    x, y = a.to_numpy(float), b.to_numpy(float)
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.where(both_nan, 0.0, np.abs(x - y))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
    scale = np.maximum(np.abs(x), np.abs(y))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(diff == 0, 0.0, diff / scale)
    bad = int((diff > ATOL + RTOL * np.where(np.isfinite(scale), scale, 0.0)).sum())
    return float(diff.max(initial=0.0)), float(np.nanmax(rel, initial=0.0)), bad


def compare_tables(fresh: Path, committed: Path, names: Sequence[str]) -> pd.DataFrame:
    """Every ``experiments/NAME/*.csv`` of ``fresh`` against ``committed``: one row per table with its
    largest absolute and relative deviation, the column where it is, and whether every cell lies
    within ``ATOL + RTOL max(|a|, |b|)`` (text cells and shapes must match exactly)."""
    rows = []
    for name in names:
        for path in sorted((Path(fresh) / "experiments" / name).glob("*.csv")):
            table = f"{name}/{path.name}"
            other = Path(committed) / "experiments" / name / path.name
            row = {"table": table, "cells": 0, "max_abs_dev": math.nan, "max_rel_dev": math.nan, "column": "",
                   "within": False, "note": ""}
            if not other.is_file():
                rows.append({**row, "note": "not committed"})
                continue
            a, b = pd.read_csv(path), pd.read_csv(other)
            row["cells"] = int(a.size)
            if list(a.columns) != list(b.columns) or a.shape != b.shape:
                rows.append({**row, "note": f"shape {a.shape} vs committed {b.shape}, or other columns"})
                continue
            worst, worst_rel, bad, column, text_diff, bad_columns = 0.0, 0.0, 0, "", [], []
            for c in a.columns:
                if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c]):
                    d, r, n_bad = _deviation(a[c], b[c])
                    bad += n_bad
                    if n_bad:
                        bad_columns.append(c)
                    if d > worst or (not column and d == worst):
                        worst, column = d, c
                    worst_rel = max(worst_rel, r)
                elif not a[c].astype(str).equals(b[c].astype(str)):
                    text_diff.append(c)
            rows.append({**row, "max_abs_dev": worst, "max_rel_dev": worst_rel, "column": column,
                         "within": bad == 0 and not text_diff,
                         "note": f"{bad} cells outside (in {', '.join(bad_columns)})" if bad else (f"text differs in {', '.join(text_diff)}"
                                                                     if text_diff else "")})
    return pd.DataFrame(rows)
