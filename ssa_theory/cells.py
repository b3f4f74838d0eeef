"""Runs collected from runs: the ablation's cells and the models of a split experiment.

Some experiments are collected from run directories of their own, so that ``reproduce`` can spread
one experiment's work over every worker, and a finished piece is reused by whoever asks for it next:

- the ablation: one run per (variant, task) (``ablation.CELL``);
- an experiment that trains independent models and then measures them together
  (``Experiment.models``: dilution, norm_spikiness, passkey, flipflop): one run per model (``MODEL``),
  which keeps the model's ``skeleton.Trained`` record exactly (its arrays and training history as
  ``.npz``, its spec and members as JSON), so that the experiment's tables are the ones it computes
  when it trains every model itself.

``execute_all`` runs or reuses a list of such runs, one after another in this process or on a pool of
worker processes; ``trained`` is what a split experiment's ``run`` calls to get its models.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from ssa_theory import registry
from ssa_theory.config import ConfigError, UsageError, build_config, from_json, to_json
from ssa_theory.registry import Experiment, Preset
from ssa_theory.rundir import RunContext, execute, load_arrays, read_json
from ssa_theory.seeding import Members
from ssa_theory.skeleton import ModelSpec, Trained
from ssa_theory.train import Diverged


def execute_all(tasks: Sequence[tuple[str, Mapping[str, Any]]], labels: Sequence[str], *, seeds: Sequence[int],
                device: torch.device, out: Path, preset: str, jobs: int = 1, quiet: bool = True,
                log: Callable[[str], None] | None = None, force: bool = False) -> list[Path]:
    """Run or reuse every task (an experiment reference and its config overrides, ``labels`` naming
    them in progress lines) with ``seeds`` under ``out``; their run directories, in order.

    ``jobs`` > 1 runs them on that many worker processes (``sweep.LocalPool``, each at this process's
    thread count); then a task that fails raises one ``RuntimeError`` naming every task that did not
    finish. ``log`` gets one line per finished task; ``force`` recomputes finished ones."""
    say = log or (lambda msg: None)
    paths: list[Path | None] = [None] * len(tasks)
    if jobs > 1 and len(tasks) > 1:
        from ssa_theory.sweep import LocalPool, task

        pool_tasks = [task(ref, preset, overrides, seeds, device=device.type, out=out, threads=torch.get_num_threads(),
                           force=force) for ref, overrides in tasks]
        failed: dict[int, str] = {}

        def on_event(j: int, status: str, info: str | None) -> None:
            if status == "done":
                paths[j] = Path(info)
            elif status in ("failed", "cancelled"):
                failed[j] = info or status
            else:
                return
            say(f"[{sum(p is not None for p in paths) + len(failed)}/{len(tasks)}] {labels[j]}: {status}")

        LocalPool(min(jobs, len(tasks)), max_attempts=2).run(pool_tasks, on_event)
        missing = [f"{labels[j]} ({failed.get(j, 'not run')})" for j, p in enumerate(paths) if p is None]
        if missing:
            raise RuntimeError(f"{len(missing)} of {len(tasks)} runs did not finish: {'; '.join(missing)}")
        return paths
    for i, (ref, overrides) in enumerate(tasks):
        experiment = registry.get(ref)
        config = build_config(experiment.config, experiment.presets[preset].overrides, overrides)
        start = time.perf_counter()
        paths[i], reused = execute(experiment, config, seeds=list(seeds), device=device, out=out, preset=preset,
                                   quiet=quiet, force=force)
        say(f"[{i + 1}/{len(tasks)}] {labels[i]}: {'reused' if reused else 'trained'} "
            f"({time.perf_counter() - start:.1f} s)")
    return paths


# --- one model of a split experiment -------------------------------------------------------------------


def _split_experiment(name: str) -> Experiment:
    """The experiment ``name`` (a registered name or ``module:ATTR``), which must declare its models."""
    try:
        experiment = registry.get(name)
    except UsageError as e:
        raise ConfigError(f"experiment: {e}") from None
    if experiment.models is None:
        raise ConfigError(f"experiment: {experiment.name} is not split into models (it declares no Experiment.models)")
    return experiment


@dataclass(frozen=True)
class ModelConfig:
    """One model of a split experiment: ``model`` (one of its ``models.keys``) trained under the
    experiment's resolved config, given as ``config.to_json`` wrote it (every field, so that a default
    changed later cannot make an old run look current)."""

    experiment: str = "dilution"
    config: str = "{}"
    model: str = "vanilla"

    def __post_init__(self) -> None:
        resolved = self.resolved()
        keys = _split_experiment(self.experiment).models.keys(resolved)
        # the variant this model trains (its key is its name, or PREFIX: + its name): a plug-in's code
        # enters this run's hash, and no other model's
        mine = {n: v for n, v in getattr(resolved, "_variants", {}).items()
                if self.model == n or self.model.endswith(":" + n)}
        object.__setattr__(self, "_variants", mine)
        if self.model not in keys:
            raise ConfigError(f"model: {self.model!r} is not a model of {self.experiment}; its models: {', '.join(keys)}")

    def resolved(self) -> Any:
        """The experiment's config."""
        return from_json(_split_experiment(self.experiment).config, self.config)


def run_model(cfg: ModelConfig, ctx: RunContext) -> None:
    """Train the one model and keep its ``Trained`` record (``load`` reads it back)."""
    experiment = _split_experiment(cfg.experiment)
    try:
        t = experiment.models.train(cfg.resolved(), cfg.model, ctx)
    except Diverged as e:
        e.experiment = experiment.name  # the message names the experiment, not this run's wrapper
        raise
    ctx.save_arrays("model", **t.arrays)
    ctx.save_arrays("history", **t.history)
    ctx.write_table("members",
                    pd.DataFrame({"seed": t.members.seeds, "cell": t.members.cells, "label": t.members.labels}))
    ctx.write_metrics({"label": t.spec.label, "variant": t.spec.variant, "extras": dict(t.spec.extras),
                       "seeds": t.members.seeds, "cells": t.members.cells, "labels": t.members.labels})


def load(run_dir: Path) -> Trained:
    """The ``Trained`` record a model run kept: every array bit for bit as the training returned it."""
    m = read_json(Path(run_dir) / "metrics.json")
    return Trained(ModelSpec(m["label"], m["variant"], m["extras"]),
                   Members(tuple(m["seeds"]), tuple(m["cells"]), tuple(m["labels"])),
                   load_arrays(run_dir, "model"), load_arrays(run_dir, "history"))


def _depends(cfg: ModelConfig) -> dict[str, str]:
    """A model's results depend on everything its experiment's do: its version, shared tasks and
    ``depends`` (they enter the run hash)."""
    e = _split_experiment(cfg.experiment)
    return {f"experiment:{e.name}": e.version, **e.tasks, **(e.depends(cfg.resolved()) if e.depends else {})}


MODEL = Experiment(
    name="model_cell",
    version="1",
    claim="one model of an experiment split into its models (collected by it; not a result of its own)",
    config=ModelConfig,
    run=run_model,
    plot=lambda run_dir: None,
    headline="members",
    presets={"default": Preset({}, about="one model of a split experiment"),
             "quick": Preset({}, about="one model of a split experiment's quick run", scratch=True)},
    depends=_depends,
)
MODEL_REF = "ssa_theory.cells:MODEL"  # how worker processes find it (it is not registered: no list entry)


def split(experiment: Experiment, config: Any, minutes: float) -> list[tuple[str, Mapping[str, Any], float]]:
    """The runs ``experiment`` is collected from, for ``config``: (experiment reference, config overrides,
    estimated minutes) each, ``minutes`` being its own estimate (shared out among its models by their
    weights); none for an experiment that trains in one piece (``Experiment.cells`` or ``.models``)."""
    if experiment.cells is not None:
        return experiment.cells(config)
    if experiment.models is not None:
        return model_cells(experiment, config, minutes)
    return []


def model_cells(experiment: Experiment, config: Any, minutes: float) -> list[tuple[str, dict[str, str], float]]:
    """One task per model of ``experiment`` under ``config``: (``MODEL_REF``, its overrides, its share
    of ``minutes`` by the models' weights). The experiment is named as a fresh process finds it."""
    spec = experiment.models
    keys = spec.keys(config)
    weights = [spec.weight(config, k) if spec.weight else 1.0 for k in keys]
    text, ref = to_json(config), _ref(experiment)
    return [(MODEL_REF, {"experiment": ref, "config": text, "model": k}, minutes * w / sum(weights))
            for k, w in zip(keys, weights)]


def _ref(experiment: Experiment) -> str:
    """How a fresh process reaches ``experiment``: its registered name or reference, else the module
    attribute that holds it (found in the module that defines its ``run``)."""
    ref = registry.ref(experiment.name)
    if ref != experiment.name or experiment.name in registry.names():
        return ref
    module = sys.modules.get(experiment.run.__module__)
    for attr, value in vars(module or object()).items():
        if value is experiment:
            return f"{module.__name__}:{attr}"
    raise UsageError(f"{experiment.name} is not registered, so the runs of its models cannot find it; register it "
                     "with registry.register(experiment, ref='module:ATTR')")


def trained(experiment: Experiment, config: Any, ctx: RunContext) -> dict[str, Trained]:
    """Every model of ``experiment`` under ``config``, by key, each trained (or reused, when finished)
    as its own run directory under ``ctx.out``: what a split experiment's ``run`` measures."""
    tasks = model_cells(experiment, config, 0.0)
    keys = [overrides["model"] for _, overrides, _ in tasks]
    say = None if ctx.quiet else (lambda msg: print(f"{experiment.name}: {msg}", file=sys.stderr, flush=True))
    paths = execute_all([(ref, overrides) for ref, overrides, _ in tasks], [f"model {k}" for k in keys],
                        seeds=ctx.seeds, device=ctx.device,
                        out=ctx.out if ctx.out is not None else ctx.path / "models", preset="default",
                        quiet=ctx.quiet, log=say)
    return {k: load(p) for k, p in zip(keys, paths)}
