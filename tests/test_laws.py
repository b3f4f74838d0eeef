"""Every strategy that names a published law, held to a committed table of that law's values as its
upstream source computes them (``tests/data/published_laws.csv``).

Each row is the law's factor on a query's logits at one n (the keys a query sees) or one 0-based
position p, at n >= 2 (a temperature is invisible with one key). The table is written by this module
(``python tests/test_laws.py``) from the upstream code: executed where transformers ships it
(``get_llama_4_attn_scale``, ``yarn_get_mscale``), written as in the source where it does not (Llama 4's
inline expression, Qwen-1's remote code, the SSA authors' released code, SSMax's paper). The test then
holds every strategy of the table to it, and checks that the committed table is what the upstream code
gives today where transformers is installed.
"""

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from ssa_theory import strategies as st
from ssa_theory.functional import split_heads
from ssa_theory.ensemble import linear

TABLE = Path(__file__).parent / "data" / "published_laws.csv"
L0 = 8  # the training length of the position laws: steps at p = 7 (Llama 4) and 8 (Ministral 3)
L = 1024  # the training length of the n laws
POSITIONS = (0, 1, 6, 7, 8, 15, 16, 63, 64, 1000)
NS = (2, 16, 1024, 1025, 4096, 32768)
SSMAX_S = 0.43  # the public implementations' initial s (ours starts at 1.0: a value, not a law)
RELEASED_BETA = 2.0  # the authors' released code's initial beta


def _upstream_rows() -> list[dict]:
    """The table: law, argument kind, argument, training length, parameter, value, source."""
    from transformers.modeling_rope_utils import yarn_get_mscale
    from transformers.models.ministral3.modeling_ministral3 import get_llama_4_attn_scale

    rows = []

    def add(law, kind, arg, length, param, value, source):
        rows.append({"law": law, "kind": kind, "arg": arg, "length": length, "param": param, "value": repr(float(value)),
                     "source": source})

    for p in POSITIONS:
        pos = torch.tensor([[float(p)]], dtype=torch.float64)
        add("llama4", "position", p, L0, 0.1, torch.log1p(torch.floor((pos + 1.0) / L0)) * 0.1 + 1.0,
            "transformers models/llama4/modeling_llama4.py, Llama4TextAttention.forward (no-RoPE layers): "
            "log1p(floor((positions + 1) / floor_scale)) * attn_scale + 1")
        add("ministral", "position", p, L0, 0.1, get_llama_4_attn_scale(pos, 0.1, L0).reshape(()),
            "transformers models/ministral3/modeling_ministral3.py, get_llama_4_attn_scale (executed)")
    for n in NS:
        add("yarn", "n", n, L, "", yarn_get_mscale(max(n / L, 1.0)) ** 2,
            "transformers modeling_rope_utils.py, yarn_get_mscale (executed) at the scale n / L, squared (cos and sin)")
        add("qwen", "n", n, L, "", math.log(n, L) if n > L else 1.0,
            "Qwen/Qwen-7B modeling_qwen.py, QWenModel: logn_list = [log(i, seq_length) if i > seq_length else 1]")
        add("ssmax", "n", n, "", SSMAX_S, SSMAX_S * math.log(n),
            "Nakanishi 2025, Scalable-Softmax: logits times s log n (s at the public implementations' 0.43)")
        add("released", "n", n, "", RELEASED_BETA, 1.0 + math.exp(-math.exp(RELEASED_BETA)) * math.log(n),
            "umich-sota/selective_attention (lit-gpt fork): logits * (1 + exp(-exp(beta)) * log n), beta at its 2.0")
    return rows


def _read() -> list[dict]:
    with TABLE.open() as f:
        return list(csv.DictReader(f))


def _ours(row: dict) -> float:
    """Our strategy of the row's law at its argument, in float64, from the table's formula."""
    strategy = st.resolve(row["law"])
    arg = int(row["arg"])
    n = torch.tensor([float(arg)], dtype=torch.float64)
    positions = torch.tensor([[[arg]]]) if row["kind"] == "position" else torch.tensor([[[arg - 1]]])
    inputs = st.Inputs(x=torch.zeros(1, 1, 1, 4, dtype=torch.float64), proj=None, positions=positions, n=n, q=None,
                       train_length=int(row["length"]) if row["length"] else None, heads=split_heads(1), linear=linear,
                       dtype=torch.float64)
    params = {}
    for name, spec in strategy.params.items():
        value = float(row["param"])
        params[name] = st.per_head(torch.full((1, *([1] if spec.shape else [])), value, dtype=torch.float64), spec.shape)
    return float(torch.as_tensor(strategy.formula(inputs, params)).reshape(-1)[0])


def test_every_published_law_meets_its_upstream_values():
    rows = _read()
    assert {r["law"] for r in rows} == {"llama4", "ministral", "yarn", "qwen", "ssmax", "released"}
    for r in rows:
        assert _ours(r) == pytest.approx(float(r["value"]), rel=1e-12, abs=1e-15), r


def test_the_table_is_what_the_upstream_code_gives_today():
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("executing the upstream laws needs transformers (the [hf] extra)")
    fresh = _upstream_rows()
    committed = _read()
    assert [(r["law"], str(r["arg"])) for r in fresh] == [(r["law"], r["arg"]) for r in committed]
    for a, b in zip(fresh, committed):
        assert float(a["value"]) == pytest.approx(float(b["value"]), rel=1e-12), (a, b)


def test_llama4_and_ministral_step_one_position_apart():
    """The off-by-one between the two published forms: at L0 = 8 they differ at p = 7, 15, 23, ... only."""
    rows = {(r["law"], int(r["arg"])): float(r["value"]) for r in _read()}
    differ = [p for p in POSITIONS if rows[("llama4", p)] != rows[("ministral", p)]]
    assert differ == [p for p in POSITIONS if (p + 1) % L0 == 0]


def test_a_wrong_law_fails_the_table(monkeypatch):
    """The check can fail: ministral computed with Llama 4's step misses the table."""
    wrong = st.resolve("llama4")
    monkeypatch.setitem(st._REGISTRY, "ministral", wrong)
    row = next(r for r in _read() if r["law"] == "ministral" and int(r["arg"]) == 7)
    assert _ours(row) != pytest.approx(float(row["value"]), rel=1e-12)


if __name__ == "__main__":  # python tests/test_laws.py: write the table from the upstream code
    rows = _upstream_rows()
    TABLE.parent.mkdir(exist_ok=True)
    with TABLE.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {TABLE}", file=sys.stderr)
