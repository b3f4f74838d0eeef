"""``card``: one strategy's report card, trained as a row of the ablation (``ssa_theory.card``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssa_theory.cli._common import FORMAT, compute_options, jobs, member_seeds, n_seeds
from ssa_theory.config import UsageError


def add(sub, epilog: str) -> None:
    p = sub.add_parser("card", help="one strategy's report card: every ablation task, beside vanilla, global and ssa",
                       description="Train STRATEGY as a row of the ablation (its cells: a finished one is reused) beside "
                       "vanilla, the range-matched global scale and full SSA, and write card.md, card.csv and "
                       "card.png under OUT/cards/NAME/.", epilog=epilog, formatter_class=FORMAT)
    p.add_argument("strategy", metavar="STRATEGY",
                   help="a variant or strategy name (see 'list --strategies'), a dotted path module:NAME, or an "
                        "entry-point strategy")
    p.add_argument("--quick", action="store_true", help="every cell at the ablation's quick size (minutes on 2 cores)")
    p.add_argument("--seeds", type=n_seeds, default=None, metavar="N", help="seeds per cell (default: the ablation's)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="first member seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR",
                   help="root of run directories (default: runs)")
    p.add_argument("--jobs", type=jobs, default=1, metavar="N", help="cells trained at once, each in its own process "
                   "(default 1; auto: one per core)")
    p.add_argument("--force", action="store_true", help="retrain every cell even if a finished one exists")
    p.add_argument("--no-check", action="store_true",
                   help="make the card of a plug-in strategy that fails the fast conformance check (the card says which "
                        "properties fail)")
    compute_options(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from ssa_theory import registry, rundir
    from ssa_theory.card import make_card
    from ssa_theory.cli._common import check_plugins, compute
    from ssa_theory.variants import get_variant

    try:
        variant = get_variant(args.strategy)  # the user's name, resolved once: the card takes the object
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not args.no_check:
        check_plugins(variants={args.strategy: variant}, anyway="make its card anyway")
    preset = registry.get("ablation").presets["quick" if args.quick else "default"]
    seeds = member_seeds(args.seed, args.seeds or preset.seeds)
    device = compute(args)
    rundir.prepare_out(args.out)
    folder = make_card(variant, quick=args.quick, seeds=seeds, out=args.out, device=device, jobs=args.jobs,
                       no_check=args.no_check, force=args.force)
    print(f"card: {folder / 'card.md'}")
    print()
    print((folder / "card.md").read_text().split("## Per task", 1)[1].split("How to read it", 1)[0].strip())
    return 0
