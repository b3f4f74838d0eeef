"""Experiments collected from runs of their own (``ssa_theory.cells``): a split experiment's models
each a run directory, kept bit for bit, reused when finished, spread over a pool by ``reproduce`` and
collected into the tables the experiment computes when it trains every model itself. (A parallel
reproduce of a split experiment against one job: test_reproduce.py.)"""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ssa_theory import cells, cli, registry, reproduce
from ssa_theory.config import ConfigError, from_json, to_json
from ssa_theory.rundir import RunContext, execute
from ssa_theory.testing import toy

CPU = torch.device("cpu")


def _files(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file() and f.name != "env.json"}


def test_a_model_run_keeps_the_trained_record_bit_for_bit(tmp_path):
    """A real model (dilution, quick size) trained in this process against the one its run directory
    gives back: every array and the history, values and dtypes."""
    dilution = registry.get("dilution")
    cfg = dilution.config(**{**dilution.presets["quick"].overrides, "strategies": ("vanilla", "log_n"),
                             "noise_strategies": ("log_n",), "steps": 30, "log_every": 10, "n_eval": 16})
    ctx = RunContext(tmp_path / "direct", [0], CPU, quiet=True, out=tmp_path / "runs")
    (tmp_path / "direct").mkdir()
    got = cells.trained(dilution, cfg, ctx)
    assert list(got) == ["vanilla", "log_n", "placebo", "noisy:log_n"] == dilution.models.keys(cfg)
    for key in got:
        direct = dilution.models.train(cfg, key, ctx)
        assert got[key].spec == direct.spec and got[key].members == direct.members
        assert set(got[key].arrays) == set(direct.arrays) and set(got[key].history) == set(direct.history)
        for name, a in [*direct.arrays.items(), *direct.history.items()]:
            b = got[key].arrays.get(name, got[key].history.get(name))
            assert b.dtype == np.asarray(a).dtype and np.array_equal(b, a, equal_nan=True), (key, name)
    assert len(list((tmp_path / "runs" / "model_cell").iterdir())) == 4


def test_a_split_run_trains_each_model_once_and_reuses_it(tmp_path, monkeypatch):
    log = tmp_path / "computed.txt"
    monkeypatch.setenv(toy.LOG_ENV, str(log))
    path, reused = execute(toy.SPLIT, toy.ToyConfig(), seeds=[0, 1], device=CPU, out=tmp_path, preset="default",
                           quiet=True)
    assert not reused and log.read_text().split("\n")[:-1] == ["model a", "model b", "model c"]
    # the experiment recomputed (another run hash) while its models are finished: nothing is trained again
    again, _ = execute(toy.SPLIT, toy.ToyConfig(), seeds=[0, 1], device=CPU, out=tmp_path, preset="default",
                       quiet=True, force=True)
    assert log.read_text().count("model") == 3 and _files(again) == _files(path)
    # another config is another set of models
    execute(toy.SPLIT, toy.ToyConfig(shift=1.0), seeds=[0, 1], device=CPU, out=tmp_path, preset="default", quiet=True)
    assert log.read_text().count("model") == 6 and len(list((tmp_path / "model_cell").iterdir())) == 6


def test_a_failing_model_fails_the_run_and_saves_no_experiment(tmp_path):
    with pytest.raises(RuntimeError, match="model b was asked to fail"):
        execute(toy.SPLIT, toy.ToyConfig(fail=True), seeds=[0], device=CPU, out=tmp_path, preset="default", quiet=True)
    assert not (tmp_path / "toy_split").exists() or list((tmp_path / "toy_split").iterdir()) == []
    assert len(list((tmp_path / "model_cell").iterdir())) == 1  # model a finished, and is kept for the rerun


def test_reproduce_schedules_every_model_of_every_split_experiment_and_no_task_is_a_tenth_of_the_work():
    """(the order, longest first and collectors last: test_reproduce.py)"""
    names = registry.names()
    plan = reproduce._plan([registry.get(n) for n in names], "default", 0)
    jobs = reproduce._jobs(plan, names, "default", device=CPU, out=Path("runs"), force=False)
    split = [n for n in names if registry.get(n).models is not None]
    assert set(split) == {"dilution", "critical", "norm_spikiness", "passkey", "flipflop", "text"}
    for n in split:
        e, cfg = registry.get(n), plan[names.index(n)][1]
        tasks = [t for label, t, i in jobs if label.startswith(f"{n} model ")]
        assert sorted(t["overrides"]["model"] for t in tasks) == sorted(e.models.keys(cfg))
        assert all(t["name"] == cells.MODEL_REF and from_json(e.config, t["overrides"]["config"]) == cfg for t in tasks)
        assert all(t["seeds"] == plan[names.index(n)][2] for t in tasks)
        # every model's estimate is a share of the experiment's own; together they are all of it
        shares = [m for _, _, m in cells.split(e, cfg, e.presets["default"].minutes)]
        assert sum(shares) == pytest.approx(e.presets["default"].minutes)
    estimates = [m for e, c, _ in plan for _, _, m in cells.split(e, c, e.presets["default"].minutes)]
    estimates += [e.presets["default"].minutes for e, c, _ in plan if not cells.split(e, c, 0.0)]
    assert sorted(estimates, reverse=True)[0] < 0.1 * sum(estimates)  # no task near a tenth of the work


def test_a_bad_model_config_is_one_line_naming_the_fix():
    with pytest.raises(ConfigError, match="unknown experiment 'dilutoin'; did you mean dilution"):
        cells.ModelConfig(experiment="dilutoin")
    with pytest.raises(ConfigError, match="denoising is not split into models"):
        cells.ModelConfig(experiment="denoising")
    with pytest.raises(ConfigError, match="'sssa' is not a model of passkey; its models: vanilla, ssa, placebo"):
        cells.ModelConfig(experiment="passkey", model="sssa")
    with pytest.raises(ConfigError, match="unknown config keys for PasskeyConfig: nope"):
        cells.ModelConfig(experiment="passkey", config='{"nope": 1}')
    with pytest.raises(ConfigError, match="not a JSON config"):
        cells.ModelConfig(experiment="passkey", config="[1, 2]")


@pytest.mark.parametrize("name", ["graph_transition", "denoising", "norm_spikiness", "dilution", "specificity",
                                  "passkey", "flipflop", "ablation"])
def test_every_presets_config_survives_its_json(name):
    e = registry.get(name)
    for preset in e.presets.values():
        cfg = e.config(**preset.overrides)
        back = from_json(e.config, to_json(cfg))
        assert back == cfg and dataclasses.asdict(back) == dataclasses.asdict(cfg)


def test_a_model_that_diverges_names_its_experiment_and_nothing_of_it_is_saved(tmp_path, capsys):
    rc = cli.main(["run", "dilution", "--quick", "--quiet", "--set", "lr=1e5", "--set", "strategies=vanilla",
                   "--seeds", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert "error: dilution: model vanilla, member seed 0 diverged at step" in err and "nothing was saved" in err
    assert not any((tmp_path / "dilution").iterdir()) and not any((tmp_path / "model_cell").iterdir())
