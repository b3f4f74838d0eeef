"""``paper_repro.md``'s generated parts, and the check that its prose still matches the results.

The file is hand-written prose with generated blocks between markers, each rendered from the
exported results under ``ROOT/experiments/``:

    <!-- generated: summary -->                        every claim, our number [95% CI], the verdict
    <!-- end generated -->
    <!-- generated: table NAME/TABLE -->               experiments/NAME/TABLE.md as it is
    <!-- end generated -->
    <!-- generated: table NAME/TABLE columns=a,b,c -->  only those columns, in that order
    <!-- end generated -->
    <!-- generated: ranking -->                        the ablation's order against the default presets'
    <!-- end generated -->

Every result quoted in the prose is a link from the number to the one cell it quotes (``SOURCE``:
``[0.8951](experiments/denoising/value_gains.csv#gain;p_noisy=0.9;class=clean)``, a CSV column and
the KEY=VALUE pairs that pick its row, or ``experiments/NAME/metrics.json#a/b/0``, a path into the
metrics). ``render`` rewrites the blocks and rewrites every quoted number from its cell, at the
digits quoted, leaving the words alone (``reproduce`` lists the numbers that moved, whose sentences
need rereading). ``stale_numbers`` lists every decimal number in the prose that names no source,
every source that does not resolve, and every quote its own cell does not round to: prose may quote
a result, but only one a command of the project produces, and only from the cell it names.
Constants and formulas belong in code spans, which are not checked.
"""

from __future__ import annotations

import csv
import io
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


SMOKE = "smoke test, not evidence: a quick preset cannot reproduce a claim at its size; "


def claims_of_run(experiment, run_path: Path) -> list[Claim]:
    """The claims ``experiment`` checks, read from one run directory by the same rules as the committed
    results (its metrics.json and tables, seen as an export); [] for an experiment without claims."""
    import shutil
    import tempfile

    if experiment.claims is None:
        return []
    run_path = Path(run_path)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(run_path / "metrics.json", tmp)
        for f in (run_path / "tables").glob("*.csv"):
            shutil.copy(f, tmp)
        return experiment.claims(Path(tmp))


def claim_records(claims: Iterable[Claim], smoke: bool = False) -> dict:
    """What ``metrics.json`` holds under ``"claims"``: ``{"smoke": smoke, "verdicts": [each claim's fields]}``
    (``smoke``: read from a quick preset, a test of the pipeline and no evidence)."""
    import dataclasses

    return {"smoke": bool(smoke), "verdicts": [dataclasses.asdict(c) for c in claims]}


def record_claims(experiment, run_path: Path, smoke: bool = False) -> list[Claim]:
    """The claims ``experiment`` checks, read from one run directory (``claims_of_run``) and written into
    its metrics.json under ``"claims"`` (``claim_records``), atomically; rewritten at every call, so that a
    reused run holds the verdicts of the rules that read it last. Returns the claims."""
    from ssa_theory.rundir import read_json, write_json

    claims = claims_of_run(experiment, run_path)
    if experiment.claims is not None:
        path = Path(run_path) / "metrics.json"
        write_json(path, {**read_json(path), "claims": claim_records(claims, smoke)})
    return claims


def claim_lines(claims: Iterable[Claim], smoke: bool = False) -> str:
    """Each claim in two lines, as ``run`` prints them: its verdict (against vanilla, and against a global
    temperature where read), its placebo and scrambled twin; with ``smoke`` every verdict says, in the
    same line, that a quick run is a smoke test of the pipeline."""
    out = []
    for c in claims:
        head = f"{c.id}: {SMOKE if smoke else ''}{c.verdict}"
        if c.against_global:
            head += f"; against a global temperature: {c.against_global}"
        rest = [f"placebo: {c.placebo}" if c.placebo else "", f"scrambled: {c.scrambled_words()}" if c.scrambled else ""]
        out.append(head + "\n    " + c.interval() + "".join(f"; {r}" for r in rest if r))
    return "\n".join(out) + ("\n" if out else "")


def summary_table(claims: Iterable[Claim], smoke: bool = False) -> str:
    rows = ["| claim | the paper says | our measure | ours, mean [95% CI] | verdict | against a global temperature "
            "| placebo (vanilla twin) | scrambled mechanism | false-positive rate and power | the mechanism |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in claims:
        rows.append(f"| {c.id} (`{c.experiment}`) | {c.paper} | {c.measure} | {c.interval()} | "
                    f"{SMOKE if smoke else ''}{c.verdict} | "
                    f"{c.against_global or '—'} | {c.placebo or 'not run yet'} | {c.scrambled_words() or '—'} | "
                    f"{c.calibration or 'not estimated yet'} | {c.spread or '—'} |")
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
    if kind == "ranking" and not args:
        from ssa_theory.experiments import ablation
        from ssa_theory.rundir import markdown_table

        table = ablation.ranking_against_defaults(root)
        if table.empty:
            raise MissingResults("generated block 'ranking': no exported ablation and default runs to compare")
        return markdown_table(table)
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
    raise ReportError(f"unknown generated block {spec!r} (known: 'summary', 'ranking', 'table NAME/TABLE [columns=...]')")


def render(text: str, root: Path, kept: list[str] | None = None, changed: list[str] | None = None) -> str:
    """``text`` with every generated block rendered from the results under ``root``, and every quoted
    result in the prose rewritten from its source (``fill_numbers``; those that changed go to ``changed``).

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

    return BLOCK.sub(one, fill_numbers(text, root, changed, lenient=kept is not None))


# --- prose numbers, each tied to the cell it quotes ---------------------------------------------------------

# A quoted result is a Markdown link from the number to the cell it quotes, e.g.
#   [0.8951](experiments/denoising/value_gains.csv#gain;p_noisy=0.9;class=clean)   a CSV cell: COLUMN;KEY=VALUE...
#   [0.7489](experiments/passkey/metrics.json#time_to_learn/0/steps_ratio)          a metrics value: its path
# The rows are picked by every KEY=VALUE given (exactly one row must match; numbers compare as numbers).
SOURCE = re.compile(r"\[(?P<num>-?\d+\.\d+(?:e[-+]?\d+)?)\]\((?P<src>(?P<path>experiments/[\w.-]+/[\w.-]+\.(?:csv|json))"
                    r"#(?P<sel>[^)\s]+))\)")
_NUMBER = re.compile(r"(?<![\w.])(-?\d+\.\d+(?:e[-+]?\d+)?)(?![\w.]*\d)")


def _same(cell: str, want: str) -> bool:
    if cell == want:
        return True
    try:
        return math.isclose(float(cell), float(want), rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return False


def source_value(src: str, root: Path) -> float:
    """The number at a quoted source ``experiments/NAME/FILE#SELECTOR`` under ``root`` (``ReportError``
    naming what does not resolve)."""
    path, _, sel = src.partition("#")
    file = Path(root) / path
    if not file.is_file():
        raise ReportError(f"quoted source {src}: no file {path}")
    if file.suffix == ".json":
        obj = json.loads(file.read_text())
        for part in sel.split("/"):
            try:
                obj = obj[int(part)] if isinstance(obj, list) else obj[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ReportError(f"quoted source {src}: no entry {part!r}") from None
        if not isinstance(obj, (int, float)) or isinstance(obj, bool):
            raise ReportError(f"quoted source {src}: not a number ({type(obj).__name__})")
        return float(obj)
    column, *conditions = sel.split(";")
    rows = list(csv.DictReader(io.StringIO(file.read_text())))
    if rows and column not in rows[0]:
        raise ReportError(f"quoted source {src}: no column {column!r} (has: {', '.join(rows[0])})")
    for cond in conditions:
        key, eq, want = cond.partition("=")
        if not eq or (rows and key not in rows[0]):
            raise ReportError(f"quoted source {src}: {cond!r} is not KEY=VALUE with KEY a column")
        rows = [r for r in rows if _same(r[key], want)]
    if len(rows) != 1:
        raise ReportError(f"quoted source {src}: {len(rows)} rows match, not one")
    try:
        return float(rows[0][column])
    except ValueError:
        raise ReportError(f"quoted source {src}: {rows[0][column]!r} is not a number") from None


def _digits(quoted: str) -> tuple[int, bool]:
    """(decimals of the mantissa, e-notation?) of a quoted number."""
    mantissa, _, _ = quoted.lower().partition("e")
    return len(mantissa.split(".")[1]), "e" in quoted.lower()


def format_like(value: float, quoted: str) -> str:
    """``value`` written with as many digits as ``quoted`` (e.g. 0.45463 like "0.45" is "0.45")."""
    decimals, sci = _digits(quoted)
    out = f"{value:.{decimals}e}" if sci else f"{value:.{decimals}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


def _outside(text: str) -> list[tuple[int, int]]:
    """The spans of ``text`` that are generated blocks, fenced code or inline code (which may wrap a
    line): quoted numbers are not there."""
    spans = [m.span() for m in BLOCK.finditer(text)] + [m.span() for m in re.finditer(r"```.*?```", text, re.S)]
    blank = list(text)
    for a, b in spans:  # inline code is looked for with blocks and fences blanked out
        blank[a:b] = " " * (b - a)
    return spans + [m.span() for m in re.finditer(r"`[^`]*`", "".join(blank))]


def quoted_sources(text: str) -> list[re.Match]:
    """Every quoted result (``SOURCE`` link) in the prose of ``text``."""
    skip = _outside(text)
    return [m for m in SOURCE.finditer(text) if not any(a <= m.start() < b for a, b in skip)]


def fill_numbers(text: str, root: Path, changed: list[str] | None = None, lenient: bool = False) -> str:
    """``text`` with every quoted result rewritten from its source, at the digits quoted; each one that
    changed is appended to ``changed`` as ``"old -> new (source)"`` (its sentence needs rereading).
    ``lenient``: a source that does not resolve under ``root`` (a partial or quick root) keeps its number."""
    out, last = [], 0
    for m in quoted_sources(text):
        try:
            new = format_like(source_value(m.group("src"), root), m.group("num"))
        except ReportError:
            if not lenient:
                raise
            new = m.group("num")
        if new != m.group("num") and changed is not None:
            changed.append(f"{m.group('num')} -> {new} ({m.group('src')})")
        out += [text[last:m.start()], f"[{new}]({m.group('src')})"]
        last = m.end()
    return "".join(out) + text[last:]


def prose(text: str) -> str:
    """The hand-written prose: generated blocks, fenced code, inline code, quoted results (``SOURCE``
    links), other link targets and HTML comments removed."""
    text = BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    text = SOURCE.sub("", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"arXiv[: ]\S+", "", text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def _matches(quoted: str, value: float) -> bool:
    """Whether ``value`` rounds to ``quoted`` at the digits quoted (e.g. 0.455 matches 0.45463)."""
    decimals, _ = _digits(quoted)
    exponent = int(quoted.lower().split("e")[1]) if "e" in quoted.lower() else 0
    half = 0.5 * 10.0 ** (exponent - decimals) * (1 + 1e-9)
    return abs(value - float(quoted)) <= half


def stale_numbers(text: str, root: Path) -> list[str]:
    """What is wrong with the numbers quoted in the prose of ``text``: a number that names no source
    (``"0.93"``; constants and formulas belong in code spans), a source that does not resolve, or a
    number that its own source does not round to (``"0.93 (experiments/...: 0.8951)"``). Each quote is
    compared with its own cell only, never with the other committed values."""
    problems = list(dict.fromkeys(_NUMBER.findall(prose(text))))
    for m in quoted_sources(text):
        try:
            value = source_value(m.group("src"), root)
        except ReportError as e:
            problems.append(str(e))
            continue
        if not _matches(m.group("num"), value):
            problems.append(f"{m.group('num')} ({m.group('src')}: {value:.6g})")
    return problems
