"""Figures of ``text``, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ssa_theory.plotting import COLORS, band, save
from ssa_theory.rundir import read_json, read_table


def _per_arm(run_dir: Path, table: str):
    """metrics.json, then per position arm: (axis, the arm's rows of ``table``, [(strategy, its rows, colour)])."""
    m = read_json(Path(run_dir) / "metrics.json")
    t = read_table(run_dir, table)
    arms = list(m["arms"])
    fig, axes = plt.subplots(1, len(arms), figsize=(5.5 * len(arms), 4.2), squeeze=False, layout="constrained")
    panels = []
    for ax, arm in zip(axes[0], arms):
        d = t[t.arm == arm]
        lines = [(s, d[d.strategy == s], COLORS.get(s, f"C{i}")) for i, s in enumerate(dict.fromkeys(d.strategy))]
        panels.append((ax, arm, lines))
        ax.axvline(m["train_length"], color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
    return m, fig, panels


def by_length(run_dir: Path) -> None:
    """Bits per character against the evaluation length, one panel per position arm, one line per model
    (bands: 95% intervals over seeds); the training length marked, the n-gram floor dashed."""
    m, fig, panels = _per_arm(run_dir, "bits")
    for ax, arm, lines in panels:
        for s, x, c in lines:
            ax.plot(x.length, x.bits, "o-", color=c, ms=3, label=s)
            band(ax, x.length, x.bits_lo, x.bits_hi, c)
        ax.axhline(m["ngram_bits"], color="k", ls="--", lw=0.8, label=f"{m['ngram_order']}-gram floor")
        ax.set_xlabel(f"evaluation window (characters; grey: training length {m['train_length']})")
        ax.set_ylabel("bits per character (test books)")
        ax.set_title(f"{arm}: sliding windows, the same scored characters at every length", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    save(fig, run_dir, "by_length")


def by_position(run_dir: Path) -> None:
    """Bits per character by position in windows of the longest length (log-spaced bins), per arm."""
    m, fig, panels = _per_arm(run_dir, "by_position")
    for ax, arm, lines in panels:
        for s, x, c in lines:
            ax.plot(x.position, x.bits, "-", color=c, lw=1, label=s)
        ax.set_xlabel("position in the window (characters)")
        ax.set_ylabel("bits per character")
        ax.set_title(f"{arm}: loss by position, windows of {max(m['lengths'])}", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    save(fig, run_dir, "by_position")
