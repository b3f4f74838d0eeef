"""Figures of ``denoising``, one function each, drawn only from a run directory's saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ssa_theory import theory
from ssa_theory.plotting import COLORS, ci_err, label, save
from ssa_theory.rundir import load_frame, read_json, read_table

# each estimator's marker, and its colour from the one table (by variant; the sink's for vanilla_sink)
STYLE = {
    "naive": dict(color=COLORS["naive"], marker="s"),
    "bayes": dict(color=COLORS["bayes"], marker="*"),
    "vanilla": dict(color=COLORS["vanilla"], marker="o"),
    "value_selective": dict(color=COLORS["ssa_v_tok_noshare"], marker="D"),
    "output_gate": dict(color=COLORS["gated"], marker="^"),
    "vanilla_sink": dict(color=COLORS["sink"], marker="v"),
}
THEORY = {"naive": "naive (theory)", "vanilla": "best vanilla / output gate (theory)",
          "bayes": "Bayes = best value-selective (theory)"}


def _sweeps(run_dir: Path):
    m = read_json(Path(run_dir) / "metrics.json")["regime"]
    table = read_table(run_dir, "regimes")
    by_p = table[table.sigma_noisy == m["sigma_noisy"]].sort_values("p_noisy")
    by_s = table[table.p_noisy == m["p_noisy"]].sort_values("sigma_noisy")
    return m, [("p_noisy", by_p, f"fraction of noisy tokens p (sigma_noisy = {m['sigma_noisy']:g})"),
               ("sigma_noisy", by_s, f"noisy tokens' sigma (p = {m['p_noisy']:g}, sigma_clean = {m['sigma_clean']:g})")]


def risk_sweep(run_dir: Path) -> None:
    """MSE (top) and MSE / Bayes risk (bottom) against p and against sigma_noisy; theory dashed."""
    m, sweeps = _sweeps(run_dir)
    variants = read_json(Path(run_dir) / "metrics.json").get("variants")
    curves = load_frame(run_dir, "theory_curves")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), layout="constrained", sharex="col")
    for col, (axis, table, xlabel) in enumerate(sweeps):
        th = curves[curves.axis == axis].sort_values(axis)
        bayes = table[table.estimator == "bayes"].set_index(axis)["limit"]
        for name, text in THEORY.items():
            axes[0, col].plot(th[axis], th[name], ls="--", lw=1, color=STYLE[name]["color"], label=text)
            if name != "naive":  # the naive ratio (up to ~100) would flatten everything else
                axes[1, col].plot(th[axis], th[name] / th.bayes, ls="--", lw=1, color=STYLE[name]["color"])
        for name, style in STYLE.items():
            t = table[table.estimator == name]
            err = ci_err(t, "mse")
            axes[0, col].errorbar(t[axis], t.mse, yerr=err, ls="none", ms=5, capsize=2, label=label(name, variants),
                                  **style)
            if name != "naive":
                ratio = bayes.loc[t[axis]].values
                axes[1, col].errorbar(t[axis], t.mse / ratio, yerr=err / ratio, ls="none", ms=5, capsize=2, **style)
        axes[0, col].set_yscale("log")
        axes[1, col].set_xlabel(xlabel)
        if axis == "sigma_noisy":
            axes[1, col].set_xscale("log")
    axes[0, 0].set_ylabel("MSE per coordinate (held-out)")
    axes[1, 0].set_ylabel("MSE / Bayes risk (naive omitted)")
    axes[0, 1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"denoising: n = {m['n_tokens']}, d = {m['dim']}; points: mean over seeds with 95% CI; dashed: closed forms")
    save(fig, run_dir, "risk_sweep")


def value_gains(run_dir: Path) -> None:
    """Learned effective value gain of each token class against its noise level; Bayes gains dashed."""
    m = read_json(Path(run_dir) / "metrics.json")["regime"]
    g = read_table(run_dir, "value_gains")
    g = g[g.p_noisy == m["p_noisy"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    vs = g[g.model == "value_selective"]
    sig = np.geomspace(vs.sigma.min() / 1.5, vs.sigma.max() * 1.5, 100)
    _, bayes_gain = theory.value_selective_bayes_parameters(m["n_tokens"], sig, m["prior_var"])
    ax.plot(sig, bayes_gain, ls="--", color="#333333", label="Bayes gain (1/s^2) / (1/s^2 + 1/(n v))")
    for cls, marker in (("clean", "o"), ("noisy", "D")):
        c = vs[vs["class"] == cls]
        ax.errorbar(c.sigma, c.gain, yerr=ci_err(c, "gain"), ls="none", marker=marker,
                    color=STYLE["value_selective"]["color"], capsize=2, label=f"value-selective, {cls} tokens")
    van = g[(g.model == "vanilla") & (g["class"] == "noisy")]
    ax.plot(van.sigma_noisy, van.gain, ls="none", marker="o", mfc="none", color=STYLE["vanilla"]["color"],
            label="vanilla: its one global gain (x: regime's sigma_noisy)")
    ax.set_xscale("log")
    ax.set_xlabel("token noise level sigma")
    ax.set_ylabel("effective value gain tau_v x diag(W_v)")
    ax.set_title(f"learned value gains, p = {m['p_noisy']:g}")
    ax.legend(fontsize=7)
    save(fig, run_dir, "value_gains")


def training_curves(run_dir: Path) -> None:
    """Held-out MSE against training step in the default regime; theory limits dashed."""
    m = read_json(Path(run_dir) / "metrics.json")
    curves = load_frame(run_dir, "curves")
    c = curves[curves.regime == 0]
    variants = m.get("variants")
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    for name, lw in (("vanilla", 4), ("value_selective", 1.5), ("output_gate", 1.5), ("vanilla_sink", 1.5)):
        s = c[c.model == name].groupby("step").mse
        ax.plot(s.mean().index, s.mean(), color=STYLE[name]["color"], lw=lw, alpha=0.6 if lw > 2 else 1,
                label=label(name, variants))
    ax.axhline(m["mse_vanilla_limit_theory"], ls="--", lw=1, color=STYLE["vanilla"]["color"],
               label="best vanilla (theory)")
    ax.axhline(m["mse_bayes_theory"], ls="--", lw=1, color=STYLE["bayes"]["color"], label="Bayes (theory)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("MSE per coordinate (1024 held-out contexts)")
    r = m["regime"]
    ax.set_title(f"denoising, p = {r['p_noisy']:g}, sigma = ({r['sigma_clean']:g}, {r['sigma_noisy']:g})")
    ax.legend(fontsize=7)
    save(fig, run_dir, "training_curves")
