"""Figures of ``graph_transition``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np

from ssa_theory.plotting import COLORS, band, ci_err, colors, label, save
from ssa_theory.rundir import load_arrays, load_frame, read_json, read_table
from ssa_theory.skeleton import PLACEBO


def _headline(run_dir: Path) -> tuple[str, list[int]]:
    m = read_json(Path(run_dir) / "metrics.json")
    return m["score"], m["seeds"]


def panels(run_dir: Path) -> None:
    """The paper's four panels: (a) graph, (b) P*, (c) SSA's learned matrix, (d) vanilla's (first seed)."""
    score, seeds = _headline(run_dir)
    g = load_arrays(run_dir, "graph")
    mats = load_arrays(run_dir, "matrices")
    A, P, deg = g["adjacency"], g["P"], g["degrees"]
    ssa, van = mats[f"{score}_ssa"][0], mats[f"{score}_vanilla"][0]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), layout="constrained")
    G = nx.from_numpy_array(A)
    pos = nx.spring_layout(G, seed=0)
    nx.draw_networkx(G, pos, ax=axes[0], node_color=deg, cmap="viridis", node_size=180, font_size=6,
                     font_color="white", edge_color="#999999")
    axes[0].set_title("(a) graph (colour: degree)")
    axes[0].axis("off")
    vmax = P.max()
    for ax, M, title in [
        (axes[1], P, "(b) P*"),
        (axes[2], ssa, f"(c) SSA ({score}), seed {seeds[0]}"),
        (axes[3], van, f"(d) vanilla ({score}), seed {seeds[0]}"),
    ]:
        im = ax.imshow(M, vmin=0, vmax=vmax, cmap="magma")
        if M is not P:
            ce = -(P * np.log(M)).sum(1).mean()
            l1 = np.abs(M - P).sum(1).mean()
            title += f"\nCE {ce:.3f}, L1 {l1:.3f}"
        ax.set_title(title)
        ax.set_xlabel("next token")
        ax.set_xticks(range(0, len(P), 5))
        ax.set_yticks(range(0, len(P), 5))
    axes[1].set_ylabel("current token (sorted by degree)")
    fig.colorbar(im, ax=axes[1:], shrink=0.8, label="probability")
    save(fig, run_dir, "panels")


def error_maps(run_dir: Path) -> None:
    """|learned - P*| for SSA and vanilla (first seed), on one colour scale."""
    score, seeds = _headline(run_dir)
    P = load_arrays(run_dir, "graph")["P"]
    mats = load_arrays(run_dir, "matrices")
    errs = {m: np.abs(mats[f"{score}_{m}"][0] - P) for m in ("ssa", "vanilla")}
    vmax = max(e.max() for e in errs.values())
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4), layout="constrained")
    for ax, (m, e) in zip(axes, errs.items()):
        im = ax.imshow(e, vmin=0, vmax=vmax, cmap="Reds")
        ax.set_title(f"|{m} - P*| ({score}), seed {seeds[0]}\nmean row L1 {e.sum(1).mean():.3f}")
        ax.set_xlabel("next token")
    axes[0].set_ylabel("current token (sorted by degree)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="absolute error")
    save(fig, run_dir, "error_maps")


def ce_curves(run_dir: Path) -> None:
    """Exact CE against training step, mean over seeds with a min-max band; floor and vanilla's best dashed."""
    score, _ = _headline(run_dir)
    variants = read_json(Path(run_dir) / "metrics.json").get("variants")
    curves = load_frame(run_dir, "curves")
    col = colors(dict.fromkeys(curves.model), variants)
    table = read_table(run_dir, "ce_l1").set_index("model")
    floor = table.loc["vanilla", "ce_floor"]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for model in dict.fromkeys(curves.model):  # vanilla, ssa, global, the placebo twin
        c = curves[(curves.score == score) & (curves.model == model)].groupby("step").ce
        twin = model == PLACEBO  # dashed: it lies on vanilla's curve
        ax.plot(c.mean().index, c.mean(), color=col[model], ls="--" if twin else "-",
                label="placebo (vanilla twin)" if twin else label(model, variants))
        band(ax, c.mean().index, c.min(), c.max(), col[model], alpha=0.2)
    ax.axhline(floor, color=COLORS["theory"], ls="--", lw=1, label="floor: entropy of P*")
    best = table.loc["vanilla", "ce_theory"]
    if np.isfinite(best):
        ax.axhline(best, color=col["vanilla"], ls=":", lw=1, label="best vanilla under the score bound")
    top = curves[curves.score == score].groupby("step").ce.mean().iloc[min(2, curves.step.nunique() - 1)]
    ax.set_ylim(floor - 0.05, max(top, best if np.isfinite(best) else floor) + 0.1)
    ax.set_xlabel("training step")
    ax.set_ylabel("expected cross-entropy (nats)")
    ax.set_title(f"graph_transition ({score}): CE against step")
    ax.legend(fontsize=7)
    save(fig, run_dir, "ce_curves")


def temperature_by_degree(run_dir: Path) -> None:
    """Learned SSA temperature per node against degree, one panel per score geometry; closed form dashed."""
    per_node = read_table(run_dir, "per_node")
    by_geo = read_table(run_dir, "temperature_by_geometry")
    summary = read_table(run_dir, "geometry_summary").set_index("score")
    scores = list(dict.fromkeys(by_geo.score))
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.2), squeeze=False, sharey=False)
    rng = np.random.default_rng(0)  # jitter only
    variants = read_json(Path(run_dir) / "metrics.json").get("variants")
    ssa_color = colors(["ssa"], variants)["ssa"]
    for ax, score in zip(axes[0], scores):
        pn = per_node[per_node.score == score]
        ax.scatter(pn.degree + rng.uniform(-0.12, 0.12, len(pn)), pn["T"], s=6, alpha=0.35, color=ssa_color, lw=0,
                   label="nodes x seeds")
        bg = by_geo[by_geo.score == score]
        ax.errorbar(bg.degree, bg["T"], yerr=ci_err(bg, "T"), color=ssa_color, marker="o", ms=4, capsize=3,
                    label="mean, 95% CI")
        if bg.T_pred.notna().all():
            ax.plot(bg.degree, bg.T_pred, ls="--", color=COLORS["theory"], label="closed form")
        ax.set_title(f"{score}: {summary.loc[score, 'budget']}\n{summary.loc[score, 'trend']}", fontsize=8)
        ax.set_xlabel("degree (number of neighbours)")
        ax.set_xticks(sorted(bg.degree))
    axes[0][0].set_ylabel(f"learned temperature T = 1/tau of {label('ssa', variants)}")
    axes[0][0].legend(fontsize=7)
    save(fig, run_dir, "temperature_by_degree")
