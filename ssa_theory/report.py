"""``paper_repro.md``'s generated parts, and the check that its prose still matches the results.

The file is hand-written prose with generated blocks between markers, each rendered from the
exported results under ``ROOT/experiments/``:

    <!-- generated: summary -->                        every claim, our number [95% CI], the verdict
    <!-- end generated -->
    <!-- generated: table NAME/TABLE -->               experiments/NAME/TABLE.md as it is
    <!-- end generated -->
    <!-- generated: table NAME/TABLE columns=a,b,c -->  only those columns, in that order
    <!-- end generated -->

``render`` rewrites the blocks and leaves the prose alone. ``stale_numbers`` lists every number
quoted in the prose (outside code, links and generated blocks) that no committed table, metrics or
config file contains to the digits quoted: prose may quote a result, but only one a command of the
project produces. Constants and formulas belong in code spans, which are not checked.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable

from ssa_theory import registry
from ssa_theory.claims import Claim
from ssa_theory.config import UsageError

BLOCK = re.compile(r"(<!-- generated: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


class ReportError(UsageError):
    """A generated block that cannot be rendered (unknown kind, missing table or column)."""


class MissingResults(ReportError):
    """A generated block whose experiment has no exported results under the root."""


def all_claims(root: Path) -> list[Claim]:
    """The claims of every registered experiment whose results are exported under ``root``."""
    out: list[Claim] = []
    for name in registry.names():
        exp = registry.get(name)
        exported = Path(root) / "experiments" / name
        if exp.claims is not None and (exported / "metrics.json").is_file():
            out.extend(exp.claims(exported))
    return out


def summary_table(claims: Iterable[Claim]) -> str:
    rows = ["| claim | the paper says | our measure | ours, mean [95% CI] | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        rows.append(f"| {c.id} (`{c.experiment}`) | {c.paper} | {c.measure} | {c.interval()} | {c.verdict} |")
    return "\n".join(rows) + "\n"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]


def select_columns(table: str, columns: list[str]) -> str:
    """A Markdown table cut to ``columns`` (in that order)."""
    lines = table.strip("\n").split("\n")
    header = _cells(lines[0])
    missing = [c for c in columns if c not in header]
    if missing:
        raise ReportError(f"columns {missing} not in table (has: {', '.join(header)})")
    idx = [header.index(c) for c in columns]
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for line in lines[2:]:
        cells = _cells(line)
        out.append("| " + " | ".join(cells[i] for i in idx) + " |")
    return "\n".join(out) + "\n"


def render_block(spec: str, root: Path) -> str:
    kind, *args = spec.split()
    if kind == "summary" and not args:
        return summary_table(all_claims(root))
    if kind == "table" and args:
        path = Path(root) / "experiments" / f"{args[0]}.md"
        if not path.is_file():
            raise MissingResults(f"generated block {spec!r}: no table {path}")
        text = path.read_text()
        for opt in args[1:]:
            key, _, value = opt.partition("=")
            if key != "columns":
                raise ReportError(f"generated block {spec!r}: unknown option {key!r}")
            text = select_columns(text, value.split(","))
        return text
    raise ReportError(f"unknown generated block {spec!r} (known: 'summary', 'table NAME/TABLE [columns=...]')")


def render(text: str, root: Path, kept: list[str] | None = None) -> str:
    """``text`` with every generated block rendered from the results under ``root``.

    With a ``kept`` list, a block whose results are not exported under ``root`` keeps its current
    content and its spec is appended to ``kept`` (a partial ``reproduce --only``); without one, such
    a block is an error.
    """
    def one(m: re.Match) -> str:
        try:
            body = render_block(m.group("spec"), root)
        except MissingResults:
            if kept is None:
                raise
            kept.append(m.group("spec"))
            body = m.group("body")
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(one, text)


# --- prose numbers --------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])(-?\d+\.\d+(?:e[-+]?\d+)?)(?![\w.]*\d)")


def prose(text: str) -> str:
    """The hand-written prose: generated blocks, fenced code, inline code, link targets and HTML
    comments removed."""
    text = BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"arXiv[: ]\S+", "", text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def _numbers_in(obj) -> Iterable[float]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers_in(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


MAX_TABLE_ROWS = 200  # per-item tables (one row per node or token and seed) are too big to quote from


def committed_numbers(root: Path) -> list[float]:
    """Every number in the committed summary tables (CSV of at most ``MAX_TABLE_ROWS`` rows), metrics
    and configs under ``root/experiments``. Per-item tables are left out: with thousands of values
    almost any short number would match one by chance."""
    values: list[float] = []
    for path in sorted((Path(root) / "experiments").glob("*/*")):
        if path.suffix == ".csv":
            text = path.read_text()
            if text.count("\n") > MAX_TABLE_ROWS + 1:
                continue
            for token in re.split(r"[,\n]", text):
                try:
                    values.append(float(token))
                except ValueError:
                    pass
        elif path.suffix == ".json":
            values.extend(_numbers_in(json.loads(path.read_text())))
    return [v for v in values if math.isfinite(v)]


def _matches(quoted: str, values: list[float]) -> bool:
    """Whether some value rounds to ``quoted`` at the digits quoted (e.g. 0.455 matches 0.45463)."""
    q = float(quoted)
    mantissa = quoted.lower().split("e")[0]
    exponent = int(quoted.lower().split("e")[1]) if "e" in quoted.lower() else 0
    half = 0.5 * 10.0 ** (exponent - len(mantissa.split(".")[1])) * (1 + 1e-9)
    return any(abs(v - q) <= half for v in values)


def stale_numbers(text: str, root: Path) -> list[str]:
    """Numbers quoted in the prose of ``text`` that no committed result under ``root`` contains."""
    values = committed_numbers(root)
    return [n for n in dict.fromkeys(_NUMBER.findall(prose(text))) if not _matches(n, values)]
