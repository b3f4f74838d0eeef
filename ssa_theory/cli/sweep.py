"""``sweep`` and ``collect``: a grid of configs on a process pool or a Dask cluster, and its tidy tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssa_theory import rundir
from ssa_theory.cli._common import (FORMAT, PROG, bounded_int, check_plugins, experiment_options, member_seeds, pool,
                                    resolve,
                                    resolve_device)
from ssa_theory.config import UsageError


def add(sub, epilog: str) -> None:
    p = sub.add_parser("sweep", help="a grid of configs, one task per cell, on a process pool or a Dask cluster",
                       description="Run every cell of a grid (the product of the --grid values over the preset's "
                       "config) as an ordinary run: finished cells are reused, an interrupted sweep resumes, a failed "
                       "cell does not stop the others. Then collect the results. Exit code 0 only if every cell "
                       "finished. Tuple-valued keys separate their values with ';'.", epilog=epilog, formatter_class=FORMAT)
    experiment_options(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", required=True,
                   help="a swept key and its values (repeatable)")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: a process pool here; dask: dask.distributed (pip install 'ssa_theory[dask]')")
    p.add_argument("--address", default=None, metavar="SCHEDULER",
                   help="join a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=bounded_int(1, 1024), default=2, metavar="N",
                   help="worker processes of the local pool or of the LocalCluster (default: 2)")
    p.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR",
                   help="root of run directories (default: runs)")
    p.set_defaults(execute=execute)
    p = sub.add_parser("collect", help="tidy tables and a figure from a sweep directory", epilog=epilog,
                       formatter_class=FORMAT)
    p.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="OUT/sweeps/NAME-HASH, as printed by sweep")
    p.set_defaults(execute=collect)


def execute(args: argparse.Namespace) -> int:
    from ssa_theory import sweep
    from ssa_theory.rundir import read_json

    experiment, preset_name, preset, config = resolve(args)
    if args.overrides:
        raise UsageError("sweep takes no --set: put fixed values in a one-value --grid key=value")
    grid = sweep.parse_grid(experiment, args.grid)
    sweep.check_cells(experiment, preset_name, grid, check=None if args.no_check else check_plugins)
    seeds = member_seeds(args.seed, args.seeds or preset.seeds)
    device = resolve_device(args.device)
    executor = pool(args.executor, args.workers, args.address, device)
    rundir.prepare_out(args.out)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        sdir = sweep.run_sweep(args.name, preset_name, grid, seeds=seeds, device=device.type,
                               out=args.out, threads=args.threads, pool=executor, log=log)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: queued cells cancelled, running ones stopped; rerun the same command to "
              "resume (finished cells are reused)", file=sys.stderr)
        return 130
    print(f"sweep directory: {sdir}")
    manifest = read_json(sdir / sweep.MANIFEST)
    failed = [c for c in manifest["cells"] if c["status"] != "done"]
    if len(failed) < len(manifest["cells"]):
        table, figure = sweep.collect(sdir)
        print(f"collected: {table}, {figure}")
    if failed:
        print(f"{PROG}: {len(failed)} of {len(manifest['cells'])} cells did not finish; rerun the same command "
              "to retry them (finished cells are reused)", file=sys.stderr)
        return 1
    return 0


def collect(args: argparse.Namespace) -> None:
    from ssa_theory import sweep

    table, figure = sweep.collect(args.sweep_dir)
    print((Path(table)).read_text(), end="")
    print(f"\ntables in {args.sweep_dir}; figure {figure}")
