"""The core version follows the numbers: golden outputs pin it (``ssa_theory.core``, ``ssa_theory.golden``).

The record must be met by today's code; a change of one float32 ulp in a strategy's constant must move
it beyond the tolerance; a reordered operation that is not exact must change the bit-for-bit digest;
and ``--record`` must refuse numbers that moved without a version bump."""

import dataclasses
import shutil

import pytest
import torch

from ssa_theory import core, golden, registry, strategies, variants
from ssa_theory.rundir import run_dir

ULP32 = 2.0 ** -23  # one float32 ulp, relative


def test_the_golden_outputs_match_the_core_version():
    report = core.check()
    assert report.ok, str(report)
    assert not report.new, f"golden outputs not recorded yet ({report.new[:4]}): python -m ssa_theory.core --record"
    assert list(core.HISTORY)[-1] == core.VERSION


def test_a_one_ulp_change_in_a_strategy_constant_moves_the_golden_outputs(monkeypatch):
    assert not core.check(golden.compute(("llama4",))).moved
    monkeypatch.setattr(strategies, "LLAMA4_BETA", strategies.LLAMA4_BETA * (1 + ULP32))
    moved = core.check(golden.compute(("llama4",))).moved
    assert moved and all("/llama4/" in name for name in moved)


def test_a_one_ulp_change_inside_a_formula_moves_the_golden_outputs(monkeypatch):
    yarn = strategies.resolve("yarn")

    def planted(i, p):  # YaRN's 0.1, one float32 ulp larger
        return (1.0 + 0.1 * (1 + ULP32) * torch.log(torch.clamp(i.n / i.train_length, min=1.0))) ** 2

    monkeypatch.setitem(strategies._REGISTRY, "yarn", dataclasses.replace(yarn, formula=planted))
    monkeypatch.setitem(variants.VARIANTS, "yarn", variants._v("yarn", scale="yarn"))  # variants resolve once, when made
    moved = core.check(golden.compute(("yarn",))).moved
    assert moved and all("/yarn/" in name for name in moved)


def test_a_reordered_operation_that_is_not_exact_changes_the_bits(monkeypatch):
    before = golden.compute(("ssa_q_tok",))

    def as_matmul(h, u):  # u . GELU(h) as a matrix product: the same sum in another order
        return (torch.nn.functional.gelu(h) @ u.transpose(-1, -2))[..., 0]

    monkeypatch.setattr(strategies, "token_argument", as_matmul)
    after = golden.compute(("ssa_q_tok",))
    moved_bits = [k for k in before if golden.digest({k: before[k]}) != golden.digest({k: after[k]})]
    assert moved_bits, "the reordered sum gave the same bits: the planted change is exact, pick another"
    report = core.check(after)
    if report.bits is not None:  # this machine kind has a bit-for-bit record: the check must fail on it
        assert report.bits and not report.ok


def test_record_refuses_numbers_that_moved_without_a_version_bump(tmp_path, monkeypatch):
    path = tmp_path / "core_golden.json"
    shutil.copy(core.GOLDEN, path)
    monkeypatch.setattr(strategies, "LLAMA4_BETA", strategies.LLAMA4_BETA * (1 + ULP32))
    with pytest.raises(ValueError, match="moved beyond the tolerance"):
        core.record(path)
    assert path.read_text() == core.GOLDEN.read_text()  # nothing half-written


def test_a_missing_record_asks_for_one(tmp_path):
    report = core.check({"stats": golden.compute(("vanilla",))["public/vanilla/float64/padded"]},
                        tmp_path / "none.json")
    assert not report.ok and "record" in str(report)


def test_the_core_version_enters_every_run_hash(monkeypatch):
    exp = registry.get("graph_transition")
    cfg = exp.config(**exp.presets["quick"].overrides)
    a = run_dir("runs", exp, cfg, [0], torch.device("cpu"))
    monkeypatch.setattr(core, "VERSION", core.VERSION + "-next")
    assert run_dir("runs", exp, cfg, [0], torch.device("cpu")) != a
