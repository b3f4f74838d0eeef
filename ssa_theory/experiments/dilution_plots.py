"""Figures of ``dilution``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory.plotting import COLORS, band, by_strategy, save
from ssa_theory.rundir import load_frame, read_json, read_table


def _by_length(run_dir: Path):
    """The per-length table, the strategies in run order, and one colour each (house colours first)."""
    t = read_table(run_dir, "by_length")
    strategies, col = by_strategy(t)
    return t, strategies, col


def _per_strategy(t, strategies, col, *panels) -> list:
    """One line per strategy of each ``(axis, column)`` of ``panels`` against n; returns (strategy, its
    rows of the per-length table) for what a figure adds per strategy."""
    out = []
    for s in strategies:
        d = t[t.strategy == s]
        for ax, column in panels:
            ax.plot(d.n, d[column], "o-", color=col[s], label=s, ms=3, lw=1.2)
        out.append((s, d))
    return out


def mass_and_accuracy(run_dir: Path) -> None:
    """Attention mass on the needle and accuracy against length, one line per strategy; dashed, each
    strategy's closed-form prediction from its logits at the training length and its temperature law;
    the training range shaded."""
    m = read_json(Path(run_dir) / "metrics.json")
    t, strategies, col = _by_length(run_dir)
    curves = load_frame(run_dir, "theory_curves")
    fig, (ax_m, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for s, d in _per_strategy(t, strategies, col, (ax_m, "mass"), (ax_a, "acc")):
        band(ax_m, d.n, d.mass_lo, d.mass_hi, col[s], alpha=0.12, bounds=(0, 1))
        c = curves[curves.strategy == s]
        ax_m.plot(c.n, c.mass_pred, "--", color=col[s], lw=0.8)
        band(ax_a, d.n, d.acc_lo, d.acc_hi, col[s], bounds=(0, 1))
    for ax in (ax_m, ax_a):
        ax.set_xscale("log")
        ax.axvspan(2, m["train_length"], color="#dddddd", alpha=0.5, lw=0)
        ax.set_xlabel("items n (log scale; shaded: training lengths)")
    ax_m.set_ylabel("attention mass on the needle")
    ax_m.set_title("mass (dashed: closed form, extrapolated from the training length)")
    ax_a.set_ylabel("accuracy (Bayes: 1)" if m.get("bayes_accuracy") == 1.0 else "accuracy")
    ax_a.set_title("retrieval accuracy")
    ax_a.legend(fontsize=7, ncol=2, loc="lower left")
    save(fig, run_dir, "mass_and_accuracy")


def effective_gap(run_dir: Path) -> None:
    """Left: the measured logit gap (the needle's logit minus ``log E[e^z]`` of the distractors' logits,
    averaged over needles) against log n: flat for a strategy that dilutes, rising for one that does
    not. (``logit(mass) + log(n - 1)``, in the table, is the same gap seen through the mean mass; with
    needle logits that differ by class it is not flat even for vanilla.) Right: each strategy's
    effective position coefficient times its gap at the training length, against the threshold 1 at
    and above which the closed form keeps the mass bounded away from 0."""
    t, strategies, col = _by_length(run_dir)
    s_tab = read_table(run_dir, "strategies")
    fig, (ax_g, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    _per_strategy(t, strategies, col, (ax_g, "gap"))
    ax_g.set_xscale("log")
    ax_g.set_xlabel("items n (log scale)")
    ax_g.set_ylabel("logit gap: needle - log mean exp(distractors)")
    ax_g.legend(fontsize=7, ncol=2)
    y = np.arange(len(s_tab))
    ax_c.barh(y, s_tab.c_gap, color=[col[s] for s in s_tab.strategy])
    ax_c.axvline(1.0, color=COLORS["theory"], ls="--", lw=1)
    ax_c.set_yticks(y, s_tab.strategy)
    ax_c.invert_yaxis()
    ax_c.set_xlabel("c x gap  (c: slope of the query's inverse temperature on log n; >= 1: no dilution)")
    save(fig, run_dir, "effective_gap")
