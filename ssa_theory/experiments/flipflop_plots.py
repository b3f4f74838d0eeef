"""Figures of ``flipflop``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import colors, save, training_curves
from ssa_theory.rundir import load_frame, read_json, read_table


def glitches(run_dir: Path) -> None:
    """Glitch rate per test set and strategy (log scale; mean over seeds, bootstrap 95% interval; the
    per-seed values as dots)."""
    t = read_table(run_dir, "glitches")
    per_seed = read_table(run_dir, "per_seed")
    tests = list(read_json(Path(run_dir) / "metrics.json")["tests"])
    strategies = list(t.strategy)
    col = colors(strategies)
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    width = 0.8 / len(strategies)
    floor = 1e-4  # a zero glitch rate is drawn at this floor of the log axis
    for k, s in enumerate(strategies):
        r = t[t.strategy == s].iloc[0]
        x = np.arange(len(tests)) + (k - (len(strategies) - 1) / 2) * width
        m = np.array([max(r[n], floor) for n in tests])
        lo = np.array([max(r[f"{n}_lo"], floor) if np.isfinite(r[f"{n}_lo"]) else m[i] for i, n in enumerate(tests)])
        hi = np.array([max(r[f"{n}_hi"], floor) if np.isfinite(r[f"{n}_hi"]) else m[i] for i, n in enumerate(tests)])
        ax.errorbar(x, m, yerr=[m - lo, hi - m], fmt="o", color=col[s], ms=4, capsize=2, label=s)
        ps = per_seed[per_seed.strategy == s]
        for i, n in enumerate(tests):
            ax.plot(np.full(len(ps), x[i]), np.maximum(ps[n], floor), ".", color=col[s], alpha=0.35, ms=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(tests)), tests, fontsize=7)
    ax.set_ylabel(f"glitch rate (read errors; 0 drawn at {floor:g})")
    ax.legend(fontsize=7, ncol=4)
    save(fig, run_dir, "glitches")


def curves(run_dir: Path) -> None:
    """Monitor loss and glitch rate against training step (mean over seeds)."""
    training_curves(run_dir, load_frame(run_dir, "curves"),
                    [("loss", "read-bit cross-entropy (monitor set)", True, None),
                                                             ("glitch", "glitch rate (monitor set)", True, 1e-4)])
