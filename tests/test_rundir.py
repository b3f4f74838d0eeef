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
