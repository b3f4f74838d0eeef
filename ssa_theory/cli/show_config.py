"""``config``: an experiment's resolved config, with the type, allowed values and meaning of each key."""

from __future__ import annotations

import argparse

from ssa_theory.cli._common import FORMAT, experiment_options, resolve
from ssa_theory.config import describe


def add(sub, epilog: str) -> None:
    p = sub.add_parser("config", help="show an experiment's resolved config", epilog=epilog, formatter_class=FORMAT)
    experiment_options(p, seeds=False)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> None:
    experiment, preset_name, preset, config = resolve(args)
    print(f"# {experiment.name} v{experiment.version}, preset {preset_name} ({preset.seeds} seeds): {preset.about}")
    for key, typ, value, note, allowed in describe(config):
        print(f"{key} = {value}    ({typ}: {allowed})" + (f"  # {note}" if note else ""))
