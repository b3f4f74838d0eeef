"""Figures of ``critical``, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import COLORS, band, save
from ssa_theory.rundir import read_json, read_table


def transition(run_dir: Path) -> None:
    """Left: the needle's attention mass against n, one line per gamma (dashed: the closed form at the
    model's own gap). Right: the off-needle exponent against gamma, measured (with its interval) and
    predicted, and where each crosses 0."""
    m = read_json(Path(run_dir) / "metrics.json")
    t, tr = read_table(run_dir, "by_length"), read_table(run_dir, "transition")
    fig, (ax_m, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    cmap = plt.get_cmap("viridis")
    for i, gamma in enumerate(m["gammas"]):
        d = t[t.gamma == gamma]
        c = cmap(i / max(1, len(m["gammas"]) - 1))
        ax_m.plot(d.n, d.mass, "o-", color=c, ms=3, lw=1.2, label=f"gamma = {gamma:g}")
        band(ax_m, d.n, d.mass_lo, d.mass_hi, c, alpha=0.12, bounds=(0, 1))
        ax_m.plot(d.n, d.mass_pred, "--", color=c, lw=0.8)
    ax_m.set_xscale("log")
    ax_m.axvspan(2, m["train_length"], color="#dddddd", alpha=0.5, lw=0)
    ax_m.set_xlabel("items n (log scale; shaded: training lengths)")
    ax_m.set_ylabel("attention mass on the needle")
    ax_m.set_title("mass (dashed: 1 / (1 + (n - 1) n^(-gamma g)))")
    ax_m.legend(fontsize=7, loc="lower left")
    ax_e.plot(tr.gamma, tr.exponent, "o-", color=COLORS.get("ssa", "C0"), label="measured")
    band(ax_e, tr.gamma, tr.exponent_lo, tr.exponent_hi, COLORS.get("ssa", "C0"))
    ax_e.plot(tr.gamma, tr.exponent_pred, "--", color=COLORS["theory"], label="closed form, gap g")
    ax_e.plot(tr.gamma, tr.exponent_pred_spread, ":", color=COLORS["theory"], label="closed form, every class's score")
    ax_e.axhline(0, color="k", lw=0.6)
    for name, ls in (("observed", "-"), ("predicted", "--")):
        x = m["transition"][name]
        if x is not None and np.isfinite(x):
            ax_e.axvline(x, color="grey", ls=ls, lw=0.8)
    ax_e.set_xscale("log")
    ax_e.set_xlabel("gamma (scores times gamma log n)")
    ax_e.set_ylabel(f"slope of log odds against the needle on log n (n >= {min(m['fit_lengths'])})")
    at = lambda name: "none" if m["transition"][name] is None else f"{m['transition'][name]:.3g}"  # noqa: E731  (NaN is saved as null)
    ax_e.set_title(f"transition at gamma: observed {at('observed')}, predicted {at('predicted')}")
    ax_e.legend(fontsize=7)
    save(fig, run_dir, "transition")
