"""``list``: the registered experiments (or every temperature strategy), versions and claims."""

from __future__ import annotations

import argparse

from ssa_theory import registry
from ssa_theory.cli._common import FORMAT


def add(sub, epilog: str) -> None:
    p = sub.add_parser("list", help="registered experiments (or temperature strategies), versions and claims",
                       epilog=epilog, formatter_class=FORMAT)
    p.add_argument("--strategies", action="store_true",
                   help="list every temperature strategy instead: side, range, neutral setting, source, origin")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> None:
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
