"""Run-directory mechanics: stable hashes, table formatting (golden), JSON cleaning."""

import math

import numpy as np
import pandas as pd

from ssa_theory.rundir import markdown_table, run_hash, with_ci, write_json, read_json

GOLDEN = """\
| model | ce | n |
|---|---|---|
| vanilla | 1.1769 [1.1700, 1.1800] | 5 |
| ssa | 2.000e-04 | 1 |
"""


def test_markdown_golden():
    df = pd.DataFrame({"model": ["vanilla", "ssa"], "ce": [1.17689, 0.0002], "ce_lo": [1.17, math.nan],
                       "ce_hi": [1.18, math.nan], "n": [5, 1]})
    assert markdown_table(with_ci(df, ["ce"])[["model", "ce", "n"]]) == GOLDEN


def test_markdown_escapes_pipes():
    assert "\\|score\\| < B" in markdown_table(pd.DataFrame({"budget": ["|score| < B"]}))


def test_hash_is_stable_and_order_free():
    a = run_hash({"x": 1, "y": [1, 2]})
    assert a == run_hash({"y": [1, 2], "x": 1}) and len(a) == 10
    assert a != run_hash({"x": 2, "y": [1, 2]})


def test_json_turns_nan_into_null_and_numpy_into_python(tmp_path):
    write_json(tmp_path / "m.json", {"a": np.float32(0.5), "b": math.nan, "c": np.arange(3), 4: np.int64(2)})
    assert read_json(tmp_path / "m.json") == {"a": 0.5, "b": None, "c": [0, 1, 2], "4": 2}


def test_shared_task_versions_enter_the_run_hash():
    """Editing shared task code (and bumping its VERSION) must invalidate cached runs of every user."""
    import dataclasses

    import torch

    from ssa_theory import registry
    from ssa_theory.rundir import run_dir

    exp = registry.get("norm_spikiness")
    assert exp.tasks == {"graphs": "1", "pointer": "1"} and registry.get("graph_transition").tasks == exp.tasks
    cfg = exp.config(**exp.presets["quick"].overrides)
    a = run_dir("runs", exp, cfg, [0], torch.device("cpu"))
    b = run_dir("runs", dataclasses.replace(exp, tasks={**exp.tasks, "graphs": "2"}), cfg, [0], torch.device("cpu"))
    assert a != b


def test_experiments_never_import_each_other():
    import ast
    from pathlib import Path

    import ssa_theory.experiments as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        if path.name == "__init__.py":
            continue
        own = path.stem.removesuffix("_plots")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssa_theory.experiments"):
                names = [node.module.rsplit(".", 1)[-1]] + [a.name for a in node.names]
                others = [n for n in names if n not in ("experiments", own, f"{own}_plots")]
                assert not others, f"{path.name} imports {node.module}: {others}"
