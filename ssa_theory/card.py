"""``card STRATEGY``: one strategy's report card, as a row of the ablation.

The strategy (a built-in variant or strategy, a dotted path ``module:NAME``, or an entry point) is
trained on every task of the ablation, through the ablation's own cells (``ablation.CELL``: one run
directory per variant and task, so a finished cell is reused), beside three references: vanilla
attention, the range-matched ``global`` scale and full ``ssa``. The card says, per task, the
strategy's measure beside the references', each with its 95% CI; whether it differs from vanilla and
from the global temperature (a paired t-test per task, Holm's correction over the card's tasks, at
family-wise 5%; none below ``MIN_SEEDS`` seeds, where the card says it cannot test); the share of
vanilla's gap to the task's floor it closes (the floor being the task's closed form where it has
one: the Bayes risk, H(P*), the least norm); and at the top, the conformance kit's result, the
parameters it adds to a GPT-2-small-shaped layer, its forward-plus-backward time against the fused
SDPA kernel, and the temperature it learned on ``dilution``.

References come from the committed ablation (``experiments/ablation/metrics.json``) when its core
version, scale, tasks and seeds are the card's; otherwise they are trained like the strategy.
``--quick`` trains everything at the ablation's quick size.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

REFERENCES = ("vanilla", "global", "ssa")
ALPHA = 0.05
MIN_SEEDS = 3  # below this many seeds a paired test has no meaning here: the card says "cannot be tested"


def card_name(strategy: str) -> str:
    """A folder name for the strategy: a dotted path ``pkg.mod:NAME`` becomes ``pkg.mod-NAME``."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", strategy)


@dataclass
class Plan:
    strategy: str
    scale: str  # the ablation's "moderate" or "quick"
    seeds: list[int]
    tasks: list[str]


def committed_references(root: Path, plan: Plan, learned: dict | None = None) -> dict[tuple[str, str], np.ndarray]:
    """Per-seed values of the references (and of the strategy, if the ablation has it) from the
    committed ablation, when it was made by this core at this scale, on these tasks and seeds;
    otherwise nothing. ``learned`` (when given) receives those cells' ``"k/S"`` seeds that learned
    their task, where the task's hook says."""
    from ssa_theory import core
    from ssa_theory.rundir import read_json

    folder = Path(root) / "experiments" / "ablation"
    try:
        config, metrics = read_json(folder / "config.json"), read_json(folder / "metrics.json")
    except (OSError, ValueError):
        return {}
    if (config.get("core") != core.VERSION or metrics.get("scale") != plan.scale or metrics.get("seeds") != plan.seeds
            or any(t not in metrics.get("tasks", {}) for t in plan.tasks)):
        return {}
    out = {}
    for t in plan.tasks:
        for v, entry in metrics["tasks"][t]["variants"].items():
            if v in (*REFERENCES, plan.strategy):
                out[(t, v)] = np.asarray([np.nan if x is None else x for x in entry["per_seed"]], dtype=float)
                if learned is not None and "learned" in entry:
                    learned[(t, v)] = entry["learned"]
    return out


def train_cells(plan: Plan, variants: list[str], *, out: Path, device, jobs: int, log: Callable[[str], None],
                skip: dict, learned: dict | None = None, force: bool = False) -> dict[tuple[str, str], np.ndarray]:
    """The cells (task, variant) not in ``skip``, trained or reused under ``out`` (``jobs`` workers):
    per-seed values; ``learned`` (when given) receives each cell's ``"k/S"`` seeds that learned its
    task, where the task's hook says."""
    from ssa_theory.cells import execute_all
    from ssa_theory.experiments.ablation import CELL_REF, cell_rows, learned_count

    todo = [(t, v) for t in plan.tasks for v in variants if (t, v) not in skip]
    paths = execute_all([(CELL_REF, {"task": t, "variant": v, "scale": plan.scale}) for t, v in todo],
                        [f"{v} on {t}" for t, v in todo], seeds=plan.seeds, device=device, out=out,
                        preset="default" if plan.scale == "moderate" else "quick", jobs=jobs, log=log, force=force)
    out_values = {}
    for key, path in zip(todo, paths):
        rows = cell_rows(path)
        out_values[key] = np.asarray([row["value"] for row in rows], dtype=float)
        count = learned_count(pd.DataFrame(rows), *key) if learned is not None and rows else None
        if count is not None:
            learned[key] = "{}/{}".format(*count)
    return out_values


def task_rows(plan: Plan, values: dict[tuple[str, str], np.ndarray], sources: dict[tuple[str, str], str],
              learned: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """One row per task: the strategy's measure and the references', each with its 95% CI, the paired
    comparison with vanilla (Holm over the card's tasks), and the share of vanilla's gap closed. Where
    ``learned`` says the strategy's or vanilla's models did not all learn a task (``"k/S"``, k < S),
    that task is marked (``unlearned``) and left out of the test, as in the ablation."""
    from ssa_theory import registry
    from ssa_theory.claims import paired
    from ssa_theory.experiments.ablation import holm
    from ssa_theory.stats import interval
    from scipy import stats

    rows = []
    for t in plan.tasks:
        spec = registry.get(t).ablation
        row = {"task": t, "measure": spec.measure, "floor": spec.floor, "floor_value": spec.floor_value}
        for v in dict.fromkeys((plan.strategy, *REFERENCES)):
            m, lo, hi = interval(t, values[(t, v)], spec.bounded)
            row.update({v: m, f"{v}_lo": lo, f"{v}_hi": hi})
        x, van = values[(t, plan.strategy)], values[(t, "vanilla")]
        d, dlo, dhi = paired(x, van, bounded=spec.bounded)
        counts = [(learned or {}).get((t, v), "") for v in (plan.strategy, "vanilla")]
        unlearned = any(c and int(c.split("/")[0]) < int(c.split("/")[1]) for c in counts)

        def p_value(ref: str) -> float:  # the paired t-test against a reference, where it can be made
            diff = x - values[(t, ref)]
            if plan.strategy == ref or diff.size < MIN_SEEDS or not diff.std() > 0 or unlearned:
                return math.nan
            return float(stats.ttest_1samp(diff, 0.0).pvalue)
        row.update({"diff": d, "diff_lo": dlo, "diff_hi": dhi, "learned": counts[0], "unlearned": unlearned,
                    "seeds": int(x.size), "p": p_value("vanilla"), "p_global": p_value("global"),
                    "diff_global": float(np.mean(x - values[(t, "global")]))})
        gap = float(van.mean()) - spec.floor_value
        row["gap_closed"] = (float(van.mean()) - float(x.mean())) / gap if gap > 0 else math.nan
        row["references_from"] = sources.get((t, "vanilla"), "trained")
        rows.append(row)
    df = pd.DataFrame(rows)
    df["p_holm"] = holm(df.p.to_numpy())
    df["differs"] = df.p_holm < ALPHA
    df["p_holm_global"] = holm(df.p_global.to_numpy())
    df["differs_global"] = df.p_holm_global < ALPHA
    return df


def significance(r: dict, s: str, ref: str) -> str:
    """A card row's mark against ``ref`` (vanilla or global): whether the strategy differs, and which way
    (lower is better on every task), or why it could not be tested."""
    key = "" if ref == "vanilla" else "_global"
    if s == ref:
        return "—"
    if r["seeds"] < MIN_SEEDS:
        return f"cannot be tested at {r['seeds']} seed{'s' if r['seeds'] != 1 else ''} (needs {MIN_SEEDS})"
    if r["unlearned"]:
        return "not tested: a model did not learn the task"
    if r["differs" + key]:
        return "yes: lower (better)" if r["diff" + key] < 0 else "yes: higher (worse)"
    if not np.isfinite(r["p" + key]):  # the per-seed differences do not vary: the same value on every seed
        return "no (the same on every seed)"
    return f"no (p_holm {_fmt(r['p_holm' + key])})"


def header(variant, *, fast: bool, no_check: bool) -> dict:
    """The card's top: conformance, parameters in a GPT-2-small layer, speed against SDPA, for a
    resolved ``Variant``."""
    from ssa_theory import bench
    from ssa_theory.nn import parameter_counts
    from ssa_theory.testing.conformance import check_strategy

    strategy = variant.name
    placed = list({s.name: s for _, s, _ in variant.placements()}.values())  # SSA's terms sit on several sides
    reports = [check_strategy(s if s.origin == "built-in" else (strategy if ":" in strategy else s.name)) for s in placed]
    conformance = [str(r) for r in reports] or ["vanilla attention: no strategy to check"]
    counts = parameter_counts([variant])[0]
    size = dict(batch=2, length=256, repeats=2) if fast else dict(batch=8, length=1024, repeats=3)
    timing = bench.module(variants=(variant,), heads=4, d_head=64, **size).iloc[0]
    return {"conformance": conformance, "conforms": all(r.ok for r in reports), "no_check": no_check,
            "new_parameters": int(counts["new_parameters"]), "share_percent": float(counts["share_percent"]),
            "ms": float(timing["ms_module"]), "ms_sdpa": float(timing["ms_nanogpt"]), "speed_ratio": float(timing["ratio"]),
            "speed_shape": f"batch {size['batch']}, 4 heads, length {size['length']}, head width 64, float32, forward "
                           "plus backward, median of interleaved rounds"}


def learned_temperature(strategy, scale: str, seeds: list[int], device) -> pd.DataFrame:
    """The query inverse temperature the strategy learns on ``dilution`` (at the ablation's size):
    per seed, at the longest training length and at 256 and 4096 items."""
    from ssa_theory import registry
    from ssa_theory.experiments import dilution as dl
    from ssa_theory.experiments.ablation import _task_config
    from ssa_theory.rundir import RunContext
    from ssa_theory.seeding import Members
    from ssa_theory.skeleton import ModelSpec

    cfg = _task_config(registry.get("dilution"), scale)
    net = dl._fit(ModelSpec.of(strategy), cfg, Members.of(seeds), RunContext(Path("."), seeds, device, quiet=True))
    rows = []
    for n in (cfg.n_max, 256, 4096):
        tau = net.query_temperature(n).cpu().numpy()
        rows.append({"n": n, "tau_q_mean": float(tau.mean()), "tau_q_min": float(tau.min()),
                     "tau_q_max": float(tau.max())})
    return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.4g}"


def write_card(folder: Path, plan: Plan, top: dict, tasks: pd.DataFrame, temps: pd.DataFrame) -> Path:
    """``card.md``, ``card.csv`` and ``card.png`` in ``folder``; returns card.md."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks.to_csv(folder / "card.csv", index=False)
    (folder / "card.md").write_text("\n".join(card_lines(plan, top, tasks, temps)))
    draw_card(folder / "card.png", plan.strategy, tasks)
    return folder / "card.md"


def card_lines(plan: Plan, top: dict, tasks: pd.DataFrame, temps: pd.DataFrame) -> list[str]:
    """The lines of card.md: the header (``top``), the learned temperature and the per-task table."""
    s = plan.strategy
    lines = [f"# Report card: `{s}`", "",
             f"Trained as a row of the ablation ({plan.scale} size, seeds {plan.seeds[0]}..{plan.seeds[-1]}) on "
             f"{len(plan.tasks)} tasks, beside vanilla, the range-matched `global` and full `ssa`. Lower is better "
             "on every task; each measure is relative to the task's floor. Made by `python -m ssa_theory card "
             f"{s}{' --quick' if plan.scale == 'quick' else ''}`.", "",
             "## At a glance", ""]
    lines.append("- **Conformance kit:** " + ("passes" if top["conforms"] else "FAILS")
                 + (" (run with --no-check)" if top["no_check"] and not top["conforms"] else ""))
    lines += [f"  - `{line.strip()}`" for block in top["conformance"] for line in block.splitlines()]
    lines.append(f"- **New parameters** in a GPT-2-small-shaped layer (D 768, 12 heads): {top['new_parameters']} "
                 f"({top['share_percent']:.3g}% of the layer's).")
    lines.append(f"- **Speed:** forward plus backward {top['ms']:.1f} ms against {top['ms_sdpa']:.1f} ms for nanoGPT's "
                 f"attention on the fused SDPA kernel, ratio {top['speed_ratio']:.3f} ({top['speed_shape']}; one "
                 "measurement on this machine, which is shared and noisy).")
    t = temps
    lines.append("- **Learned query inverse temperature** on `dilution` (mean over seeds [min, max]): "
                 + "; ".join(f"n = {int(r.n)}: {r.tau_q_mean:.4g} [{r.tau_q_min:.4g}, {r.tau_q_max:.4g}]" for r in t.itertuples()))
    lines += ["", "## Per task", "",
              f"| task | {s} | vanilla | global | ssa | differs from vanilla (Holm) | differs from global (Holm) "
              "| gap closed | floor |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in tasks.to_dict("records"):
        cell = lambda v: f"{_fmt(r[v])} [{_fmt(r[v + '_lo'])}, {_fmt(r[v + '_hi'])}]"  # noqa: E731
        lines.append(f"| {r['task']} | {cell(s)} | {cell('vanilla')} | {cell('global')} | {cell('ssa')} | "
                     f"{significance(r, s, 'vanilla')} | {significance(r, s, 'global')} | "
                     f"{_fmt(r['gap_closed'])} | {r['floor']} |")
    lines += ["", "How to read it: a cell is the task's measure (what each task's row of `experiments/ablation` "
              "means: excess over the floor, a ratio to it, or a miss rate), its 95% interval over seeds in brackets "
              "(a bootstrap inside [0, 1] for fractions). *differs* is the paired t-test of the strategy against "
              "vanilla (and against the range-matched global temperature) on the same seeds, Holm-corrected over "
              f"this card's tasks at 5%, and not made below {MIN_SEEDS} seeds; *gap closed* is the share of "
              "vanilla's distance to the floor that the strategy removes (1: at the floor; 0: as vanilla; negative: "
              "worse). The floor is the task's best value, a closed form where the task has one.", "",
              f"References: {', '.join(sorted(set(tasks.references_from)))}.", "", "![card](card.png)", ""]
    return lines


def draw_card(path: Path, s: str, tasks: pd.DataFrame) -> None:
    """card.png: each task's measure for the strategy and the references, with their 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssa_theory.plotting import colors

    col = colors([s, *REFERENCES])
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.0 * len(tasks), 2.8), layout="constrained", squeeze=False)
    for ax, r in zip(axes[0], tasks.to_dict("records")):
        names = list(dict.fromkeys((s, *REFERENCES)))
        for i, v in enumerate(names):
            m, lo, hi = r[v], r[v + "_lo"], r[v + "_hi"]
            err = [[max(m - lo, 0)], [max(hi - m, 0)]] if np.isfinite(lo) and np.isfinite(hi) else None
            ax.errorbar([i], [m], yerr=err, fmt="o", color=col[v], capsize=2)
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_title(r["task"], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{s}: each task's measure (lower is better), 95% CI", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_card(variant, *, quick: bool, seeds: list[int], out: Path, device, jobs: int, no_check: bool,
              root: Path = Path("."), tasks: list[str] | None = None, force: bool = False,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> Path:
    """Everything above for ``variant`` (a name or a resolved ``Variant``), on ``tasks`` (default: every
    task of the ablation); returns the card's folder (``OUT/cards/NAME``)."""
    from ssa_theory import registry
    from ssa_theory.variants import get_variant

    variant = get_variant(variant)  # a Variant passes through
    strategy = variant.name

    plan = Plan(strategy, "quick" if quick else "moderate", seeds, list(tasks or registry.with_ablation()))
    log(f"card {strategy}: conformance, parameters and speed")
    top = header(variant, fast=quick, no_check=no_check)
    learned: dict[tuple[str, str], str] = {}
    committed = {} if quick or force else committed_references(root, plan, learned)
    sources = {k: "the committed ablation (experiments/ablation)" for k in committed}
    variants = list(dict.fromkeys((strategy, *REFERENCES)))
    log(f"card {strategy}: {len(plan.tasks) * len(variants) - len(committed)} cells to train or reuse "
        f"({len(committed)} read from the committed ablation)")
    values = {**committed, **train_cells(plan, variants, out=out, device=device, jobs=jobs, log=log, skip=committed,
                                         learned=learned, force=force)}
    tasks = task_rows(plan, values, sources, learned)
    log(f"card {strategy}: the learned temperature on dilution")
    temps = learned_temperature(variant, plan.scale, seeds, device)
    folder = Path(out) / "cards" / card_name(strategy)
    write_card(folder, plan, top, tasks, temps)
    (folder / "card.json").write_text(json.dumps({"strategy": strategy, "scale": plan.scale, "seeds": seeds,
                                                  **{k: v for k, v in top.items()}}, indent=1, default=str))
    return folder
