"""Figures of ``passkey``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ssa_theory.plotting import band, by_strategy, save, training_curves
from ssa_theory.rundir import load_frame, read_json, read_table


def haystack(run_dir: Path) -> None:
    """The needle-in-a-haystack map per strategy: exact match (mean over seeds) by length and depth,
    for the longest passkey."""
    grid = load_frame(run_dir, "grid")
    d = grid.digits.max()
    g = grid[grid.digits == d]
    strategies = list(dict.fromkeys(g.strategy))
    cols = min(5, len(strategies))
    rows = -(-len(strategies) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(strategies):]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, strategies):
        p = g[g.strategy == s].groupby(["depth", "n"]).acc.mean().unstack("n")
        im = ax.imshow(p.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(p.shape[1]), [str(n) for n in p.columns], fontsize=6)
        ax.set_yticks(range(p.shape[0]), [f"{x:g}" for x in p.index], fontsize=6)
        ax.set_title(s, fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("needle depth")
    for ax in axes[-1]:
        ax.set_xlabel("length n")
    fig.colorbar(im, ax=axes, shrink=0.6, label=f"exact match ({d} digits)")
    save(fig, run_dir, "haystack")


def accuracy_and_mass(run_dir: Path) -> None:
    """Exact match and the retrieval head's needle mass against length, per model (``cosine:`` the bounded
    geometry; mean over seeds, bootstrap 95% interval); dashed: the closed form with the training-length
    logits held fixed; dotted: those logits scaled by the strategy's own temperature law."""
    t = read_table(run_dir, "by_length")
    m = read_json(Path(run_dir) / "metrics.json")
    d = t.digits.max()
    t = t[t.digits == d]
    strategies, col = by_strategy(t)
    fig, (ax_a, ax_m) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for s in strategies:
        x = t[t.strategy == s]
        ax_a.plot(x.n, x.acc, "o-", color=col[s], label=s, ms=3)
        band(ax_a, x.n, x.acc_lo, x.acc_hi, col[s], bounds=(0, 1))
        ax_m.plot(x.n, x.needle_mass, "o-", color=col[s], ms=3)
        ax_m.plot(x.n, x.needle_mass_pred, "--", color=col[s], lw=0.8)
        if "needle_mass_law" in x:
            ax_m.plot(x.n, x.needle_mass_law, ":", color=col[s], lw=0.8)
    for ax in (ax_a, ax_m):
        ax.set_xscale("log")
        ax.axvspan(m["train_lengths"][0], m["train_lengths"][1], color="#dddddd", alpha=0.5, lw=0)
        ax.set_xlabel("length n (shaded: training lengths)")
    ax_a.set_ylabel(f"exact match ({d} digits)")
    ax_m.set_ylabel("retrieval head's attention on the needle at the read")
    ax_m.set_title("dashed: closed form, training-length logits held fixed; dotted: scaled by the strategy's law",
                   fontsize=8)
    ax_a.legend(fontsize=7, ncol=2)
    save(fig, run_dir, "accuracy_and_mass")


def curves(run_dir: Path) -> None:
    """Monitor loss and accuracy at the longest training length against step (mean over seeds)."""
    c = load_frame(run_dir, "curves")
    training_curves(run_dir, c[c.digits == c.digits.max()], [("loss", "answer cross-entropy (monitor set)", True, None),
                                                            ("acc", "exact match (monitor set)", False, None)])
