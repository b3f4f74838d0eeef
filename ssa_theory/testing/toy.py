"""A toy experiment for tests of the machinery: run directories, locks, sweeps, ``reproduce``.

It trains nothing: each member seed draws ``n`` standard normals and reports their mean shifted by
``shift``. It writes what a real experiment writes (config, env, metrics with per-seed values and
CIs, a table, an array, a figure) in well under a second, so tests of file handling never need a
real experiment. Switches make a run misbehave on purpose:

    crash=true     the process dies at once (``os._exit``), as a killed worker would
    fail=true      ``run`` raises a RuntimeError
    sleep_s=S      ``run`` sleeps S seconds first (to hold a run while another process races it)

``SPLIT`` is the toy split into three models (``Experiment.models``), each its own run directory
(``ssa_theory.cells``), for tests of experiments collected from their models.

Not registered by default. A test registers it (``registry.register(toy.EXPERIMENT, ref=toy.REF)``)
or names it by reference, ``ssa_theory.testing.toy:EXPERIMENT``, which fresh worker processes can
import.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssa_theory.config import check_ranges, ranged
from ssa_theory.registry import Experiment, Models, Preset
from ssa_theory.rundir import RunContext, summarise, with_ci
from ssa_theory.seeding import Members, numpy_rng
from ssa_theory.skeleton import ModelSpec, Trained
from ssa_theory.stats import ci_columns

REF = "ssa_theory.testing.toy:EXPERIMENT"

# Process state, never a result: ``parent`` tells a forked worker (which inherits it) from a spawned one;
# ``sleep_s`` adds a delay in one process only (a test holds a Dask worker busy with it).
STATE = {"parent": False, "sleep_s": 0.0}
LOG_ENV = "SSA_THEORY_TOY_LOG"  # if set, a file to which every computed run appends its hash (counts computations)


def set_state(key: str, value) -> None:
    """Set ``STATE[key]`` in this process (importable, so a Dask worker can be told to run it)."""
    STATE[key] = value


@dataclass(frozen=True)
class ToyConfig:
    """Settings of the toy experiment."""

    n: int = ranged(100, ge=1)
    shift: float = 0.0
    crash: bool = False
    fail: bool = False
    sleep_s: float = ranged(0.0, ge=0, le=600)

    def __post_init__(self) -> None:
        check_ranges(self)


def run(cfg: ToyConfig, ctx: RunContext) -> None:
    if cfg.sleep_s or STATE["sleep_s"]:
        time.sleep(cfg.sleep_s + STATE["sleep_s"])
    if cfg.crash:
        os._exit(17)
    if cfg.fail:
        raise RuntimeError("the toy experiment was asked to fail")
    if os.environ.get(LOG_ENV):
        with open(os.environ[LOG_ENV], "a") as f:
            f.write(ctx.path.name.partition(".partial-")[0].lstrip(".") + "\n")
    values = np.array([numpy_rng(s, "data").standard_normal(cfg.n).mean() + cfg.shift for s in ctx.seeds])
    ctx.save_arrays("values", seeds=np.asarray(ctx.seeds), values=values)
    table = pd.DataFrame([{"quantity": "mean", **ci_columns("value", values)}])
    ctx.write_table("summary", table, with_ci(table, ["value"]))
    ctx.write_metrics({**summarise({"value": values}), "inherited_parent_state": STATE["parent"]})


def plot(run_dir: Path) -> None:
    import matplotlib.pyplot as plt

    from ssa_theory.plotting import save

    with np.load(Path(run_dir) / "arrays" / "values.npz") as f:
        seeds, values = f["seeds"], f["values"]
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot(seeds, values, "o")
    save(fig, run_dir, "values")


EXPERIMENT = Experiment(
    name="toy",
    version="1",
    claim="none (a toy for tests of the machinery)",
    config=ToyConfig,
    run=run,
    plot=plot,
    headline="summary",
    presets={"default": Preset(seeds=3, about="three seeds"),
             "quick": Preset({"n": 10}, seeds=2, about="two seeds", scratch=True)},
)

# A second toy, for tests that need two experiments (reproduce --jobs); it draws its numbers the same way.
OTHER = dataclasses.replace(EXPERIMENT, name="toy_other", presets={
    name: dataclasses.replace(p, minutes=1.0) for name, p in EXPERIMENT.presets.items()})
OTHER_REF = "ssa_theory.testing.toy:OTHER"

# A toy whose default preset fails (``fail=True``), for tests of a failure inside a parallel reproduce.
FAILING = dataclasses.replace(EXPERIMENT, name="toy_failing", presets={
    **EXPERIMENT.presets, "default": dataclasses.replace(EXPERIMENT.presets["default"], overrides={"fail": True})})
FAILING_REF = "ssa_theory.testing.toy:FAILING"


# The toy split into models: model k draws each member's numbers as the toy does, shifted by k's index,
# and keeps a training history of two dtypes; ``fail=true`` makes model "b" fail. The run tabulates them.
SPLIT_MODELS = ("a", "b", "c")
SPLIT_REF = "ssa_theory.testing.toy:SPLIT"


def train_split_model(cfg: ToyConfig, key: str, ctx: RunContext) -> Trained:
    if cfg.fail and key == "b":
        raise RuntimeError("the toy's model b was asked to fail")
    if os.environ.get(LOG_ENV):
        with open(os.environ[LOG_ENV], "a") as f:
            f.write(f"model {key}\n")
    shift = cfg.shift + SPLIT_MODELS.index(key)
    values = np.array([numpy_rng(s, "data").standard_normal(cfg.n).mean() + shift for s in ctx.seeds])
    history = {"step": np.arange(3), "loss": np.outer([3.0, 2.0, 1.0], values).astype(np.float32)}
    return Trained(ModelSpec(key, "vanilla", {"shift": shift}), Members.of(ctx.seeds), {"values": values}, history)


def run_split(cfg: ToyConfig, ctx: RunContext) -> None:
    from ssa_theory import cells

    trained = cells.trained(SPLIT, cfg, ctx)
    values = np.concatenate([t["values"] for t in trained.values()])
    ctx.save_arrays("values", seeds=np.tile(ctx.seeds, len(trained)), values=values)
    table = pd.DataFrame([{"model": k, **ci_columns("value", t["values"])} for k, t in trained.items()])
    ctx.write_table("summary", table, with_ci(table, ["value"]))
    ctx.write_metrics({k: {**summarise({"value": t["values"]}), "final_loss": t.history["loss"][-1]}
                       for k, t in trained.items()})


SPLIT = dataclasses.replace(EXPERIMENT, name="toy_split", run=run_split, models=Models(
    lambda cfg: list(SPLIT_MODELS), train_split_model, weight=lambda cfg, key: 1.0 + SPLIT_MODELS.index(key)))
