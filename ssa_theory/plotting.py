"""Figure helpers shared by the experiments: one house style, saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {
    "vanilla": "#4C72B0",
    "ssa": "#DD8452",
    "global": "#55A868",
    "theory": "#333333",
}
# The one colour table: every model label or variant name an experiment draws, the house colours for
# the three the paper compares; other names take the next colour of a categorical map.
_ALIASES = {"ssa_q_tok": "ssa", "ssa_q": "ssa", "value_selective": "ssa"}


def colors(names) -> dict[str, str]:
    """A colour for every name in ``names`` (labels or variant names), stable for the house three."""
    cmap = plt.get_cmap("tab20")
    return {n: COLORS.get(_ALIASES.get(n, n), cmap(i % 20)) for i, n in enumerate(names)}


def ci_err(df, column: str) -> np.ndarray:
    """Error-bar extents (2, n) of ``column`` from its ``_lo``/``_hi`` columns; NaN (one seed) as 0."""
    m = np.asarray(df[column], dtype=float)
    return np.nan_to_num(np.vstack([m - np.asarray(df[f"{column}_lo"]), np.asarray(df[f"{column}_hi"]) - m]))


def band(ax, x, lo, hi, color, *, alpha: float = 0.15, bounds: tuple[float | None, float | None] = (None, None)) -> None:
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
    fig.savefig(d / f"{name}.pdf", bbox_inches="tight", metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
