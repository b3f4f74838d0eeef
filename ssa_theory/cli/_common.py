"""What every verb of the command line shares: the one-line parser, argument types, option groups,
and resolving an experiment, its seeds and the device from the parsed arguments."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ssa_theory import registry
from ssa_theory.config import UsageError, build_config, parse_overrides
from ssa_theory.seeding import member_seeds as _seeds

MAX_SEED = 2**32 - 1
MAX_SEEDS = 1024
DEFAULT_THREADS = 1
PROG = "ssa-theory"
FORMAT = argparse.RawDescriptionHelpFormatter


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def bounded_int(low: int, high: int):
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


n_seeds, threads, count = bounded_int(1, MAX_SEEDS), bounded_int(1, 256), bounded_int(1, 10**6)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs(text: str) -> int:
    """``--jobs``: a count in 1..256, or ``auto`` (one job per usable core)."""
    if text.strip().lower() == "auto":
        return usable_cores()
    return bounded_int(1, 256)(text)


def compute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto uses CUDA when available (default: auto)")
    p.add_argument("--threads", type=threads, default=DEFAULT_THREADS, metavar="N",
                   help=f"PyTorch CPU threads (default: {DEFAULT_THREADS}; part of the run hash)")


def experiment_options(p: argparse.ArgumentParser, seeds: bool = True) -> None:
    p.add_argument("name", metavar="NAME", help="experiment name (see 'list')")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true",
                       help="the tiny preset (seconds on a CPU); same as --preset quick")
    group.add_argument("--preset", default=None, help="a named preset of the experiment (default: default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field (repeatable); tuples are comma-separated")
    p.add_argument("--no-check", action="store_true",
                   help="skip the fast conformance check of plug-in strategies (dotted paths, entry points)")
    if seeds:
        p.add_argument("--seeds", type=n_seeds, default=None, metavar="N",
                       help=f"number of independently initialised models, trained as one batch, 1..{MAX_SEEDS} "
                       "(default: the preset's)")
        p.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, metavar="S",
                       help=f"first member seed, 0..{MAX_SEED} (members: S..S+N-1)")
        compute_options(p)


def output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR",
                   help="root of run directories (default: runs)")
    p.add_argument("--force", action="store_true", help="recompute even if a finished run exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve(args: argparse.Namespace, default_preset: str = "default"):
    experiment = registry.get(args.name)
    why = experiment.lacking()
    if why:  # an optional extra it needs is not installed: one line naming it, before anything is written
        raise UsageError(f"{experiment.name}: {why}")
    preset_name = "quick" if args.quick else (args.preset or default_preset)
    if preset_name not in experiment.presets:
        raise UsageError(f"{args.name} has no preset {preset_name!r}; presets: {', '.join(experiment.presets)}")
    preset = experiment.presets[preset_name]
    overrides = parse_overrides(experiment.config, args.overrides, experiment.name)
    config = build_config(experiment.config, preset.overrides, overrides)
    if not getattr(args, "no_check", False):
        check_plugins(config)
    return experiment, preset_name, preset, config


def plugin_strategies(variants) -> list[str]:
    """The plug-in strategies (from a dotted path or an entry point) that resolved variants place
    (``{name: Variant}``), once each, as the name or path to check them by."""
    found = {}
    for name, variant in variants.items():
        for _, strategy, _ in variant.placements():
            if strategy.origin.startswith(("dotted path", "entry point")):
                found.setdefault(strategy.name, (name if ":" in name else strategy.name))
    return list(found.values())


def check_plugins(config=None, *, variants=None, anyway: str = "run it anyway") -> None:
    """The fast conformance check (causality, padding, finite values and gradients) of every plug-in
    strategy that ``config``'s variant fields (``config.variant_field``, resolved when the config was
    made) or ``variants`` (``{name: Variant}``) place, before anything trains: a ``UsageError``
    naming the failed property."""
    from ssa_theory.testing.conformance import check_strategy

    resolved = {**(getattr(config, "_variants", {}) if config is not None else {}), **(variants or {})}
    for ref in plugin_strategies(resolved):
        report = check_strategy(ref, fast=True)
        if not report.ok:
            raise UsageError(f"strategy {ref!r} fails the conformance check ({report.failures[0]}); fix it, or pass "
                             f"--no-check to {anyway}")


def member_seeds(seed: int, n: int) -> list[int]:
    """The member seeds ``seed..seed+n-1``, refused with a usage error if they run past ``MAX_SEED``."""
    if seed + n - 1 > MAX_SEED:
        raise UsageError(f"--seed {seed} with {n} seeds runs past the largest seed {MAX_SEED}; lower --seed")
    return _seeds(seed, n)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def compute(args: argparse.Namespace):
    """Apply --threads (here and in every child process) and resolve --device (before anything is computed)."""
    from ssa_theory.threads import use_threads

    device = resolve_device(args.device)
    use_threads(args.threads)
    return device


def pool(executor: str, workers: int, address: str | None, device):
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


