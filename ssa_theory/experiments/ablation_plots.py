"""The figure of ``ablation``, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import save
from ssa_theory.rundir import read_table

FADED = 0.3  # the colour scale of a cell that does not differ from vanilla


def heatmap(run_dir: Path) -> None:
    """Rows are variants, columns tasks, as in the paper's ablation tables. Each cell prints the task's
    measure (relative to its floor; lower is better in every column) and is coloured by the share of
    vanilla's gap to the floor it closes (``gap_closed``: 1 at the floor, 0 as vanilla, below 0 worse;
    clipped to [-1, 1]): blue better, red worse. Bold and in full colour: differs from vanilla by a
    paired t-test at family-wise level 0.05, Holm-corrected over every cell of the table; the other
    cells are drawn faded (``FADED`` of their colour). A dagger marks a cell whose models (or vanilla's)
    did not all learn the task at its training length: it is left out of the tests."""
    cells = read_table(run_dir, "cells")
    measures = read_table(run_dir, "measures")
    tasks = list(measures.task)
    variants = list(dict.fromkeys(cells.variant))
    has_ref = "gap_closed" in cells.columns
    val = cells.pivot(index="variant", columns="task", values="mean").loc[variants, tasks].to_numpy()
    share = (cells.pivot(index="variant", columns="task", values="gap_closed").loc[variants, tasks].to_numpy()
             if has_ref else np.zeros_like(val))
    differs = (cells.pivot(index="variant", columns="task",
                           values="differs").loc[variants, tasks].to_numpy().astype(bool)
               if has_ref else np.zeros_like(val, dtype=bool))
    unlearned = (cells.pivot(index="variant", columns="task", values="unlearned").loc[variants, tasks]
                 .fillna(False).to_numpy().astype(bool)
                 if "unlearned" in cells.columns else np.zeros_like(val, dtype=bool))
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 2.2, 0.32 * len(variants) + 1.6), layout="constrained")
    # a cell that does not differ from vanilla after the correction is drawn faded: its colour is noise
    shade = np.clip(np.nan_to_num(share, nan=0.0), -1, 1) * np.where(differs, 1.0, FADED)
    im = ax.imshow(shade, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(variants)):
        for j in range(len(tasks)):
            dark = abs(shade[i, j]) > 0.55  # white text on the saturated cells
            ax.text(j, i, f"{val[i, j]:.3g}" + (" \u2020" if unlearned[i, j] else ""), ha="center", va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                    fontweight="bold" if differs[i, j] else "normal")
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_yticks(range(len(variants)), variants)
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.6, label="share of vanilla's gap to the floor closed, clipped to [-1, 1]")
    ax.set_title("each task's measure relative to its floor (lower is better); bold, full colour: differs from vanilla\n"
                 "(paired t-test, Holm-corrected over every cell, family-wise level 0.05); faded: does not; "
                 "\u2020: a model did not learn the task (not tested)")
    save(fig, run_dir, "ablation")
