"""Command line: ``python -m ssa_theory`` or ``ssa-theory``.

Every usage error (unknown experiment, unknown or ill-typed ``--set`` key, impossible value,
unwritable ``--out``, missing CUDA) is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ssa_theory import __version__, registry
from ssa_theory.config import UsageError, build_config, describe, parse_overrides
from ssa_theory.rundir import RunContext, execute, prepare_out
from ssa_theory.seeding import member_seeds

PROG = "ssa-theory"

EXAMPLES = f"""\
examples:
  {PROG} list                                     what can be run, and which paper claim each checks
  {PROG} run graph_transition --quick             a smoke run in seconds
  {PROG} run graph_transition                     the default preset (what paper_repro.md reports)
  {PROG} run graph_transition --seeds 8 --set n_nodes=24 --set max_degree=7
  {PROG} run denoising --set p_noisy=0.5 --set sweep_sigma=2,10
  {PROG} run norm_spikiness --set ssa_variant=ssa_q_tok --set sweep_weight_decay=
  {PROG} config graph_transition --quick          the resolved config, with types
  {PROG} export graph_transition                  run (or reuse) and copy tables/figures into experiments/ and figures/
  {PROG} bench graph_transition --seeds 8         time 8 batched seeds against 1

Runs go to runs/NAME/<hash of the resolved config>/ (config.json, env.json, metrics.json,
tables/, figures/, done). A finished run is reused unless --force.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {value})")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer (got {text!r})") from None


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

    sub.add_parser("list", help="registered experiments, their versions and claims", epilog=EXAMPLES,
                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def experiment_options(p: argparse.ArgumentParser, seeds: bool = True) -> None:
        p.add_argument("name", metavar="NAME", help="experiment name (see 'list')")
        group = p.add_mutually_exclusive_group()
        group.add_argument("--quick", action="store_true", help="the tiny preset (seconds on a CPU); same as --preset quick")
        group.add_argument("--preset", default=None, help="a named preset of the experiment (default: default)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config field (repeatable); tuples are comma-separated")
        if seeds:
            p.add_argument("--seeds", type=_positive_int, default=None, metavar="N",
                           help="number of independently initialised models, trained as one batch (default: the preset's)")
            p.add_argument("--seed", type=_int, default=0, metavar="S", help="first member seed (members: S..S+N-1)")
            p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                           help="auto uses CUDA when available (default: auto)")

    def run_options(p: argparse.ArgumentParser) -> None:
        experiment_options(p)
        p.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR", help="root of run directories (default: runs)")
        p.add_argument("--force", action="store_true", help="recompute even if a finished run exists")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

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
    p = sub.add_parser("config", help="show an experiment's resolved config", epilog=EXAMPLES, formatter_class=fmt)
    experiment_options(p, seeds=False)
    p = sub.add_parser("bench", help="time N batched seeds against 1 seed, side by side",
                       description="Time the experiment's training with 1 seed and with N seeds, interleaved, "
                       "and report the median ratio. Defaults to the quick preset.", epilog=EXAMPLES, formatter_class=fmt)
    experiment_options(p)
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed repetitions of each (default: 3)")
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


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def _cmd_list(args: argparse.Namespace) -> None:
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


def _run(args: argparse.Namespace) -> Path:
    experiment, preset_name, preset, config = _resolve(args)
    device = _device(args.device)
    seeds = member_seeds(args.seed, args.seeds or preset.seeds)
    prepare_out(args.out)
    if not args.quiet:
        print(f"{experiment.name} v{experiment.version}, preset {preset_name}, seeds {seeds[0]}..{seeds[-1]}, device {device}",
              file=sys.stderr)
    path, reused = execute(experiment, config, seeds=seeds, device=device, out=args.out, preset=preset_name,
                           force=args.force, quiet=args.quiet)
    print(f"run directory: {path}" + ("  (reused a finished run; --force recomputes)" if reused else ""))
    print()
    print((path / "tables" / f"{experiment.headline}.md").read_text(), end="")
    return path


def _cmd_export(args: argparse.Namespace) -> None:
    root = Path(args.to)
    prepare_out(root / "experiments")
    prepare_out(root / "figures")
    path = _run(args)
    tables, figures = root / "experiments" / args.name, root / "figures" / args.name
    for dest in (tables, figures):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
    for f in sorted((path / "tables").iterdir()):
        shutil.copy2(f, tables / f.name)
    for name in ("config.json", "env.json", "metrics.json"):
        shutil.copy2(path / name, tables / name)
    for f in sorted((path / "figures").iterdir()):
        shutil.copy2(f, figures / f.name)
    print(f"\nexported to {tables} and {figures}")


def _cmd_bench(args: argparse.Namespace) -> None:
    experiment, preset_name, preset, config = _resolve(args, default_preset="quick")
    device = _device(args.device)
    n = args.seeds or 8
    counts = [1, n]
    times: dict[int, list[float]] = {c: [] for c in counts}
    print(f"bench {experiment.name}, preset {preset_name}, device {device}: 1 seed vs {n} seeds, "
          f"{args.repeats} interleaved repeats", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats + 1):  # the first round warms up and is not counted
            for c in counts:
                d = Path(tmp) / f"{r}-{c}"
                d.mkdir()
                start = time.perf_counter()
                experiment.run(config, RunContext(d, member_seeds(args.seed, c), device, quiet=True))
                if r:
                    times[c].append(time.perf_counter() - start)
    med = {c: statistics.median(times[c]) for c in counts}
    print("| seeds | median seconds | runs |\n|---|---|---|")
    for c in counts:
        print(f"| {c} | {med[c]:.2f} | {', '.join(f'{t:.2f}' for t in times[c])} |")
    print(f"\nratio {n} seeds / 1 seed: {med[n] / med[1]:.2f} (a Python loop over seeds would be about {n})")


COMMANDS = {"list": _cmd_list, "config": _cmd_config, "run": _run, "export": _cmd_export, "bench": _cmd_bench}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        COMMANDS[args.command](args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no run directory was left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0
    return 0
