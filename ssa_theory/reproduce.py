"""Regenerate everything: run every experiment, export its results, re-render ``paper_repro.md``.

``export_run`` copies one run directory's tables, metrics and figures to ``ROOT/experiments/NAME/``
and ``ROOT/figures/NAME/`` (the committed results). ``reproduce`` does that for every registered
experiment (reusing finished runs), then renders the generated blocks of ``ROOT/paper_repro.md``
(``ssa_theory.report``) and returns every claim with its verdict.

A scratch preset (``--quick``) never touches the committed results: it exports into
``OUT/reproduce-quick/`` and renders a copy of ``paper_repro.md`` there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import torch

from ssa_theory import registry, report
from ssa_theory.claims import Claim
from ssa_theory.config import UsageError
from ssa_theory.progress import stage
from ssa_theory.rundir import execute, prepare_out
from ssa_theory.seeding import member_seeds

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


def reproduce(names: Sequence[str], preset: str, *, device: torch.device, out: Path, to: Path,
              force: bool = False, quiet: bool = False, seed: int = 0, log=print) -> tuple[Path, list[Claim]]:
    """Run and export ``names`` with ``preset``; render ``paper_repro.md``; return (root written, claims)."""
    experiments = [registry.get(n) for n in names]
    for e in experiments:
        if preset not in e.presets:
            raise UsageError(f"{e.name} has no preset {preset!r}; presets: {', '.join(e.presets)}")
    root = export_root(preset, out, to)
    prepare_out(root / "experiments")
    prepare_out(root / "figures")
    for i, e in enumerate(experiments):
        p = e.presets[preset]
        config = e.config(**p.overrides)
        with stage(f"[{i + 1}/{len(experiments)}] {e.name}"):
            path, reused = execute(e, config, seeds=member_seeds(seed, p.seeds), device=device, out=out,
                                   preset=preset, force=force, quiet=quiet)
        if reused:  # figures are drawn from the saved results: redraw them with the current plotting code
            e.plot(path)
        export_run(path, e.name, root)
        log(f"[{i + 1}/{len(experiments)}] {e.name}: {'reused' if reused else 'ran'} {path}")
    template = Path(to) / PAPER_REPRO
    if template.is_file():
        text = template.read_text()
        kept: list[str] = []
        rendered = report.render(text, root, kept)
        if kept:
            log(f"{PAPER_REPRO}: kept {len(kept)} generated block(s) whose results are not under {root}: {', '.join(kept)}")
        target = root / PAPER_REPRO
        if not target.is_file() or target.read_text() != rendered:
            target.write_text(rendered)
        stale = [] if root != Path(to) else report.stale_numbers(rendered, root)
        if stale:
            log(f"warning: {target} quotes numbers that no committed result contains: {', '.join(stale)}")
    else:
        log(f"no {PAPER_REPRO} under {to}: tables and figures written, the report skipped")
    return root, report.all_claims(root)
