"""The core's version: one constant for the numbers every experiment runs through.

``VERSION`` enters every run hash (``ssa_theory.rundir.run_payload``), beside each experiment's own
version and its shared tasks' versions, so that a cached run made by a core that computes other
numbers is never reused. It follows the numbers, not the code: it is pinned to the golden outputs of
``ssa_theory.golden`` (every variant through both attention layers, forward and backward, a few
training steps, the statistics and the closed forms), recorded in ``core_golden.json``. A refactor
that leaves them unchanged keeps the version and every run hash; one that moves them must bump it.

``check()`` compares today's outputs with the record: within tolerance on any machine, and bit for
bit on a machine kind that recorded its digests (``golden`` says how and why). ``tests/test_core.py``
fails when they disagree. Then either undo the change, or add a version to ``HISTORY`` (one line: what
moved), set ``VERSION`` to it and record the new outputs::

    python -m ssa_theory.core            # does this code compute version VERSION's numbers?
    python -m ssa_theory.core --record   # after a bump: record them (refused if they moved without one)

``--record`` on an unchanged version only adds what is new (this machine kind's digests, outputs of a
new variant); it refuses to overwrite a number that moved.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# version -> what changed in the numbers (append only; before version 9 a version pinned a
# fingerprint of the source text of the core modules)
HISTORY = {
    "1": "the first core",
    "2": "the strategy table (ssa_theory.strategies) joins the core; the layer applies it",
    "3": "one helper each for empty rows, the sink's key and bias, and parameter initialisation",
    "4": "parameters_of / token_argument accessors, fit's one-sync monitor, the frontier's solver",
    "5": "intervals inside their measure's range (stats.RANGES); the one budget, Attention.weight_l2",
    "6": "one attention core (functional.py) under both layers; masks by name, positions after padding",
    "7": "scipy imported where used (t.ppf's own stdtrit); binomial_ci, survival; sub-streams, init_twin, placebo",
    "8": "the cosine geometry on the fused kernel and in the public layer; fit's log_at; critical scaling's "
         "closed form. Pinned to golden outputs (core_golden.json) from here on",
}
VERSION = "8"
GOLDEN = Path(__file__).with_name("core_golden.json")


def group(name: str) -> str:
    """The group an output's bit-for-bit digest is kept under: its first two path parts."""
    return "/".join(name.split("/")[:2])


@dataclass
class Report:
    """What ``check`` found: ``moved`` (outputs outside the tolerance, with their relative change),
    ``missing`` (recorded outputs no longer computed), ``new`` (computed outputs not recorded),
    ``bits`` (groups whose bit-for-bit digest differs; None where this machine kind has no record),
    ``version`` (the recorded version, which must be ``VERSION``)."""

    version: str | None
    kind: str
    moved: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    bits: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.version == VERSION and not self.moved and not self.missing and not self.bits

    def __str__(self) -> str:
        if self.version != VERSION:
            return (f"core_golden.json records version {self.version}, but core.VERSION is {VERSION}: record "
                    "this version's outputs with `python -m ssa_theory.core --record`")
        lines = []
        if self.moved:
            worst = sorted(self.moved.items(), key=lambda kv: -kv[1])
            lines.append(f"{len(self.moved)} golden outputs moved beyond the tolerance (largest: "
                         + ", ".join(f"{k} by {v:.2g}" for k, v in worst[:4]) + ")")
        if self.missing:
            lines.append(f"{len(self.missing)} recorded outputs are no longer computed ({', '.join(self.missing[:4])})")
        if self.bits:
            lines.append(f"{len(self.bits)} groups differ bit for bit on {self.kind} ({', '.join(self.bits[:6])})")
        if not lines:
            exact = "bit for bit" if self.bits is not None else "within tolerance (no bit-for-bit record for this kind)"
            return f"the core computes version {VERSION}'s numbers, {exact} on {self.kind}"
        return ("; ".join(lines) + f". If the numbers were meant to move, add version {int(VERSION) + 1} to "
                "core.HISTORY, set core.VERSION to it and run `python -m ssa_theory.core --record`; otherwise "
                "undo the change")


def _load(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {"version": None, "summaries": {}, "exact": {}}


def _relative_change(a: list[float], b: list[float]) -> float:
    """How far summary ``a`` is from the recorded ``b`` (``[L1, projection, projection, code, rtol]``),
    relative to b's L1 norm; infinite where the non-finite entries sit elsewhere."""
    if a[3] != b[3]:
        return math.inf
    return max(abs(x - y) for x, y in zip(a[:3], b[:3])) / max(abs(b[0]), 1e-300)


def check(outputs: dict | None = None, path: Path = GOLDEN) -> Report:
    """Compare the golden outputs (``golden.compute()`` unless given) with the record at ``path``."""
    from ssa_theory import golden

    outputs = golden.compute() if outputs is None else outputs
    record = _load(path)
    kind = golden.machine_kind()
    report = Report(record.get("version"), kind)
    recorded = record.get("summaries", {})
    for name, value in outputs.items():
        if name not in recorded:
            report.new.append(name)
            continue
        change = _relative_change(golden.summary(name, value), recorded[name])
        if change > recorded[name][4]:
            report.moved[name] = change
    report.missing = sorted(set(recorded) - set(outputs))
    exact = record.get("exact", {}).get(kind)
    if exact is not None:
        digests = _group_digests(outputs)
        report.bits = sorted(g for g, d in exact.items() if g in digests and digests[g] != d)
    return report


def _group_digests(outputs: dict) -> dict[str, str]:
    from ssa_theory import golden

    groups: dict[str, dict] = {}
    for name, value in outputs.items():
        groups.setdefault(group(name), {})[name] = value
    return {g: golden.digest(v) for g, v in groups.items()}


def record(path: Path = GOLDEN) -> Report:
    """Record this version's golden outputs and this machine kind's digests at ``path``.

    A new ``VERSION`` replaces the record. An unchanged one only gains what is new (outputs not yet
    recorded, this kind's digests, a group whose outputs changed names); a ``ValueError`` if any
    recorded number moved (bump the version instead)."""
    from ssa_theory import golden

    outputs = golden.compute()
    old = _load(path)

    def summaries(names) -> dict[str, list[float]]:  # each with its tolerance, from the outputs under other kernels
        others = [golden.compute_elsewhere(env) for env in golden.ALTERNATIVES] if names else []
        return {n: [*golden.summary(n, outputs[n]), golden.tolerance(n, outputs[n], others)] for n in names}

    report = check(outputs, path)
    digests = _group_digests(outputs)
    if old.get("version") == VERSION:
        if report.moved or report.missing:
            raise ValueError(str(report))
        old_names = {g: {n for n in old["summaries"] if group(n) == g} for g in digests}
        new_names = {g: {n for n in outputs if group(n) == g} for g in digests}
        exact = old.get("exact", {}).get(report.kind, {})
        stale = [g for g in exact if g in digests and exact[g] != digests[g] and old_names[g] == new_names[g]]
        if stale:
            raise ValueError(f"bit-for-bit digests moved on {report.kind} for {', '.join(stale[:6])}: the numbers "
                             "moved, so the version must")
        recorded = {**old["summaries"], **summaries(report.new)}
        kinds = {**old.get("exact", {}), report.kind: {**exact, **digests}}
    else:
        recorded = summaries(list(outputs))
        kinds = {report.kind: digests}
    text = json.dumps({"version": VERSION, "margin": golden.MARGIN, "floor": golden.FLOOR,
                       "alternatives": golden.ALTERNATIVES, "summaries": dict(sorted(recorded.items())),
                       "exact": kinds}, indent=0, sort_keys=False)
    Path(path).write_text(text + "\n")
    return check(outputs, path)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ssa_theory.core", description=__doc__.split("\n\n")[0])
    p.add_argument("--record", action="store_true", help="record this version's golden outputs (see the module doc)")
    args = p.parse_args(argv)
    try:
        report = record() if args.record else check()
    except ValueError as e:
        print(f"refused: {e}")
        return 1
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
