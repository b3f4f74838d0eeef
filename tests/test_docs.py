"""The front door: the README stays short, its code runs as written, and every page it links exists."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_one_screen_of_what_a_newcomer_needs():
    assert len(README.splitlines()) <= 150
    order = [README.index(h) for h in ("## What it found", "## Set up", "## SSA in your own model",
                                        "## SSA in a Hugging Face model", "## Run one experiment", "## More")]
    assert order == sorted(order)
    setup = README.split("## Set up", 1)[1]
    assert setup.index("--index-url https://download.pytorch.org/whl/cpu") < setup.index("python -m pytest")
    assert not re.search(r"\b\d+(\.\d+)? ?(s|min|minutes)\b", README), "measured times live in benchmarks/RESULTS.md"


def test_every_local_link_of_the_readme_and_the_docs_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


def test_the_readmes_layer_block_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 2  # the layer, then the Hugging Face model
    exec(compile(blocks[0], "README.md", "exec"), {})


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs the hf extra (transformers)")
def test_the_readmes_hugging_face_block_runs_as_written():
    exec(compile(re.findall(r"```python\n(.*?)```", README, re.S)[1], "README.md", "exec"), {})


def test_the_readmes_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in README and "python -m pytest" in ci
    assert 'python -m pip install torch==2.13.0 -e ".[test]" && python -m ssa_theory run graph_transition' in README


def test_the_readmes_findings_are_the_committed_verdicts():
    """The README's five-line summary sorts the claims by what the committed results say; a verdict that
    moves fails here, so that the front door never outlives its numbers."""
    from ssa_theory import report

    claims = {c.id: c for c in report.all_claims(ROOT)}
    found = README.split("## What it found", 1)[1].split("\n## ", 1)[0]
    selective = found.split("**Selective gains**", 1)[1].split("\n- ", 1)[0]
    temperature = found.split("**A temperature, not selectivity**", 1)[1].split("\n- ", 1)[0]
    for cid in ("C1", "C3", "C6"):  # beats vanilla and the global temperature; its scrambled twin does not
        c = claims[cid]
        assert f"({cid})" in selective
        assert c.verdict.startswith("reproduced") and c.against_global.startswith("reproduced"), cid
        assert not c.scrambled_global.startswith("reproduced"), cid
    for cid in ("C4", "C7b"):  # the scrambled twin passes against vanilla; the global temperature is not beaten
        c = claims[cid]
        assert cid in temperature and "as a temperature" in c.verdict and c.scrambled.startswith("reproduced"), cid
        assert not c.against_global.startswith("reproduced"), cid
    assert claims["C5"].verdict == "reproduced" and claims["C5"].scrambled.startswith("not run: nothing to scramble")
    assert claims["C8"].verdict.startswith("inconclusive") and claims["C9"].verdict.startswith("not testable")
    text = found.split("**Real text, small models**", 1)[1].split("\n- ", 1)[0]
    c10 = claims["C10 (nope)"]  # from scratch, NoPE: beats both controls, the scrambled twin beats neither
    assert "(C10)" in text and c10.verdict == "reproduced" and c10.against_global == ""
    assert claims["C10.global (nope)"].verdict == "reproduced" and not c10.scrambled.startswith("reproduced")
    assert not claims["C10.global (nope)"].scrambled.startswith("reproduced")
    assert not any(claims[k].verdict.startswith("reproduced") for k in ("C10 (rope)", "C10.ft (nope)", "C10.ft (rope)"))
    assert all(c.verdict.startswith("not testable") for k, c in claims.items() if k.startswith("C11"))


def test_the_output_the_readme_shows_is_what_run_graph_transition_prints_from_the_committed_results():
    """The README's example ends as ``run graph_transition`` does: the headline table, then each claim's
    lines, read from the committed results by the current rules."""
    from ssa_theory import registry, report

    shown = README.split("The\ndefault `run graph_transition` ends with", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    exported = ROOT / "experiments" / "graph_transition"
    claims = registry.get("graph_transition").claims(exported)
    assert shown == (exported / "ce_l1.md").read_text() + "\n" + report.claim_lines(claims)
