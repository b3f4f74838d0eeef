"""The core version: it enters every run hash, and it must change whenever the core's code does."""

import shutil

import torch

from ssa_theory import core, registry
from ssa_theory.rundir import run_dir


def test_the_core_code_matches_its_version():
    current = core.fingerprint()
    assert core.HISTORY.get(core.VERSION) == current, (
        f"the core modules ({', '.join(core.SOURCES)}) changed: their fingerprint is now {current}, but version "
        f"{core.VERSION} was {core.HISTORY.get(core.VERSION)}. Add a new version to core.HISTORY with this "
        "fingerprint and set core.VERSION to it (cached runs made by the old code must not be reused).")
    assert list(core.HISTORY)[-1] == core.VERSION and len(set(core.HISTORY.values())) == len(core.HISTORY)


def test_the_fingerprint_sees_code_and_ignores_prose(tmp_path):
    src = core.fingerprint.__globals__["__file__"]
    root = tmp_path / "pkg"
    root.mkdir()
    from pathlib import Path

    for name in core.SOURCES:
        shutil.copy(Path(src).parent / name, root / name)
    base = core.fingerprint(root)
    assert base == core.fingerprint()
    train = root / "train.py"
    text = train.read_text()
    train.write_text(text.replace('"""The training loop', '"""A reworded docstring. The training loop', 1)
                     + "\n# a comment\n")
    assert core.fingerprint(root) == base  # docstrings and comments are prose
    train.write_text(text.replace("CHECK_EVERY = 50", "CHECK_EVERY = 51"))
    assert core.fingerprint(root) != base  # a constant is code


def test_the_core_version_enters_every_run_hash(monkeypatch):
    exp = registry.get("graph_transition")
    cfg = exp.config(**exp.presets["quick"].overrides)
    a = run_dir("runs", exp, cfg, [0], torch.device("cpu"))
    monkeypatch.setattr(core, "VERSION", core.VERSION + "-next")
    assert run_dir("runs", exp, cfg, [0], torch.device("cpu")) != a
