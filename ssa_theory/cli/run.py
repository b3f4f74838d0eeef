"""``run`` and ``export``: one experiment, its headline table; and its results copied where they are committed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssa_theory import rundir
from ssa_theory.cli._common import FORMAT, compute, experiment_options, member_seeds, output_options, resolve


def add(sub, epilog: str) -> None:
    p = sub.add_parser("run", help="run one experiment", description="Run one experiment and print its headline table and the verdict of each claim it checks.",
                       epilog=epilog, formatter_class=FORMAT)
    experiment_options(p)
    output_options(p)
    p.set_defaults(execute=run)
    p = sub.add_parser("export", help="run (or reuse) and copy results into experiments/ and figures/",
                       description="Run (or reuse) an experiment, then copy its tables, metrics and figures to "
                       "TO/experiments/NAME/ and TO/figures/NAME/ (the committed results paper_repro.md shows).",
                       epilog=epilog, formatter_class=FORMAT)
    experiment_options(p)
    output_options(p)
    p.add_argument("--to", type=Path, default=Path("."), metavar="DIR", help="project root to export into (default: .)")
    p.set_defaults(execute=export)


def checked_run(args: argparse.Namespace):
    """Everything ``run`` and ``export`` validate before anything is written."""
    experiment, preset_name, preset, config = resolve(args)
    device = compute(args)
    seeds = member_seeds(args.seed, args.seeds or preset.seeds)
    return experiment, preset_name, config, device, seeds


def run(args: argparse.Namespace, checked=None) -> Path:
    experiment, preset_name, config, device, seeds = checked or checked_run(args)
    rundir.prepare_out(args.out)
    if not args.quiet:
        print(f"{experiment.name} v{experiment.version}, preset {preset_name}, seeds {seeds[0]}..{seeds[-1]}, "
              f"device {device}, {args.threads} thread(s)", file=sys.stderr)
    path, reused = rundir.execute(experiment, config, seeds=seeds, device=device, out=args.out, preset=preset_name,
                           force=args.force, quiet=args.quiet)
    print(f"run directory: {path}" + ("  (reused a finished run; --force recomputes)" if reused else ""))
    print()
    print((path / "tables" / f"{experiment.headline}.md").read_text(), end="")
    _print_claims(experiment, preset_name, path)
    return path


def _print_claims(experiment, preset_name: str, path: Path) -> None:
    """Each claim the experiment checks, read from this run by the rules of ``paper_repro.md``; a quick
    (scratch) preset's verdicts say in the same line that they are a smoke test."""
    from ssa_theory.report import claim_lines, record_claims

    preset = experiment.presets.get(preset_name)
    smoke = bool(preset and preset.scratch)
    try:
        claims = record_claims(experiment, path, smoke)
    except (KeyError, ValueError, FileNotFoundError) as e:  # a config without the models a rule reads
        print(f"\nclaims: not read from this run ({type(e).__name__}: {e}); the default preset has what they need")
        return
    if claims:
        print("\nclaims, by the rules paper_repro.md states (verdict against vanilla; placebo; scrambled twin; "
              f"also in {path / 'metrics.json'} under \"claims\"):")
        print(claim_lines(claims, smoke=smoke), end="")


def export(args: argparse.Namespace) -> None:
    from ssa_theory.reproduce import export_run

    checked = checked_run(args)
    root = Path(args.to)
    rundir.prepare_out(root / "experiments")
    rundir.prepare_out(root / "figures")
    path = run(args, checked)
    tables, figures = export_run(path, checked[0].name, root)
    print(f"\nexported to {tables} and {figures}")
