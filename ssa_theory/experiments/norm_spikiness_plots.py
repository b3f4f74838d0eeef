"""Figures of ``norm_spikiness``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import COLORS, band, ci_err, colors, label, save
from ssa_theory.rundir import load_arrays, load_frame, read_json, read_table


def _models(run_dir: Path) -> tuple[dict[str, str], dict[str, str] | None]:
    """The colour of each model label, and the run's label -> variant table (for legends)."""
    variants = read_json(Path(run_dir) / "metrics.json").get("variants")
    return colors(["vanilla", "ssa"], variants), variants


def norm_histogram(run_dir: Path) -> None:
    """The paper's Fig. p4 form: probability of a token having a norm in each range; means dashed.

    Tokens of every seed at the headline weight decay; the closed-form lower bounds per token as
    outlines (vanilla: any vanilla layer within ``accuracy`` nats of each row's floor; SSA: the same
    with the largest query temperature).
    """
    col, variants = _models(run_dir)
    pt = read_table(run_dir, "per_token")
    task = load_arrays(run_dir, "task")
    m = read_json(Path(run_dir) / "metrics.json")
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    hi = max(pt.norm.max(), task["bound_vanilla"].max()) * 1.05
    bins = np.linspace(0, hi, 40)
    for model in ("vanilla", "ssa"):
        x = pt[pt.model == model].norm
        ax.hist(x, bins=bins, weights=np.full(len(x), 1 / len(x)), color=col[model], alpha=0.55,
                label=f"{label(model, variants)} (learned)")
        ax.axvline(x.mean(), color=col[model], ls="--", lw=1.5, label=f"{model} mean {x.mean():.2f}")
    for key, model in (("bound_vanilla", "vanilla"), ("bound_ssa", "ssa")):
        b = task[key]
        ax.hist(b, bins=bins, weights=np.full(len(b), 1 / len(b)), histtype="step", color=col[model], lw=1.2, ls=":",
                label=f"{model}: least norm for rows within {m['accuracy']:g} nats (closed form)")
    ax.set_xlabel("per-token norm ||W^T x_t||  (W = W_q W_k^T / sqrt(d))")
    ax.set_ylabel("probability of a token")
    ax.set_title(f"norm_spikiness: K = {len(task['degrees'])}, weight decay {m['weight_decay']:g}")
    ax.legend(fontsize=7)
    save(fig, run_dir, "norm_histogram")


def norm_vs_spikiness(run_dir: Path) -> None:
    """Per token (first seed): norm against spikiness, coloured by model; the target's spikiness range shaded."""
    col, variants = _models(run_dir)
    pt = read_table(run_dir, "per_token")
    task = load_arrays(run_dir, "task")
    seed = pt.seed.min()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for model in ("vanilla", "ssa"):
        p = pt[(pt.model == model) & (pt.seed == seed)]
        axes[0].scatter(p.norm, p.spikiness, s=8, alpha=0.6, color=col[model], label=label(model, variants))
        axes[1].scatter(p.degree, p.norm, s=8, alpha=0.6, color=col[model], label=label(model, variants))
    t = task["target_spikiness"]
    axes[0].axhspan(t.min(), t.max(), color="#999999", alpha=0.15, label="target P* rows")
    axes[0].set_xlabel("per-token norm ||W^T x_t||")
    axes[0].set_ylabel("spikiness log K - H(attention row)")
    deg = task["degrees"]
    order = np.argsort(deg)
    eps = read_json(Path(run_dir) / "metrics.json")["accuracy"]
    axes[1].plot(deg[order], task["bound_vanilla"][order], ls="--", color=col["vanilla"],
                 label=f"vanilla: least norm for rows within {eps:g} nats")
    axes[1].plot(deg[order], task["bound_ssa"][order], ls="--", color=col["ssa"], label="SSA: the same at tau_max")
    axes[1].set_xlabel("degree of the query token")
    axes[1].set_ylabel("per-token norm")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"per token, seed {seed}")
    save(fig, run_dir, "norm_vs_spikiness")


def training(run_dir: Path) -> None:
    """Mean per-token norm and exact CE against training step at the headline weight decay."""
    col, variants = _models(run_dir)
    m = read_json(Path(run_dir) / "metrics.json")
    c = load_frame(run_dir, "curves")
    c = c[c.weight_decay == m["weight_decay"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    for model in ("vanilla", "ssa"):
        g = c[c.model == model].groupby("step")
        for ax, key in zip(axes, ("mean_norm", "ce")):
            ax.plot(g[key].mean().index, g[key].mean(), color=col[model], label=label(model, variants))
            band(ax, g[key].mean().index, g[key].min(), g[key].max(), col[model], alpha=0.2)
    axes[1].axhline(m["ce_floor"], color=COLORS["theory"], ls="--", lw=1, label="floor: entropy of P*")
    axes[0].set_ylabel("mean per-token norm")
    axes[1].set_ylabel("expected cross-entropy (nats)")
    axes[1].set_ylim(m["ce_floor"] - 0.1, None)
    for ax in axes:
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    fig.suptitle(f"weight decay {m['weight_decay']:g}: mean over seeds, min-max band")
    save(fig, run_dir, "training")


def weight_decay(run_dir: Path) -> None:
    """Final CE against final mean norm, one point per weight decay and model (mean, 95% CI)."""
    col, variants = _models(run_dir)
    sw = read_table(run_dir, "weight_decay_sweep")
    m = read_json(Path(run_dir) / "metrics.json")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    for model in ("vanilla", "ssa"):
        s = sw[sw.model == model].sort_values("weight_decay")
        ax.errorbar(s.mean_norm, s.ce, xerr=ci_err(s, "mean_norm"), yerr=ci_err(s, "ce"), marker="o", capsize=2,
                    color=col[model], label=label(model, variants))
        for _, r in s.iterrows():
            ax.annotate(f"{r.weight_decay:g}", (r.mean_norm, r.ce), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    ax.axhline(m["ce_floor"], color=COLORS["theory"], ls="--", lw=1, label="floor")
    ax.set_xlabel("final mean per-token norm")
    ax.set_ylabel("final expected CE (nats)")
    ax.set_title("weight-decay sweep (labels: weight decay)")
    ax.legend(fontsize=7)
    save(fig, run_dir, "weight_decay")
