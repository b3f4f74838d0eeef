"""Figure helpers shared by the experiments: one house style, saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# The one colour table, by attention variant (and the closed forms'): the paper's comparison (vanilla
# against the query or value temperature each experiment calls "ssa") in the house colours.
COLORS = {
    "vanilla": "#4C72B0",
    "ssa_q_tok": "#DD8452",
    "ssa_q": "#DD8452",
    "ssa_v_tok_noshare": "#DD8452",
    "global": "#55A868",
    "ssa_q_pos": "#8172B3",
    "ssa": "#C44E52",
    "global_free": "#999999",
    "gated": "#55A868",
    "sink": "#8172B3",
    "theory": "#333333",  # closed forms
    "bayes": "#333333",
    "naive": "#8C8C8C",
}


def colors(names, variants: dict[str, str] | None = None) -> dict[str, str]:
    """A colour for every name in ``names``: a variant's from ``COLORS``, a model label's through the
    run's ``variants`` (label -> variant); other names take the next colour of a categorical map."""
    cmap = plt.get_cmap("tab20")
    return {n: COLORS.get((variants or {}).get(n, n), cmap(i % 20)) for i, n in enumerate(names)}


def by_strategy(frame, column: str = "strategy") -> tuple[list[str], dict[str, str]]:
    """The strategies of a results frame in run order, and a colour each."""
    names = list(dict.fromkeys(frame[column]))
    return names, colors(names)


def training_curves(run_dir: Path, frame, panels, name: str = "curves") -> None:
    """Monitor curves against training step, one panel per ``(column, ylabel, log scale, floor)`` of
    ``panels`` and one line per strategy (mean over seeds; values below ``floor`` drawn at it)."""
    strategies, col = by_strategy(frame)
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.6), layout="constrained", squeeze=False)
    for ax, (column, ylabel, log, floor) in zip(axes[0], panels):
        for s in strategies:
            mean = frame[frame.strategy == s].groupby("step")[column].mean()
            ax.plot(mean.index, mean if floor is None else mean.clip(lower=floor), color=col[s], label=s)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=7, ncol=2)
    save(fig, run_dir, name)


def label(model: str, variants: dict[str, str] | None) -> str:
    """A legend entry naming the layer: ``"ssa (ssa_q_tok)"`` from a run's ``metrics["variants"]``."""
    v = (variants or {}).get(model)
    return model if not v or v == model else f"{model} ({v})"


def ci_err(df, column: str) -> np.ndarray:
    """Error-bar extents (2, n) of ``column`` from its ``_lo``/``_hi`` columns; NaN (one seed) as 0."""
    m = np.asarray(df[column], dtype=float)
    return np.nan_to_num(np.vstack([m - np.asarray(df[f"{column}_lo"]), np.asarray(df[f"{column}_hi"]) - m]))


def band(ax, x, lo, hi, color, *, alpha: float = 0.15,
         bounds: tuple[float | None, float | None] = (None, None)) -> None:
    """A shaded interval between ``lo`` and ``hi``, clipped to the measure's ``bounds``."""
    lo, hi = np.clip(np.asarray(lo, dtype=float), *bounds), np.clip(np.asarray(hi, dtype=float), *bounds)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)

plt.rcParams.update(
    {
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
    }
)


def save(fig: "plt.Figure", run_dir: Path, name: str) -> None:
    """``figures/NAME.png`` and ``figures/NAME.pdf``; metadata stripped so reruns are byte-stable."""
    d = Path(run_dir) / "figures"
    d.mkdir(exist_ok=True)
    fig.savefig(d / f"{name}.png", bbox_inches="tight", metadata={"Software": None})
    fig.savefig(d / f"{name}.pdf", bbox_inches="tight",
                metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
