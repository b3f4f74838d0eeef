"""Rules are fixed before the data they judge, checkably: no commit changes both a rule constant and a
committed result that rule judges (``paper_repro.md`` names, per claim, the commit that fixed its rule).

A rule constant is a module-level name of the rule vocabulary (``MIN_*``, ``C<n>_*``, ``*_EFFECT``,
thresholds, ``LEARNED``, ...) assigned in an experiment module or in ``ssa_theory/claims.py`` (whose
constants judge every experiment). A committed result is a file under ``experiments/<name>/``. The
history is read from this commit back to the one that added this test: older commits predate the rule.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTANT = re.compile(r"^[+-](MIN_[A-Z0-9_]*|C\d+[a-z]?_[A-Z0-9_]+|[A-Z0-9_]*_EFFECT|TOLERANCE|REACHED|LEARNED|"
                      r"CONTINUITY|N_DRAWS|LOOKED_UP)\s*(:[^=]*)?=[^=]")
SHARED = "ssa_theory/claims.py"


def rule_changes(diff: str) -> set[str]:
    """The rule constants whose assignment a unified diff adds or removes."""
    return {m.group(1) for line in diff.splitlines() if (m := CONSTANT.match(line))}


def violations(commits: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Per commit ``(sha, {path: diff})``: where a rule constant of an experiment (or of ``claims.py``: every
    experiment) changes together with that experiment's committed results, one line naming both."""
    out = []
    for sha, files in commits:
        # a prediction committed with its rule (``predictions.*``) is no result: it is fixed before them
        results = {p.split("/")[1] for p in files if p.startswith("experiments/") and p.count("/") >= 2
                   and not Path(p).name.startswith("predictions.")}
        for path, diff in files.items():
            names = rule_changes(diff)
            if not names:
                continue
            if path == SHARED:
                judged = results
            elif path.startswith("ssa_theory/experiments/") and path.endswith(".py"):
                judged = results & {Path(path).stem}
            else:
                continue
            if judged:
                out.append(f"{sha[:10]} changes {', '.join(sorted(names))} in {path} and the results of "
                           f"{', '.join(sorted(judged))}: commit the rule first, then the results")
    return out


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def _history() -> list[tuple[str, dict[str, str]]]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the history that shows rules before results is not here")
    base = _git("log", "--diff-filter=A", "--format=%H", "--", "tests/test_rules_history.py").split()
    if not base:
        pytest.skip("this test is not committed yet: the history starts at the commit that adds it")
    try:
        shas = _git("rev-list", f"{base[-1]}^..HEAD").split()
    except subprocess.CalledProcessError:
        pytest.skip("a shallow clone: the commits since this test was added are not all here")
    commits = []
    for sha in shas:
        files: dict[str, str] = {}
        paths = _git("show", "--format=", "--name-only", sha).split()
        for p in paths:
            if p.startswith("ssa_theory/") and p.endswith(".py"):
                files[p] = _git("show", "--format=", "-U0", sha, "--", p)
            else:
                files[p] = ""
        commits.append((sha, files))
    return commits


def test_no_commit_changes_a_rule_and_the_results_it_judges():
    assert violations(_history()) == []


def test_the_check_rejects_a_rule_and_its_results_in_one_commit():
    diff = "@@ -1 +1 @@\n-MIN_GAIN = 0.05  # old\n+MIN_GAIN = 0.04  # new\n"
    both = [("a" * 40, {"ssa_theory/experiments/passkey.py": diff, "experiments/passkey/metrics.json": ""})]
    assert violations(both) and "MIN_GAIN" in violations(both)[0]
    shared = [("b" * 40, {SHARED: "+MIN_POWER = 0.6\n", "experiments/flipflop/counts.csv": ""})]
    assert violations(shared)  # claims.py's constants judge every experiment
    apart = [("c" * 40, {"ssa_theory/experiments/passkey.py": diff}), ("d" * 40, {"experiments/passkey/metrics.json": ""})]
    assert violations(apart) == []
    other = [("e" * 40, {"ssa_theory/experiments/passkey.py": diff, "experiments/flipflop/counts.csv": ""})]
    assert violations(other) == []  # passkey's rule does not judge flipflop's results
    pred = [("f" * 40, {"ssa_theory/experiments/critical.py": "+TOLERANCE = 0.1\n",
                        "experiments/critical/predictions.csv": ""})]
    assert violations(pred) == []  # the prediction goes with its rule, before the results
    assert rule_changes("+C8_EFFECT = 1.25\n+GAIN_EFFECT: float = 0.1\n x = MIN_GAIN == 1\n+def f(MIN_X=1):") == {
        "C8_EFFECT", "GAIN_EFFECT"}
