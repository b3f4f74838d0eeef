"""``reproduce``: every experiment, the committed tables and figures, and paper_repro.md (or ``--check`` them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssa_theory import registry
from ssa_theory.cli._common import (FORMAT, MAX_SEED, PROG, bounded_int, compute, compute_options, jobs, member_seeds,
                                    output_options, pool, usable_cores)
from ssa_theory.config import UsageError


def add(sub, epilog: str) -> None:
    p = sub.add_parser("reproduce", help="run every experiment; regenerate experiments/, figures/ and paper_repro.md",
                       description="Run (or reuse) every registered experiment, export its tables and figures, and "
                       "re-render the generated parts of paper_repro.md; print every paper claim with our number and "
                       "verdict. --quick is a smoke test that writes only under OUT/reproduce-quick/.",
                       epilog=epilog, formatter_class=FORMAT)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true",
                       help="the quick preset of every experiment, into a scratch folder")
    group.add_argument("--preset", default=None, help="a named preset (default: default)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="only these experiments")
    p.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, metavar="S", help="first member seed")
    compute_options(p)
    output_options(p)
    p.add_argument("--to", type=Path, default=Path("."), metavar="DIR",
                   help="project root holding experiments/, figures/ and paper_repro.md (default: .)")
    p.add_argument("--jobs", type=jobs, default="auto", metavar="N",
                   help="experiments run at once, each in its own process at --threads threads; 'auto' (default) "
                   "is one per usable core (here %d)" % usable_cores())
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: --jobs processes here; dask: dask.distributed (--address, or a LocalCluster of --jobs)")
    p.add_argument("--address", default=None, metavar="SCHEDULER", help="with --executor dask: a running scheduler")
    p.add_argument("--check", action="store_true",
                   help="reproduce into OUT/reproduce-check-PRESET/ and compare every table with the committed one "
                   "(exit 1 if one lies outside the tolerance); the committed results are not touched")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from ssa_theory.report import summary_table
    from ssa_theory.reproduce import ATOL, RTOL, ReproduceFailed, compare_tables, reproduce

    # references (module:attr) stay as given, so that worker processes can import them
    names = registry.names() if args.only is None else \
        list(dict.fromkeys(n if ":" in n else registry.get(n).name for n in args.only))
    absent = {n: why for n in names if (why := registry.get(n).lacking())}  # an optional extra not installed
    if absent and args.only is not None:  # named: an error; else skipped, saying which (after the checks)
        n, why = next(iter(absent.items()))
        raise UsageError(f"{n}: {why}")
    names = [n for n in names if n not in absent]
    skipped = [f"reproduce: skipping {n}: {why}" for n, why in absent.items()]
    preset = "quick" if args.quick else (args.preset or "default")
    experiments = [registry.get(n) for n in names]
    lacking = [e.name for e in experiments if preset not in e.presets]
    if lacking:
        common = sorted(set.intersection(*(set(e.presets) for e in experiments)))
        raise UsageError(f"no preset {preset!r} in {', '.join(lacking)}; presets they all have: {', '.join(common)}")
    member_seeds(args.seed, max(e.presets[preset].seeds for e in experiments))
    if args.check and any(e.presets[preset].scratch for e in experiments):
        raise UsageError(f"--check compares with the committed results, which no scratch preset ({preset}) makes; "
                         "drop --quick, or name the preset the results were made with")
    if args.address and args.executor != "dask":
        raise UsageError("--address is for --executor dask")
    device = compute(args)
    for line in skipped:  # after every check of the arguments: a bad one is still a one-line error
        print(line, file=sys.stderr)
    executor = pool(args.executor, args.jobs, args.address, device) if args.executor == "dask" else None
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not args.quiet:
        print(f"reproduce: {len(names)} experiment(s), preset {preset}, device {device}, "
              f"{'dask' if executor else f'{min(args.jobs, len(names))} job(s)'} at {args.threads} thread(s) each",
              file=sys.stderr)
    try:
        root, claims = reproduce(names, preset, device=device, out=args.out, to=args.to, force=args.force,
                                 quiet=args.quiet, seed=args.seed, log=log, jobs=args.jobs, pool=executor, check=args.check)
    except ReproduceFailed as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    if args.check:
        from ssa_theory.rundir import markdown_table

        table = compare_tables(root, args.to, [registry.get(n).name for n in names])
        print(f"reproduce --check: fresh results in {root} against the committed ones in {Path(args.to) / 'experiments'}; "
              f"a number agrees when |fresh - committed| <= {ATOL:g} + {RTOL:g} max(|fresh|, |committed|)\n")
        print(markdown_table(table), end="")
        bad = int((~table.within).sum()) if len(table) else 0
        print(f"\n{len(table) - bad} of {len(table)} tables within the tolerance")
        return 1 if bad else 0
    print(f"results in {root / 'experiments'}, {root / 'figures'} and {root / 'paper_repro.md'}\n")
    print(summary_table(claims, smoke=args.quick), end="")
    return 0
