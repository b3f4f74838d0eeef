"""Command line: ``python -m ssa_theory`` or ``ssa-theory``.

Every usage error (unknown experiment, unknown or ill-typed ``--set`` key, impossible or
non-finite value, unwritable ``--out``, missing CUDA) is one line on stderr and exit code 2, with
nothing written. A run whose model diverges (``ssa_theory.train``) is one line and exit code 1,
with nothing saved.

Threads: every computing command sets PyTorch's CPU threads to ``--threads`` (default 1). These
models are small, so extra threads buy little, while several processes sharing a few cores with
PyTorch's default (one thread per core each) can run 10-20x slower; and the thread count changes
the last bits of CPU results, so it is part of a run's hash.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from ssa_theory import __version__, registry
from ssa_theory.config import UsageError, build_config, describe, parse_overrides
from ssa_theory.rundir import execute, prepare_out
from ssa_theory.seeding import member_seeds
from ssa_theory.train import Diverged

MAX_SEED = 2**32 - 1
MAX_SEEDS = 1024
DEFAULT_THREADS = 1

PROG = "ssa-theory"

EXAMPLES = f"""\
examples:
  {PROG} list                                     what can be run, and which paper claim each checks
  {PROG} list --strategies                        every temperature strategy (built-in or plug-in) and its source
  {PROG} run graph_transition --quick             a smoke run in seconds
  {PROG} run graph_transition                     the default preset (what paper_repro.md reports)
  {PROG} run graph_transition --seeds 8 --set n_nodes=24 --set max_degree=7
  {PROG} run denoising --set p_noisy=0.5 --set sweep_sigma=2,10
  {PROG} run norm_spikiness --set ssa_variant=ssa_q_tok --set sweep_weight_decay=
  {PROG} config graph_transition --quick          the resolved config, with types
  {PROG} export graph_transition                  run (or reuse) and copy tables/figures into experiments/ and figures/
  {PROG} reproduce                                every experiment, committed tables, figures and paper_repro.md
  {PROG} reproduce --quick                        the same as a smoke test, into runs/reproduce-quick/
  {PROG} sweep graph_transition --grid smoothing=0.02,0.05,0.1 --seeds 2 --quick --executor dask --workers 2
  {PROG} collect runs/sweeps/graph_transition-HASH  tidy tables and a figure of a sweep
  {PROG} bench attention                          every attention variant against the fused SDPA kernel
  {PROG} bench module                             the public SelectiveAttention against nanoGPT's attention
  {PROG} bench seeds graph_transition --seeds 16  time 16 batched seeds against 1

Runs go to runs/NAME/<hash of the resolved config>/ (config.json, env.json, metrics.json,
tables/, figures/, done). A finished run is reused unless --force.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _bounded_int(low: int, high: int):
    """An argparse type: an integer in [low, high], else a one-line error saying so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}] (got {text!r})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}] (got {value})")
        return value
    return parse


_n_seeds, _threads, _count = _bounded_int(1, MAX_SEEDS), _bounded_int(1, 256), _bounded_int(1, 10**6)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _jobs(text: str) -> int:
    """``--jobs``: a count in 1..256, or ``auto`` (one job per usable core)."""
    if text.strip().lower() == "auto":
        return usable_cores()
    return _bounded_int(1, 256)(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Controlled experiments on attention temperature and contextual sparsity "
        "(Selective Attention, Zhang et al., NeurIPS 2024).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", help="registered experiments (or temperature strategies), versions and claims",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", action="store_true",
                   help="list every temperature strategy instead: side, range, neutral setting, source, origin")

    def compute_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto uses CUDA when available (default: auto)")
        p.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N",
                       help=f"PyTorch CPU threads (default: {DEFAULT_THREADS}; part of the run hash)")

    def experiment_options(p: argparse.ArgumentParser, seeds: bool = True) -> None:
        p.add_argument("name", metavar="NAME", help="experiment name (see 'list')")
        group = p.add_mutually_exclusive_group()
        group.add_argument("--quick", action="store_true", help="the tiny preset (seconds on a CPU); same as --preset quick")
        group.add_argument("--preset", default=None, help="a named preset of the experiment (default: default)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config field (repeatable); tuples are comma-separated")
        if seeds:
            p.add_argument("--seeds", type=_n_seeds, default=None, metavar="N",
                           help=f"number of independently initialised models, trained as one batch, 1..{MAX_SEEDS} "
                           "(default: the preset's)")
            p.add_argument("--seed", type=_bounded_int(0, MAX_SEED), default=0, metavar="S",
                           help=f"first member seed, 0..{MAX_SEED} (members: S..S+N-1)")
            compute_options(p)

    def shape_options(p: argparse.ArgumentParser, variants: list[str] | None) -> None:
        """The attention benchmarks' shape, variants, rounds, device and threads."""
        for flag, default in (("--batch", 8), ("--heads", 4), ("--length", 1024), ("--d-head", 64)):
            p.add_argument(flag, type=_count, default=default)
        p.add_argument("--variants", nargs="+", default=variants, metavar="NAME",
                       help=f"default: {' '.join(variants) if variants else 'every variant'}")
        p.add_argument("--repeats", type=_count, default=5, help="timed rounds (default: 5)")
        compute_options(p)

    def output_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR", help="root of run directories (default: runs)")
        p.add_argument("--force", action="store_true", help="recompute even if a finished run exists")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run_options(p: argparse.ArgumentParser) -> None:
        experiment_options(p)
        output_options(p)

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("run", help="run one experiment", description="Run one experiment and print its headline table.",
                       epilog=EXAMPLES, formatter_class=fmt)
    run_options(p)
    p = sub.add_parser("export", help="run (or reuse) and copy results into experiments/ and figures/",
                       description="Run (or reuse) an experiment, then copy its tables, metrics and figures to "
                       "TO/experiments/NAME/ and TO/figures/NAME/ (the committed results paper_repro.md shows).",
                       epilog=EXAMPLES, formatter_class=fmt)
    run_options(p)
    p.add_argument("--to", type=Path, default=Path("."), metavar="DIR", help="project root to export into (default: .)")
    p = sub.add_parser("reproduce", help="run every experiment; regenerate experiments/, figures/ and paper_repro.md",
                       description="Run (or reuse) every registered experiment, export its tables and figures, and "
                       "re-render the generated parts of paper_repro.md; print every paper claim with our number and "
                       "verdict. --quick is a smoke test that writes only under OUT/reproduce-quick/.",
                       epilog=EXAMPLES, formatter_class=fmt)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="the quick preset of every experiment, into a scratch folder")
    group.add_argument("--preset", default=None, help="a named preset (default: default)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="only these experiments")
    p.add_argument("--seed", type=_bounded_int(0, MAX_SEED), default=0, metavar="S", help="first member seed")
    compute_options(p)
    output_options(p)
    p.add_argument("--to", type=Path, default=Path("."), metavar="DIR",
                   help="project root holding experiments/, figures/ and paper_repro.md (default: .)")
    p.add_argument("--jobs", type=_jobs, default="auto", metavar="N",
                   help="experiments run at once, each in its own process at --threads threads; 'auto' (default) "
                   "is one per usable core (here %d)" % usable_cores())
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: --jobs processes here; dask: dask.distributed (--address, or a LocalCluster of --jobs)")
    p.add_argument("--address", default=None, metavar="SCHEDULER", help="with --executor dask: a running scheduler")
    p.add_argument("--check", action="store_true",
                   help="reproduce into OUT/reproduce-check-PRESET/ and compare every table with the committed one "
                   "(exit 1 if one lies outside the tolerance); the committed results are not touched")
    p = sub.add_parser("sweep", help="a grid of configs, one task per cell, on a process pool or a Dask cluster",
                       description="Run every cell of a grid (the product of the --grid values over the preset's "
                       "config) as an ordinary run: finished cells are reused, an interrupted sweep resumes, a failed "
                       "cell does not stop the others. Then collect the results. Exit code 0 only if every cell "
                       "finished. Tuple-valued keys separate their values with ';'.", epilog=EXAMPLES, formatter_class=fmt)
    experiment_options(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", required=True,
                   help="a swept key and its values (repeatable)")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: a process pool here; dask: dask.distributed (pip install 'ssa_theory[dask]')")
    p.add_argument("--address", default=None, metavar="SCHEDULER", help="join a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=_bounded_int(1, 1024), default=2, metavar="N",
                   help="worker processes of the local pool or of the LocalCluster (default: 2)")
    p.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR", help="root of run directories (default: runs)")
    p = sub.add_parser("collect", help="tidy tables and a figure from a sweep directory", epilog=EXAMPLES,
                       formatter_class=fmt)
    p.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="OUT/sweeps/NAME-HASH, as printed by sweep")
    p = sub.add_parser("config", help="show an experiment's resolved config", epilog=EXAMPLES, formatter_class=fmt)
    experiment_options(p, seeds=False)
    p = sub.add_parser("bench", help="benchmarks: attention variants against SDPA; batched seeds against one",
                       epilog=EXAMPLES, formatter_class=fmt)
    bench = p.add_subparsers(dest="bench", metavar="WHAT", parser_class=_Parser)
    bench.required = True
    b = bench.add_parser("attention", help="every attention variant against F.scaled_dot_product_attention",
                         description="Forward plus backward of causal self-attention: every named variant against a "
                         "reference layer on F.scaled_dot_product_attention(is_causal=True) with the same projections, "
                         "interleaved, median ratio.", epilog=EXAMPLES, formatter_class=fmt)
    shape_options(b, variants=None)
    b = bench.add_parser("module", help="ssa_theory.nn.SelectiveAttention against a nanoGPT-style attention module",
                         description="Forward plus backward of the public (B, L, D) module of each variant against "
                         "nanoGPT's causal self-attention of the same shape (qkv nn.Linear, SDPA is_causal=True, output "
                         "nn.Linear), interleaved, median ratio; and the new parameters of each variant in a "
                         "GPT-2-small-shaped layer (D 768, 12 heads).", epilog=EXAMPLES, formatter_class=fmt)
    shape_options(b, variants=["vanilla", "ssa"])
    b = bench.add_parser("seeds", help="time N batched seeds against 1, side by side",
                         description="Time the experiment's training with 1 seed and with N seeds, interleaved, "
                         "and report the median ratio. Defaults to the quick preset.", epilog=EXAMPLES, formatter_class=fmt)
    experiment_options(b)
    b.add_argument("--repeats", type=_count, default=3, help="timed repetitions of each (default: 3)")
    return parser


def _resolve(args: argparse.Namespace, default_preset: str = "default"):
    experiment = registry.get(args.name)
    preset_name = "quick" if args.quick else (args.preset or default_preset)
    if preset_name not in experiment.presets:
        raise UsageError(f"{args.name} has no preset {preset_name!r}; presets: {', '.join(experiment.presets)}")
    preset = experiment.presets[preset_name]
    overrides = parse_overrides(experiment.config, args.overrides, experiment.name)
    config = build_config(experiment.config, preset.overrides, overrides)
    return experiment, preset_name, preset, config


def _member_seeds(seed: int, n: int) -> list[int]:
    """The member seeds ``seed..seed+n-1``, refused with a usage error if they run past ``MAX_SEED``."""
    if seed + n - 1 > MAX_SEED:
        raise UsageError(f"--seed {seed} with {n} seeds runs past the largest seed {MAX_SEED}; lower --seed")
    return member_seeds(seed, n)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def _compute(args: argparse.Namespace):
    """Apply --threads and resolve --device (before anything is computed)."""
    import torch

    device = _device(args.device)
    torch.set_num_threads(args.threads)
    return device


def _cmd_list(args: argparse.Namespace) -> None:
    if args.strategies:
        from ssa_theory.nn import strategies
        from ssa_theory.rundir import markdown_table
        import pandas as pd

        rows = [{"strategy": s["name"], "side": s["side"], "combine": s["combine"],
                 "range": f"({s['range'][0]:g}, {s['range'][1]:g})", "neutral": s["neutral"] or "none",
                 "needs": ", ".join(s["needs"]) or "-", "formula": s["about"], "source": s["source"],
                 "origin": s["origin"]} for s in strategies()]
        print(markdown_table(pd.DataFrame(rows)), end="")
        return
    rows = [(e.name, e.version, e.claim) for e in (registry.get(n) for n in registry.names())]
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  version  claim checked")
    for name, version, claim in rows:
        print(f"{name:<{width}}  {version:<7}  {claim}")


def _cmd_config(args: argparse.Namespace) -> None:
    experiment, preset_name, preset, config = _resolve(args)
    print(f"# {experiment.name} v{experiment.version}, preset {preset_name} ({preset.seeds} seeds): {preset.about}")
    for key, typ, value in describe(config):
        print(f"{key} = {value}    ({typ})")


def _checked_run(args: argparse.Namespace):
    """Everything ``run`` and ``export`` validate before anything is written."""
    experiment, preset_name, preset, config = _resolve(args)
    device = _compute(args)
    seeds = _member_seeds(args.seed, args.seeds or preset.seeds)
    return experiment, preset_name, config, device, seeds


def _run(args: argparse.Namespace, checked=None) -> Path:
    experiment, preset_name, config, device, seeds = checked or _checked_run(args)
    prepare_out(args.out)
    if not args.quiet:
        print(f"{experiment.name} v{experiment.version}, preset {preset_name}, seeds {seeds[0]}..{seeds[-1]}, "
              f"device {device}, {args.threads} thread(s)", file=sys.stderr)
    path, reused = execute(experiment, config, seeds=seeds, device=device, out=args.out, preset=preset_name,
                           force=args.force, quiet=args.quiet)
    print(f"run directory: {path}" + ("  (reused a finished run; --force recomputes)" if reused else ""))
    print()
    print((path / "tables" / f"{experiment.headline}.md").read_text(), end="")
    return path


def _cmd_export(args: argparse.Namespace) -> None:
    from ssa_theory.reproduce import export_run

    checked = _checked_run(args)
    root = Path(args.to)
    prepare_out(root / "experiments")
    prepare_out(root / "figures")
    path = _run(args, checked)
    tables, figures = export_run(path, checked[0].name, root)
    print(f"\nexported to {tables} and {figures}")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from ssa_theory.report import summary_table
    from ssa_theory.reproduce import ATOL, RTOL, ReproduceFailed, compare_tables, reproduce

    # references (module:attr) stay as given, so that worker processes can import them
    names = registry.names() if args.only is None else \
        list(dict.fromkeys(n if ":" in n else registry.get(n).name for n in args.only))
    preset = "quick" if args.quick else (args.preset or "default")
    experiments = [registry.get(n) for n in names]
    lacking = [e.name for e in experiments if preset not in e.presets]
    if lacking:
        common = sorted(set.intersection(*(set(e.presets) for e in experiments)))
        raise UsageError(f"no preset {preset!r} in {', '.join(lacking)}; presets they all have: {', '.join(common)}")
    _member_seeds(args.seed, max(e.presets[preset].seeds for e in experiments))
    if args.check and any(e.presets[preset].scratch for e in experiments):
        raise UsageError(f"--check compares with the committed results, which no scratch preset ({preset}) makes; "
                         "drop --quick, or name the preset the results were made with")
    if args.address and args.executor != "dask":
        raise UsageError("--address is for --executor dask")
    device = _compute(args)
    pool = _pool(args.executor, args.jobs, args.address, device) if args.executor == "dask" else None
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not args.quiet:
        print(f"reproduce: {len(names)} experiment(s), preset {preset}, device {device}, "
              f"{'dask' if pool else f'{min(args.jobs, len(names))} job(s)'} at {args.threads} thread(s) each",
              file=sys.stderr)
    try:
        root, claims = reproduce(names, preset, device=device, out=args.out, to=args.to, force=args.force,
                                 quiet=args.quiet, seed=args.seed, log=log, jobs=args.jobs, pool=pool, check=args.check)
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
    print(summary_table(claims), end="")
    return 0


def _pool(executor: str, workers: int, address: str | None, device):
    """The pool a sweep or a parallel reproduce runs on; a usage error if Dask is asked for but missing."""
    from ssa_theory import sweep

    if executor == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--executor dask needs dask.distributed: pip install 'ssa_theory[dask]'") from None
        return sweep.DaskPool(workers, address, gpu=device.type == "cuda")
    if address:
        raise UsageError("--address is for --executor dask")
    return sweep.LocalPool(workers)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ssa_theory import sweep
    from ssa_theory.rundir import read_json

    experiment, preset_name, preset, config = _resolve(args)
    if args.overrides:
        raise UsageError("sweep takes no --set: put fixed values in a one-value --grid key=value")
    grid = sweep.parse_grid(experiment, args.grid)
    sweep.check_cells(experiment, preset_name, grid)
    seeds = _member_seeds(args.seed, args.seeds or preset.seeds)
    device = _device(args.device)
    pool = _pool(args.executor, args.workers, args.address, device)
    prepare_out(args.out)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        sdir = sweep.run_sweep(args.name, preset_name, grid, seeds=seeds, device=device.type,
                               out=args.out, threads=args.threads, pool=pool, log=log)
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


def _cmd_collect(args: argparse.Namespace) -> None:
    from ssa_theory import sweep

    table, figure = sweep.collect(args.sweep_dir)
    print((Path(table)).read_text(), end="")
    print(f"\ntables in {args.sweep_dir}; figure {figure}")


def _cmd_bench(args: argparse.Namespace) -> None:
    import pandas as pd

    from ssa_theory import bench
    from ssa_theory.rundir import markdown_table

    if args.bench in ("attention", "module"):
        for name in args.variants or []:
            from ssa_theory.attention import get_variant

            try:
                get_variant(name)
            except ValueError as e:
                raise UsageError(str(e)) from None
        device = _compute(args)
        if args.bench == "module":
            from ssa_theory.nn import parameter_counts

            print(f"bench module: SelectiveAttention vs nanoGPT's attention, batch {args.batch}, heads {args.heads}, "
                  f"length {args.length}, d_head {args.d_head}, causal, forward+backward, device {device}, "
                  f"{args.threads} thread(s), {args.repeats} rounds", flush=True)
            df = bench.module(batch=args.batch, heads=args.heads, length=args.length, d_head=args.d_head,
                              repeats=args.repeats, variants=args.variants, device=device)
            print(markdown_table(df), end="")
            print("\nnew parameters per variant in a GPT-2-small-shaped layer (D 768, 12 heads; the paper: under 0.5%):\n")
            from ssa_theory.attention import all_variants

            print(markdown_table(pd.DataFrame(parameter_counts(all_variants()))), end="")
            print(f"\nflash kernel on the plain causal path: {bench.flash_without_mask(device)}")
            return
        print(f"bench attention: batch {args.batch}, heads {args.heads}, length {args.length}, d_head {args.d_head}, "
              f"causal, forward+backward, device {device}, {args.threads} thread(s), {args.repeats} rounds", flush=True)
        df = bench.attention(batch=args.batch, heads=args.heads, length=args.length, d_head=args.d_head,
                             repeats=args.repeats, variants=args.variants, device=device)
        print(markdown_table(df), end="")
        return
    experiment, preset_name, preset, config = _resolve(args, default_preset="quick")
    device = _compute(args)
    n = len(_member_seeds(args.seed, args.seeds or 8))
    print(f"bench seeds {experiment.name}, preset {preset_name}, device {device}, {args.threads} thread(s): "
          f"1 seed vs {n} seeds, {args.repeats} interleaved repeats", flush=True)
    df = bench.seeds(experiment, config, n_seeds=n, repeats=args.repeats, device=device, seed=args.seed)
    print(markdown_table(df), end="")
    print(f"\nratio {n} seeds / 1 seed: {df.ratio_to_1.iloc[-1]:.2f} (a Python loop over seeds would be about {n})")


COMMANDS = {"list": _cmd_list, "config": _cmd_config, "run": _run, "export": _cmd_export,
            "reproduce": _cmd_reproduce, "sweep": _cmd_sweep, "collect": _cmd_collect, "bench": _cmd_bench}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        rc = COMMANDS[args.command](args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"{PROG}: error: {e}; nothing was saved (a smaller --set lr=... usually helps)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no run directory was left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0
    return rc if isinstance(rc, int) else 0
