"""A plug-in's code is part of every run that uses it, and a plug-in that does not import is one line."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssa_theory import registry
from ssa_theory.rundir import run_dir, run_payload

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
import math, torch
from ssa_theory.strategies import Param, Strategy

def scale(inputs, params):
    return 1 + torch.sigmoid(params["c"]) * torch.log(inputs.n) * {factor}

S = Strategy("edited_scale_{tag}", "q", "mul", scale, {{"c": Param(("H",), 0.0, -math.inf)}}, range=(1, math.inf),
             reads={{"n"}})
'''


def _write(folder: Path, module: str, factor: float, tag: str) -> None:
    (folder / f"{module}.py").write_text(PLUGIN.format(factor=factor, tag=tag))


def _cell_dir(variant: str) -> Path:
    cell = registry.get("ssa_theory.experiments.ablation:CELL")
    cfg = cell.config(task="dilution", variant=variant, scale="quick")
    return run_dir(Path("runs"), cell, cfg, [0], torch.device("cpu"))


def test_editing_a_plugins_formula_changes_the_run_hash(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write(tmp_path, "edited_plugin_a", 0.5, "a")
    before = _cell_dir("edited_plugin_a:S")
    assert before == _cell_dir("edited_plugin_a:S")  # stable while the file is
    _write(tmp_path, "edited_plugin_a", 0.25, "a")  # the formula edited (the module is not even re-imported)
    assert _cell_dir("edited_plugin_a:S") != before


def test_a_run_of_built_in_strategies_has_no_plugin_entry_in_its_hash():
    cell = registry.get("ssa_theory.experiments.ablation:CELL")
    payload = run_payload(cell, cell.config(task="dilution", variant="ssa", scale="quick"), [0], torch.device("cpu"))
    assert "plugins" not in payload  # so every existing run hash stays as it was


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "ssa_theory", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("body, where, kind", [("def scale(inputs, params)\n    return 1\n", 3, "SyntaxError"),
                                               ("import torch\nS = undefined_name\n", 4, "NameError")])
def test_a_strategy_file_that_does_not_import_is_one_line_naming_its_file_and_line(tmp_path, body, where, kind):
    (tmp_path / "broken_plugin.py").write_text("# a plug-in with a mistake\n\n" + body)
    proc = _cli(tmp_path, "run", "dilution", "--quick", "--set", "strategies=vanilla,broken_plugin:S", "--out", "runs")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"broken_plugin.py:{where}" in lines[0] and kind in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()  # nothing half-written
