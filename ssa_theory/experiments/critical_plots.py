"""Figures of ``critical``, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import COLORS, band, save
from ssa_theory.rundir import read_json, read_table


def transition(run_dir: Path) -> None:
    """Left: the needle's attention mass against n at one cell (the middle bound and rho), one line per
    gamma (dashed: the closed form at the cell's predicted gap). Right: the observed transition per cell
    (mean over seeds, 95% interval) against the one predicted from the geometry before training; the
    diagonal is agreement, the grey band the rule's tolerance."""
    m = read_json(Path(run_dir) / "metrics.json")
    t, tr = read_table(run_dir, "by_length"), read_table(run_dir, "transition")
    fig, (ax_m, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    b, r = m["bounds"][len(m["bounds"]) // 2], m["rhos"][len(m["rhos"]) // 2]
    cmap = plt.get_cmap("viridis")
    cell = t[(t.bound == b) & (t.rho == r)]
    for i, gamma in enumerate(m["gammas"]):
        d = cell[cell.gamma == gamma]
        c = cmap(i / max(1, len(m["gammas"]) - 1))
        ax_m.plot(d.n, d.mass, "o-", color=c, ms=2, lw=1.0, label=f"gamma = {gamma:g}")
        band(ax_m, d.n, d.mass_lo, d.mass_hi, c, alpha=0.12, bounds=(0, 1))
        ax_m.plot(d.n, d.mass_pred, "--", color=c, lw=0.6)
    ax_m.set_xscale("log")
    ax_m.axvspan(2, m["train_length"], color="#dddddd", alpha=0.5, lw=0)
    ax_m.set_xlabel("items n (log scale; shaded: training lengths)")
    ax_m.set_ylabel("attention mass on the needle")
    ax_m.set_title(f"B = {b:g}, rho = {r:g} (dashed: 1 / (1 + (n - 1) n^(-gamma B (1 - rho))))", fontsize=9)
    ax_m.legend(fontsize=6, loc="lower left", ncol=2)
    lim = np.array([tr.gamma_c_pred.min() / 1.5, tr.gamma_c_pred.max() * 1.5])
    ax_e.plot(lim, lim, color="k", lw=0.6)
    ax_e.fill_between(lim, lim / 1.1, lim * 1.1, color="#dddddd", lw=0)
    for j, rho in enumerate(m["rhos"]):
        d = tr[tr.rho == rho]
        err = np.array([d.gamma_c_obs - d.gamma_c_obs_lo, d.gamma_c_obs_hi - d.gamma_c_obs]).clip(0)
        ax_e.errorbar(d.gamma_c_pred, d.gamma_c_obs, yerr=np.nan_to_num(err), fmt="o", ms=4,
                      color=COLORS.get(["vanilla", "global", "ssa"][j % 3], f"C{j}"), label=f"rho = {rho:g}")
        for _, row in d.iterrows():
            ax_e.annotate(f"B={row.bound:g}", (row.gamma_c_pred, row.gamma_c_obs), fontsize=6,
                          xytext=(3, -8), textcoords="offset points")
    ax_e.set_xscale("log")
    ax_e.set_yscale("log")
    ax_e.set_xlabel("predicted critical gamma, 1 / (B (1 - rho)) (fixed before training)")
    ax_e.set_ylabel("observed: where the off-needle exponent crosses 0")
    ax_e.set_title("observed against predicted (grey: the rule's 10% tolerance)", fontsize=9)
    ax_e.legend(fontsize=7)
    save(fig, run_dir, "transition")
