"""Figures of ``specificity``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import COLORS, band, colors, save
from ssa_theory.rundir import load_frame, read_table
from ssa_theory.skeleton import PLACEBO


def _x(rho):
    """The closed forms' growth variable ``1 / ||x_a - x_b|| = 1 / sqrt(2 (1 - rho))``."""
    return 1.0 / np.sqrt(2.0 * (1.0 - np.asarray(rho, dtype=float)))


def excess_and_norm(run_dir: Path) -> None:
    """Top: excess CE against rho, one line per strategy, a column per contrast (95% CI bands).
    Bottom: the learned pair norm ``||M_p||`` (solid) and, dashed in the same colour, the least norm
    vanilla needs for the accuracy that strategy reached (``theory.specificity_frontier``): a strategy
    below its dashed line reached an accuracy vanilla cannot reach at that norm. Dotted black: the
    least norms that reproduce the targets exactly, vanilla and a per-query temperature in (0, 2]."""
    t = read_table(run_dir, "cells")
    strategies = [s for s in dict.fromkeys(t.strategy) if s != PLACEBO]  # the twin lies on vanilla: in the tables only
    col = colors(strategies)
    contrasts = sorted(t.contrast.unique())
    fig, axes = plt.subplots(2, len(contrasts), figsize=(3.8 * len(contrasts), 6.6), layout="constrained",
                             squeeze=False, sharex=True)
    for j, c in enumerate(contrasts):
        ax_e, ax_n = axes[0, j], axes[1, j]
        for s in strategies:
            d = t[(t.contrast == c) & (t.strategy == s)].sort_values("rho")
            x = _x(d.rho)
            free = s == "global_free"  # unbounded: drawn apart, thin, without its (off-scale) dashed line
            ax_e.plot(x, d.excess, "o-", color=col[s], label=s + (" (unbounded)" if free else ""), ms=3,
                      lw=0.8 if free else 1.2)
            band(ax_e, x, d.excess_lo, d.excess_hi, col[s], alpha=0.12, bounds=(0, None))
            ax_n.plot(x, d.norm, "o-", color=col[s], ms=3, lw=0.8 if free else 1.2)
            if not free:
                ax_n.plot(x, d.norm_vanilla_min, "--", color=col[s], lw=0.8)
        d = t[(t.contrast == c) & (t.strategy == strategies[0])].sort_values("rho")
        ax_n.plot(_x(d.rho), d.norm_exact_vanilla, ":", color=COLORS["theory"], lw=1.2, label="exact: vanilla")
        ax_n.plot(_x(d.rho), d.norm_exact_token, "-.", color=COLORS["theory"], lw=0.9, label="exact: token tau <= 2")
        ax_e.set_title(f"contrast beta_a / beta_b = {c:g}")
        ax_e.set_yscale("log")
        ax_n.set_yscale("log")
        ax_n.set_xscale("log")
        ax_n.set_xlabel("rho  (axis: 1 / sqrt(2 (1 - rho)), log)")
        ticks = sorted(t.rho.unique())
        ax_n.set_xticks(_x(ticks), [f"{r:g}" for r in ticks])
        ax_n.minorticks_off()
    axes[0, 0].set_ylabel("excess CE per query (KL)")
    axes[1, 0].set_ylabel("pair norm ||M_p||_F")
    fig.suptitle("solid: learned; dashed: the least norm vanilla needs for that strategy's accuracy", fontsize=9)
    axes[0, -1].legend(fontsize=7)
    axes[1, -1].legend(fontsize=7)
    save(fig, run_dir, "excess_and_norm")


def frontier(run_dir: Path) -> None:
    """At the largest contrast, one panel per rho: every member's (excess, mean pair norm), one colour per
    strategy, beside vanilla's least norm at each excess (solid black; ``theory.specificity_frontier``,
    averaged over the first seed's patterns) and that of one global temperature in (0, 2] (half of it,
    grey). Vanilla's points must lie on or above the black curve; a per-query temperature may go below."""
    per_seed = load_frame(run_dir, "per_seed")
    curves = load_frame(run_dir, "frontier_curves")
    c = curves.contrast.iloc[0]
    per_seed = per_seed[per_seed.contrast == c]
    rhos = sorted(per_seed.rho.unique())
    strategies = [s for s in dict.fromkeys(per_seed.strategy) if s != PLACEBO]
    col = colors(strategies)
    n = len(rhos)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), layout="constrained", squeeze=False)
    for i, rho in enumerate(rhos):
        ax = axes[i // cols, i % cols]
        cu = curves[curves.rho == rho]
        ax.plot(cu.excess, cu.norm_vanilla_min, "-", color=COLORS["theory"], lw=1.2, label="vanilla least norm")
        ax.plot(cu.excess, cu.norm_vanilla_min / 2.0, "-", color="#999999", lw=1.0, label="global tau <= 2")
        for s in strategies:
            d = per_seed[(per_seed.strategy == s) & (per_seed.rho == rho)]
            ax.plot(d.excess, d.norm, "o", color=col[s], ms=4, alpha=0.8, label=s)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"rho = {rho:g}, contrast {c:g}")
        ax.set_xlabel("excess CE per query")
        ax.set_ylabel("pair norm ||M_p||_F")
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].axis("off")
    axes[0, 0].legend(fontsize=7)
    save(fig, run_dir, "frontier")
