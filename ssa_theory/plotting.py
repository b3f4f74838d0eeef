"""Figure helpers shared by the experiments: one house style, saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "vanilla": "#4C72B0",
    "ssa": "#DD8452",
    "global": "#55A868",
    "theory": "#333333",
}

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
