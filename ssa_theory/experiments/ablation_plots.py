"""The figure of ``ablation``, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import save
from ssa_theory.rundir import read_table


def heatmap(run_dir: Path) -> None:
    """Rows are variants, columns tasks, as in the paper's ablation tables. Each cell prints the task's
    measure (relative to its floor; lower is better in every column) and is coloured by log10 of its
    ratio to vanilla attention's: blue better, red worse. Bold: the paired 95% CI of the difference
    from vanilla excludes 0."""
    cells = read_table(run_dir, "cells")
    measures = read_table(run_dir, "measures")
    tasks = list(measures.task)
    variants = list(dict.fromkeys(cells.variant))
    has_ref = "vs_vanilla" in cells.columns
    val = cells.pivot(index="variant", columns="task", values="mean").loc[variants, tasks].to_numpy()
    ratio = (cells.pivot(index="variant", columns="task", values="vs_vanilla").loc[variants, tasks].to_numpy()
             if has_ref else np.ones_like(val))
    differs = (cells.pivot(index="variant", columns="task", values="differs").loc[variants, tasks].to_numpy().astype(bool)
               if has_ref else np.zeros_like(val, dtype=bool))
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 2.2, 0.32 * len(variants) + 1.6), layout="constrained")
    logr = np.log10(np.clip(ratio, 1e-3, 1e3))
    im = ax.imshow(np.clip(logr, -1, 1), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(variants)):
        for j in range(len(tasks)):
            dark = abs(logr[i, j]) > 0.55  # white text on the saturated cells
            ax.text(j, i, f"{val[i, j]:.3g}", ha="center", va="center", fontsize=7, color="white" if dark else "black",
                    fontweight="bold" if differs[i, j] else "normal")
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_yticks(range(len(variants)), variants)
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.6, label="log10(value / vanilla's), clipped to [-1, 1]")
    ax.set_title("each task's measure relative to its floor (lower is better); bold: differs from vanilla (paired 95% CI)")
    save(fig, run_dir, "ablation")
