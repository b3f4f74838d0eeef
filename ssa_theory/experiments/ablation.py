"""ablation: every named attention variant on every task, in the layout of the paper's ablation tables.

The paper ablates its temperature over {Q, K, V} and over {position, token, both} (appendix, p14-15),
and compares temperature strategies (p16), on language-model perplexity only. Here every variant of
``attention.VARIANTS`` (query / key / value side; position term, token term, both; shared or own
projection; the output gate; every competing temperature strategy) is trained on every registered
task that trains attention, each task at a moderate size, with the task's own budget. Each cell is
the task's headline measure relative to its floor, with a 95% CI over seeds:

    graph_transition   excess CE over H(P*) (softcap scores; every temperature pays the same price
                       on its logit multiplier)
    denoising          MSE over the Bayes risk (p_noisy 0.9, sigma_noisy 10: Table 2's regime)
    norm_spikiness     mean token norm over vanilla's least norm at the accuracy each token reached
    dilution           attention mass off the needle at n = 4096, trained on n <= 16
    specificity        excess CE at rho = 0.99, contrast 8

Each task says how it trains a variant (its ``registry.Ablation``): the ablation never imports an
experiment module; the tasks are handed to ``build`` by ``ssa_theory.experiments``, and their versions
enter this experiment's run hash. Inputs a variant needs are given on every task: each key token's
training frequency for ``freq``, the training length for ``yarn`` and ``qwen`` (no task here tests
beyond it but ``dilution``, so there they equal vanilla attention). A variant whose temperature
cannot act on a task's read-out (a value temperature where the attention row itself is the
prediction; an output gate there) trains as vanilla attention with inert parameters, and reads as such.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ssa_theory.attention import VARIANTS, check_variant_name, get_variant
from ssa_theory.claims import paired
from ssa_theory.config import choice, require
from ssa_theory.registry import Experiment, Preset
from ssa_theory.rundir import RunContext, with_ci
from ssa_theory.stats import ci_columns, mean_ci

TASKS = ("graph_transition", "denoising", "norm_spikiness", "dilution", "specificity")
SCALES = ("moderate", "quick")


@dataclass(frozen=True)
class AblationConfig:
    """Settings of ``ablation``; the defaults are the default preset (minutes on 2 CPU cores)."""

    tasks: tuple[str, ...] = TASKS
    variants: tuple[str, ...] = tuple(VARIANTS)
    scale: str = "moderate"  # which version of each task: its ``Ablation.overrides``, or those plus ``quick``

    def __post_init__(self) -> None:
        require(len(self.tasks) >= 1, "tasks must name at least one task")
        for t in self.tasks:
            choice("tasks", t, TASKS)
        require(len(self.variants) >= 1, "variants must name at least one variant")
        for v in self.variants:
            check_variant_name("variants", v)
        choice("scale", self.scale, SCALES)


def describe(name: str) -> str:
    """What a variant changes, in the paper's vocabulary: sides and terms, projection, gate, strategy."""
    v = get_variant(name)
    parts = [f"{side}: {'+'.join(sorted(v.terms(side)))}" for side in ("q", "k", "v") if v.terms(side)]
    if parts and not v.share:
        parts.append("own projection")
    if v.gate:
        parts.append("output gate")
    if v.scale:
        parts.append(f"strategy {v.scale}")
    return ", ".join(parts) or "none"


def _task_config(experiment: Experiment, scale: str):
    spec = experiment.ablation
    overrides = dict(spec.overrides) if scale == "moderate" else {**spec.overrides, **spec.quick}
    return experiment.config(**overrides)


def _run(experiments: dict[str, Experiment], cfg: AblationConfig, ctx: RunContext) -> None:
    rows = []
    for task in cfg.tasks:
        experiment = experiments[task]
        task_cfg = _task_config(experiment, cfg.scale)
        for variant in cfg.variants:
            values = np.asarray(experiment.ablation.run(task_cfg, variant, ctx), dtype=float)
            if values.shape != (len(ctx.seeds),):
                raise RuntimeError(f"{task}'s ablation returned shape {values.shape}, not one value per seed")
            rows += [{"task": task, "variant": variant, "seed": s, "value": float(x)} for s, x in zip(ctx.seeds, values)]
    per_seed = pd.DataFrame(rows)
    ctx.save_frame("per_seed", per_seed)
    _write_results(experiments, cfg, ctx, per_seed)


def _write_results(experiments: dict[str, Experiment], cfg: AblationConfig, ctx: RunContext, per_seed: pd.DataFrame) -> None:
    at = lambda t, v: per_seed[(per_seed.task == t) & (per_seed.variant == v)].sort_values("seed").value.to_numpy()  # noqa: E731
    wide, long, metrics = [], [], {}
    for v in cfg.variants:
        row = {"variant": v, "changes": describe(v)}
        for t in cfg.tasks:
            row.update(ci_columns(t, at(t, v)))
        wide.append(row)
    for t in cfg.tasks:
        van = at(t, "vanilla") if "vanilla" in cfg.variants else None
        metrics[t] = {"measure": experiments[t].ablation.measure, "floor": experiments[t].ablation.floor,
                      "config": asdict(_task_config(experiments[t], cfg.scale)), "variants": {}}
        for v in cfg.variants:
            x = at(t, v)
            m, lo, hi = mean_ci(x)
            entry = {"task": t, "variant": v, "mean": m, "lo": lo, "hi": hi}
            if van is not None:
                d, dlo, dhi = paired(x, van)
                entry.update({"vs_vanilla": m / float(van.mean()), "diff_lo": dlo, "diff_hi": dhi,
                              # the paired 95% CI of (variant - vanilla) excludes 0
                              "differs": bool(dlo > 0 or dhi < 0) if not np.isnan(dlo) else False})
            long.append(entry)
            metrics[t]["variants"][v] = {"mean": m, "ci95": [lo, hi], "per_seed": x,
                                         **({"vs_vanilla": entry["vs_vanilla"]} if van is not None else {})}
    wide = pd.DataFrame(wide)
    ctx.write_table("ablation", wide, with_ci(wide, list(cfg.tasks)))
    ctx.write_table("cells", pd.DataFrame(long))
    ctx.write_table("measures", pd.DataFrame([{"task": t, "measure": experiments[t].ablation.measure,
                                               "floor": experiments[t].ablation.floor} for t in cfg.tasks]))
    ctx.write_metrics({"seeds": list(ctx.seeds), "scale": cfg.scale, "tasks": metrics})


def plot(run_dir: Path) -> None:
    from ssa_theory.experiments import ablation_plots as plots

    plots.heatmap(run_dir)


def build(experiments: Sequence[Experiment]) -> Experiment:
    """The ``ablation`` experiment over ``experiments`` (every registered task that trains attention;
    each must have an ``ablation`` hook). Their versions and shared tasks enter its run hash."""
    by_name = {e.name: e for e in experiments}
    missing = [e.name for e in experiments if e.ablation is None]
    if missing or set(by_name) != set(TASKS):
        raise ValueError(f"the ablation covers {TASKS}; got {sorted(by_name)} (without a hook: {missing})")
    # each task's version, shared tasks and the sizes the ablation trains it at enter the run hash
    depends = {f"experiment:{e.name}": e.version for e in experiments}
    for e in experiments:
        depends.update(e.tasks)
        depends[f"ablation:{e.name}"] = json.dumps({"overrides": dict(e.ablation.overrides), "quick": dict(e.ablation.quick)},
                                                   sort_keys=True, default=list)
    return Experiment(
        name="ablation",
        version="1",
        claim="the paper's Q/K/V x position/token ablation (p14-16), and every strategy, on every task",
        config=AblationConfig,
        run=lambda cfg, ctx: _run(by_name, cfg, ctx),
        plot=plot,
        headline="ablation",
        presets={
            "default": Preset({}, seeds=5, about="the run paper_repro.md reports (minutes on 2 CPU cores)", minutes=7.1),
            "quick": Preset({"scale": "quick", "variants": ("vanilla", "ssa", "global", "freq", "yarn")}, seeds=2,
                            about="a smoke test in seconds; numbers are not converged", scratch=True),
        },
        tasks=depends,
    )
