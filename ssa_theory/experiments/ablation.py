"""ablation: every named attention variant on every task, in the layout of the paper's ablation tables.

The paper ablates its temperature over {Q, K, V} and over {position, token, both} (appendix, p14-15),
and compares temperature strategies (p16), on language-model perplexity only. Here every variant of
``variants.VARIANTS`` (query / key / value side; position term, token term, both; shared or own
projection; the output gate; every competing temperature strategy) is trained on every registered
task that trains attention, each task at a moderate size, with the task's own budget. Each cell is
the task's headline measure relative to its floor, with a 95% CI over seeds:

    graph_transition   excess CE over H(P*) (softcap scores; every temperature pays the same price
                       on its logit multiplier)
    denoising          MSE over the Bayes risk (p_noisy 0.9, sigma_noisy 10: Table 2's regime)
    norm_spikiness     mean token norm over vanilla's least norm at the accuracy each token reached
    dilution           attention mass off the needle at n = 4096, trained on n <= 16
    critical           the same in a bounded geometry (cosine scores, bound 1): no gap can grow past 2
    specificity        excess CE at rho = 0.99, contrast 8
    passkey            passkeys missed at n = 4096, trained on n <= 128 (1 digit)
    flipflop           glitch rate on sparse flip-flop sequences (p_ignore 0.98)

A task's hook may also say, per seed, whether the model learned the task at its training length
(``LEARNED``): a cell whose models did not all learn is marked and not tested against vanilla.

Each task says how it trains a variant (its ``registry.Ablation``): the ablation never imports an
experiment module. Its tasks are every registered experiment that declares that hook
(``registry.with_ablation``; ``--set tasks=...`` picks some, by name or ``module:ATTR``), so a new
experiment joins the ablation by registering; their versions enter this experiment's run hash.
Inputs a variant needs are given on every task: each key token's
training frequency for ``freq``, the training length for ``yarn`` and ``qwen`` (no task here tests
beyond it but ``dilution``, so there they equal vanilla attention). A variant whose temperature
cannot act on a task's read-out (a value temperature where the attention row itself is the
prediction; an output gate there) trains as vanilla attention with inert parameters, and reads as such.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ssa_theory.variants import VARIANTS, get_variant, resolve_variants, variant_of
from ssa_theory.claims import paired
from ssa_theory import registry
from ssa_theory.config import ConfigError, UsageError, check_ranges, ranged, require, variant_field
from ssa_theory.registry import Experiment, Preset
from ssa_theory.rundir import RunContext
from ssa_theory.skeleton import Results, figures, write_results
from ssa_theory.stats import ci_columns, interval, measure_range

SCALES = ("moderate", "quick")


def _task(name: str) -> Experiment:
    """The registered experiment (or ``module:ATTR``) ``name``, which must declare an ablation hook."""
    try:
        experiment = registry.get(name)
    except UsageError as e:
        raise ConfigError(f"tasks: {e}") from None
    if experiment.ablation is None:
        raise ConfigError(f"tasks: experiment {name!r} declares no ablation hook; choose from "
                          f"{', '.join(registry.with_ablation())}")
    return experiment


@dataclass(frozen=True)
class AblationConfig:
    """Settings of ``ablation``; the defaults are the default preset (minutes on 2 CPU cores)."""

    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(registry.with_ablation()))  # every registered hook
    variants: tuple[str, ...] = variant_field(tuple(VARIANTS))  # the rows: every variant trained on every task
    scale: str = ranged("moderate", choices=SCALES)  # which version of each task: its ``Ablation.overrides``, or those plus ``quick``

    def __post_init__(self) -> None:
        check_ranges(self)
        require(len(self.tasks) >= 1, "tasks must name at least one task")
        for t in self.tasks:
            _task(t)
        require(len(self.variants) >= 1, "variants must name at least one variant")
        resolve_variants(self)


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
    """The task's config at the ablation's ``scale``: made once per process (a frozen config; every
    cell of the task shares it, so its variant fields are resolved once)."""
    return _task_config_of(experiment.name, registry.ref(experiment.name), scale)


@functools.lru_cache(maxsize=None)
def _task_config_of(name: str, ref: str, scale: str):
    experiment = registry.get(ref)
    spec = experiment.ablation
    overrides = dict(spec.overrides) if scale == "moderate" else {**spec.overrides, **spec.quick}
    return experiment.config(**overrides)


def _values(result, n_seeds: int, task: str) -> dict[str, np.ndarray]:
    """A task hook's result as ``{"value": (S,), extra measure: (S,), ...}``."""
    out = dict(result) if isinstance(result, Mapping) else {"value": result}
    out = {k: np.asarray(v, dtype=float) for k, v in out.items()}
    if "value" not in out or any(v.shape != (n_seeds,) for v in out.values()):
        raise RuntimeError(f"{task}'s ablation returned {({k: v.shape for k, v in out.items()})}, not one value per seed")
    return out


# --- the cells: one run directory per (variant, task) -------------------------------------------------------


@dataclass(frozen=True)
class CellConfig:
    """One cell of the ablation: ``variant`` trained on ``task`` at the ablation's ``scale``."""

    task: str = "graph_transition"
    variant: str = variant_field("vanilla")
    scale: str = ranged("moderate", choices=SCALES)

    def __post_init__(self) -> None:
        check_ranges(self)
        _task(self.task)
        resolve_variants(self)


def run_cell(cfg: CellConfig, ctx: RunContext) -> None:
    """Train the cell's variant on its task for every member seed; its values per seed (``per_seed``)."""
    experiment = _task(cfg.task)
    variant = variant_of(cfg, cfg.variant)  # resolved once, by the config; the task builds its model from it
    values = _values(experiment.ablation.run(_task_config(experiment, cfg.scale), variant, ctx), len(ctx.seeds),
                     cfg.task)
    rows = [{"task": cfg.task, "variant": cfg.variant, "seed": s, **{k: float(v[i]) for k, v in values.items()}}
            for i, s in enumerate(ctx.seeds)]
    ctx.write_table("per_seed", pd.DataFrame(rows))
    ctx.write_metrics({"task": cfg.task, "variant": cfg.variant, "scale": cfg.scale, "seeds": list(ctx.seeds),
                       **{k: v.tolist() for k, v in values.items()}})


def _task_depends(task: str) -> dict[str, str]:
    """What a task's cells depend on besides their config: the experiment's version, its shared
    tasks, and the sizes the ablation trains it at (they enter the run hash)."""
    e = _task(task)
    return {f"experiment:{e.name}": e.version, **e.tasks,
            f"ablation:{e.name}": json.dumps({"overrides": dict(e.ablation.overrides), "quick": dict(e.ablation.quick)},
                                             sort_keys=True, default=list)}


CELL = Experiment(
    name="ablation_cell",
    version="2",  # 2: a hook may report whether each seed learned the task (LEARNED)
    claim="one (variant, task) cell of the ablation (collected by ablation; not a result of its own)",
    config=CellConfig,
    run=run_cell,
    plot=lambda run_dir: None,
    headline="per_seed",
    presets={"default": Preset({}, seeds=5, about="a cell at the moderate size"),
             "quick": Preset({"scale": "quick"}, seeds=2, about="a cell at the quick size", scratch=True)},
    depends=lambda cfg: _task_depends(cfg.task),
)
CELL_REF = "ssa_theory.experiments.ablation:CELL"  # how worker processes find it (it is not registered: no list entry)


def cells(cfg: AblationConfig) -> list[tuple[str, dict, float]]:
    """Every (task, variant) cell of the config: (reference, overrides, minutes), for ``reproduce``."""
    return [(CELL_REF, {"task": t, "variant": v, "scale": cfg.scale},
             _task(t).ablation.minutes * (1.0 if cfg.scale == "moderate" else 0.05))
            for t in cfg.tasks for v in cfg.variants]


def collect_cells(cfg: AblationConfig, ctx: RunContext, log=None) -> pd.DataFrame:
    """The per-seed values of every cell, each trained (or reused, when finished) as its own run
    directory under ``ctx.out``: rows (task, variant, seed, value, extra measures)."""
    from ssa_theory.cells import execute_all

    todo = cells(cfg)
    paths = execute_all([(ref, overrides) for ref, overrides, _ in todo],
                        [f"cell {o['variant']} on {o['task']}" for _, o, _ in todo], seeds=ctx.seeds, device=ctx.device,
                        out=ctx.out if ctx.out is not None else ctx.path / "cells",
                        preset="default" if cfg.scale == "moderate" else "quick", log=log)
    return pd.DataFrame([row for path in paths for row in cell_rows(path)])


def cell_rows(path: Path) -> list[dict]:
    """A finished cell's rows (task, variant, seed, value, extra measures), from its ``metrics.json``
    (JSON: every float exactly as computed; a CSV read back may not be)."""
    from ssa_theory.rundir import read_json

    m = read_json(Path(path) / "metrics.json")
    measures = {k: v for k, v in m.items() if k not in ("task", "variant", "scale", "seeds")}
    return [{"task": m["task"], "variant": m["variant"], "seed": s,
             **{k: math.nan if v[i] is None else float(v[i]) for k, v in measures.items()}}
            for i, s in enumerate(m["seeds"])]


def run(cfg: AblationConfig, ctx: RunContext) -> None:
    say = None if ctx.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    write_results(ctx, measure(cfg, collect_cells(cfg, ctx, say), list(ctx.seeds)))


ALPHA = 0.05  # family-wise error rate of the "differs from vanilla" marks (Holm over every paired test)
MATCHED = ("ssa_q_tok", "global")  # the range-matched comparison: both query temperatures in (0, 2)


LEARNED = "learned"  # a hook's per-seed 0/1: whether the model learned the task at its training length


def extras(per_seed: pd.DataFrame) -> list[str]:
    """The further per-seed measures some task hooks return beside their cell (dilution's accuracy);
    ``LEARNED`` is not a measure but a mark (``measure``)."""
    return [c for c in per_seed.columns if c not in ("task", "variant", "seed", "value", LEARNED)]


def learned_count(per_seed: pd.DataFrame, task: str, variant: str) -> tuple[int, int] | None:
    """(seeds that learned the task at its training length, seeds) of a cell, or None where the task's
    hook does not say."""
    if LEARNED not in per_seed.columns:
        return None
    d = per_seed[(per_seed.task == task) & (per_seed.variant == variant)][LEARNED]
    return None if d.isna().all() else (int((d > 0.5).sum()), len(d))


def measure(cfg: AblationConfig, per_seed: pd.DataFrame, seeds: list[int]) -> Results:
    """The wide table (one row per variant, one column per task, and the extra measures beside their
    task), the long one with each cell against vanilla (Holm-corrected marks, the share of vanilla's
    gap to the floor closed), the matched-range comparison, the measures, and metrics.json. Where a
    task's hook reports whether each seed learned the task at its training length (``LEARNED``), a
    cell shows the count (``TASK_learned``, ``learned``), and a cell whose models (or vanilla's) did
    not all learn is marked ``unlearned`` and left out of the Holm family: its difference from
    vanilla is not a test of the variant."""
    # None: the hook does not say
    counts = {(t, v): learned_count(per_seed, t, v) for t in cfg.tasks for v in cfg.variants}

    def at(t, v, key="value"):
        d = per_seed[(per_seed.task == t) & (per_seed.variant == v)].sort_values("seed")
        return d[key].to_numpy()

    extra = {t: [k for k in extras(per_seed) if per_seed[per_seed.task == t][k].notna().any()] for t in cfg.tasks}
    wide = [_wide_row(cfg, v, at, extra, counts) for v in cfg.variants]
    long, metrics = [], {}
    for t in cfg.tasks:
        spec = _task(t).ablation
        van = at(t, "vanilla") if "vanilla" in cfg.variants else None
        metrics[t] = {"measure": spec.measure, "floor": spec.floor, "floor_value": spec.floor_value,
                      "config": asdict(_task_config(_task(t), cfg.scale)), "variants": {}}
        for v in cfg.variants:
            entry = _long_entry(t, v, at, van, extra[t], counts[t, v], counts.get((t, "vanilla")))
            long.append(entry)
            metrics[t]["variants"][v] = {"mean": entry["mean"], "ci95": [entry["lo"], entry["hi"]],
                                         "per_seed": at(t, v),
                                         **({"learned": entry["learned"]} if "learned" in entry else {}),
                                         **({"vs_vanilla": entry["vs_vanilla"]} if van is not None else {}),
                                         **{k: {"mean": entry[k], "per_seed": at(t, v, k)} for k in extra[t]}}
    long = pd.DataFrame(long)
    if "p" in long.columns:
        long["p_holm"] = holm(long.p.to_numpy())
        long["differs"] = long.p_holm < ALPHA  # NaN p (no spread, vanilla itself, a model that did not learn): False
    results = Results()
    results.frames["per_seed"] = per_seed
    results.table("ablation", pd.DataFrame(wide), ci=[*cfg.tasks, *(f"{t}_{k}" for t in cfg.tasks for k in extra[t])])
    results.table("cells", long)
    if all(m in cfg.variants for m in MATCHED):
        results.table("matched", _matched(cfg, at), ci=["diff"])
    results.table("measures",
                  pd.DataFrame([{"task": t, "measure": _task(t).ablation.measure, "floor": _task(t).ablation.floor}
                                            for t in cfg.tasks]))
    results.metrics = {"seeds": seeds, "scale": cfg.scale, "alpha": ALPHA, "correction": "Holm", "tasks": metrics}
    return results


def _wide_row(cfg: AblationConfig, v: str, at, extra: dict, counts: dict) -> dict:
    """One variant's row of the wide table: every task's measure and extra measures with their
    intervals, and the count of seeds that learned the task where the hook says."""
    row = {"variant": v, "changes": describe(v)}
    for t in cfg.tasks:
        row.update(ci_columns(t, at(t, v), bounded=_task(t).ablation.bounded))
        for k in extra[t]:
            row.update(ci_columns(f"{t}_{k}", at(t, v, k), bounded=measure_range(k) is not None))
        if counts[t, v] is not None:
            row[f"{t}_learned"] = "{}/{}".format(*counts[t, v])
    return row


def _long_entry(t: str, v: str, at, van, extra: list[str], count, ref) -> dict:
    """One cell of the long table against vanilla (``_cell``), its extra measures, and its learned count:
    a cell whose models did not all learn the task (or whose vanilla did not) is read as such, not
    tested (its p leaves the Holm family)."""
    spec = _task(t).ablation
    entry = _cell(t, v, at(t, v), van, spec.bounded, spec.floor_value)
    for k in extra:
        entry[k] = float(np.mean(at(t, v, k)))
    if count is not None:
        entry["learned"] = "{}/{}".format(*count)
        entry["unlearned"] = count[0] < count[1] or (ref is not None and ref[0] < ref[1])
        if entry["unlearned"] and "p" in entry:
            entry["p"] = math.nan
    return entry


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN entries stay NaN and do not count as tests): the
    family-wise error rate over every test stays below the level each adjusted value is compared with."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _matched(cfg: AblationConfig, at) -> pd.DataFrame:
    """Per task, ``ssa_q_tok`` (SSA's token term on the query) against ``global`` (one learned scale
    per head): both query inverse temperatures in (0, 2), the comparison with the range matched. The
    outcome reads the paired 95% CI of the difference (lower is better on every task)."""
    rows = []
    for t in cfg.tasks:
        tok, glob = at(t, MATCHED[0]), at(t, MATCHED[1])
        d, lo, hi = paired(tok, glob, bounded=_task(t).ablation.bounded)
        outcome = "tie" if (np.isnan(lo) or lo <= 0 <= hi) else ("token term lower" if hi < 0 else "global lower")
        rows.append({"task": t, MATCHED[0]: tok.mean(), MATCHED[1]: glob.mean(), "diff": d, "diff_lo": lo,
                     "diff_hi": hi,
                     "outcome": outcome})
    return pd.DataFrame(rows)


def _cell(task: str, variant: str, x: np.ndarray, van: np.ndarray | None, bounded: bool = False,
          floor: float = 0.0) -> dict:
    """One cell of the long table: mean and CI over seeds (a bootstrap one for a measure bounded in
    [0, 1]); against vanilla where it was trained: the ratio, the paired difference's CI and its
    paired t-test's p (Holm-corrected over the table in ``measure``), and ``gap_closed``, the share of
    vanilla's distance to the floor this variant removes (1: at the floor; 0: as vanilla; < 0: worse)."""
    from scipy.stats import ttest_1samp  # here: scipy.stats costs every process a second to import

    m, lo, hi = interval(task, x, bounded)
    entry = {"task": task, "variant": variant, "mean": m, "lo": lo, "hi": hi}
    if van is not None:
        d, dlo, dhi = paired(x, van)
        ref = float(van.mean())
        # vanilla at its floor 0 (passkey: no passkey missed): the ratio is undefined where the variant is too
        ratio = m / ref if ref != 0 else (math.inf if m > 0 else math.nan)
        gap = ref - floor
        diff = x - van
        p = (float(ttest_1samp(diff, 0.0).pvalue) if variant != "vanilla" and diff.size > 1 and diff.std() > 0
             else math.nan)
        entry.update({"vs_vanilla": ratio, "gap_closed": (ref - m) / gap if gap > 0 else math.nan,
                      "diff_lo": dlo, "diff_hi": dhi, "p": p})
    return entry




def depends(cfg: AblationConfig) -> dict[str, str]:
    """What the results depend on besides the config: every task's (``_task_depends``)."""
    out = {}
    for t in cfg.tasks:
        out.update(_task_depends(t))
    return out


EXPERIMENT = Experiment(
    name="ablation",
    # 4: cells whose models did not learn are marked and leave the Holm family; 3: Holm, gap share, matched
    version="4",
    claim="the paper's Q/K/V x position/token ablation (p14-16), and every strategy, on every task",
    config=AblationConfig,
    run=run,
    plot=figures("ssa_theory.experiments.ablation_plots", "heatmap"),
    headline="ablation",
    presets={
        "default": Preset({}, seeds=5, minutes=0.3, about="the run paper_repro.md reports: 147 cells, 46 to 58 "
                          "minutes of one core; it then only collects them"),
        "quick": Preset({"scale": "quick", "variants": ("vanilla", "ssa", "global", "freq", "yarn")}, seeds=2,
                        about="a smoke test in seconds; numbers are not converged", scratch=True),
    },
    depends=depends,
    cells=cells,
)


# --- does the moderate size reorder the variants? ----------------------------------------------------------

# A task whose default preset trains several of the ablation's variants, by name, with the ablation's
# measure: (the default's table, its variant column, the measure from its row; lower is better).
DEFAULT_MEASURES = {
    "dilution": ("strategies", "strategy", lambda row: 1.0 - row["mass_max"]),  # mass off the needle at the longest n
    "specificity": ("strategies", "strategy", lambda row: row["excess_hard"]),  # excess CE in the hard cell
}
TOP = 3


def ranking_against_defaults(root: Path) -> pd.DataFrame:
    """Whether the ablation's moderate sizes reorder the variants its tasks' default presets also train
    (``DEFAULT_MEASURES``), from the exported results under ``root``: Kendall's tau between the two
    orders, and the ``TOP`` best of each. Rows only for tasks exported in both."""
    from scipy.stats import kendalltau  # here: scipy.stats costs every process a second to import

    ablation = Path(root) / "experiments" / "ablation" / "metrics.json"
    if not ablation.is_file():
        return pd.DataFrame()
    cells = json.loads(ablation.read_text())["tasks"]
    rows = []
    for task, (table, column, value) in DEFAULT_MEASURES.items():
        path = Path(root) / "experiments" / task / f"{table}.csv"
        if task not in cells or not path.is_file():
            continue
        default = {r[column]: float(value(r)) for r in pd.read_csv(path).to_dict("records")}
        common = [v for v in cells[task]["variants"] if v in default]
        moderate = {v: cells[task]["variants"][v]["mean"] for v in common}
        by_moderate, by_default = sorted(common, key=moderate.get), sorted(common, key=default.get)
        rows.append({"task": task, "variants": len(common),
                     "kendall_tau": float(kendalltau([moderate[v] for v in common], [default[v] for v in common]).statistic),
                     f"top{TOP}_moderate": ", ".join(by_moderate[:TOP]), f"top{TOP}_default": ", ".join(by_default[:TOP]),
                     f"same_top{TOP}": set(by_moderate[:TOP]) == set(by_default[:TOP])})
    return pd.DataFrame(rows)
