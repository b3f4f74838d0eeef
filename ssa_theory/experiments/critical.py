"""critical: critical attention scaling, the log-n coefficient fixed on both sides of its transition.

Anchor [Chen, Lin, Polyanskiy and Rigollet, "Critical attention scaling in long-context
transformers", arXiv 2510.05554, 2025]: scores scaled by ``beta_n = gamma log n`` have a phase
transition at a critical gamma; below it attention spreads over the context as n grows, above it
attention concentrates. ``paper_repro.md`` section 4 (critical scaling).

Closed form (``theory.critical_mass``): with bounded scores ``s_j`` (here ``B cos(q, k_j)``, so
``|s_j| <= B``) times ``gamma log n``, a needle whose score exceeds each of the other n - 1 by g gets
``1 / (1 + (n - 1) n^(-gamma g))``: the odds against it grow like ``n^(1 - gamma g)``, so the
transition is predicted at ``gamma g = 1``. In the bounded geometry g <= 2B, so a model cannot escape
the transition by growing its gap (with free dot products it could, as in ``dilution``).

The task is ``dilution``'s (``ssa_theory.tasks.needle``): a set of n items, one flagged the needle,
whose class the query reads. One model per gamma of ``gammas``: the ``log_n`` strategy in the
``cosine`` geometry with bound ``gamma B`` (scores ``gamma B cos(q, k) log n``, which is ``B cos``
times ``gamma log n``), trained on n in ``n_min..n_max``, with no weight decay (the scores do not
depend on the norms). Each is measured at n from 16 to 4096: the needle's attention mass and the
accuracy, and beside them the closed form at the model's own scores. In this model a score depends on
the item only (its flag and class; the query is fixed), not on n, so the needle's and the
distractors' scores per class are read off exactly once (``class_scores``):
- ``gap``: the needle's score minus the mean distractor's (classes uniform), the g of the closed form
  (``mass_pred``);
- ``gap_max``: the needle's score minus the largest distractor's; as n grows the largest distractor
  dominates, so the asymptotic transition is at ``gamma gap_max = 1``;
- ``mass_pred_spread``: the closed form with every class's own score,
  ``mean over c* of 1 / (1 + (n - 1) mean_c exp(gamma log n (s_c - s*_c*)))``.

The transition, stated before the data: per gamma, the off-needle exponent, the slope of
``log((1 - mass) / mass)`` on ``log n`` over the lengths from ``fit_from`` up
(``theory.off_needle_exponent``; ``1 - gamma g`` for the closed form), measured per seed. Observed:
the gamma where the mean measured exponent crosses 0, interpolated in log gamma
(``theory.crossing``). Predicted: where the closed form's exponent, fitted the same way at each
model's own gap, crosses 0 (``predicted``; with the classes' spread, ``predicted_spread``); and
where ``1 - gamma g`` crosses 0, the limit of large n (``asymptote``; with ``gap_max``, ``asymptote_max``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ssa_theory import cells, theory
from ssa_theory.config import TrainingConfig, require
from ssa_theory.registry import Ablation, Experiment, Models, Preset
from ssa_theory.rundir import RunContext
from ssa_theory.seeding import Members, step_lengths
from ssa_theory.skeleton import ModelSpec, Results, Trained, figures, write_results
from ssa_theory.stats import ci_columns
from ssa_theory.tasks import needle as needle_task
from ssa_theory.tasks.needle import NeedleModel, sample

EVAL_CHUNK = 64  # contexts per evaluation call
# A class is looked up when its needle's score exceeds every distractor's by at least this share of the
# bound B (a quarter of the scores' range). A model may leave one class unread and predict it whenever
# it finds no needle: that class's needle dilutes at every gamma and is not part of the transition.
LOOKED_UP = 0.5


@dataclass(frozen=True)
class CriticalConfig(TrainingConfig):
    """Settings of ``critical``; the defaults are the default preset (its time: benchmarks/RESULTS.md)."""

    gammas: tuple[float, ...] = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)  # the fixed log-n coefficients, one model each
    bound: float = 1.0  # B: the scores are B cos(q, k), each in [-B, B]
    n_classes: int = 8  # C: the needle's content
    n_min: int = 5  # training lengths n_min..n_max, uniform per step
    n_max: int = 16
    eval_lengths: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    fit_from: int = 64  # the off-needle exponent is fitted over the evaluation lengths from this one up
    task_seed: int = 0  # the length schedule is the task: fixed across member seeds
    steps: int = 1000
    batch_size: int = 128
    lr: float = 0.01
    n_eval: int = 256  # contexts per member and length
    log_every: int = 100

    flag_noise = 0.0  # the needle is unambiguous (the task's field; not a setting here)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.gammas) >= 2 and all(g > 0 for g in self.gammas) and list(self.gammas) == sorted(set(self.gammas)),
                f"gammas must be two or more increasing values > 0 (got {self.gammas})")
        require(self.bound > 0, f"bound must be > 0 (got {self.bound})")
        require(self.n_classes >= 2, f"n_classes must be >= 2 (got {self.n_classes})")
        require(2 <= self.n_min <= self.n_max, f"need 2 <= n_min <= n_max (got {self.n_min}, {self.n_max})")
        require(len(self.eval_lengths) >= 2 and all(n >= 2 for n in self.eval_lengths),
                f"eval_lengths must be two or more lengths >= 2 (got {self.eval_lengths})")
        require(max(self.eval_lengths) <= 65536,
                f"eval_lengths above 65536 would not fit in memory (got {max(self.eval_lengths)})")
        require(sum(n >= self.fit_from for n in self.eval_lengths) >= 2,
                f"fit_from={self.fit_from} leaves fewer than two evaluation lengths to fit the exponent over; lower it")

    @property
    def lengths(self) -> tuple[int, ...]:
        """Evaluation lengths, sorted, without repeats."""
        return tuple(sorted(set(self.eval_lengths)))

    @property
    def fit_lengths(self) -> tuple[int, ...]:
        return tuple(n for n in self.lengths if n >= self.fit_from)


def key(gamma: float) -> str:
    """The model key of one gamma: ``gamma=0.5``."""
    return f"gamma={gamma:g}"


def models(cfg: CriticalConfig) -> list[str]:
    return [key(g) for g in cfg.gammas]


# --- training and measurement --------------------------------------------------------------------


def train(gamma: float, cfg: CriticalConfig, members: Members, ctx: RunContext) -> Trained:
    """The model at one gamma for every member: trained, then measured at every length (arrays (E, lengths):
    ``acc``, ``mass_all``, and over the looked-up classes ``mass``, ``mass_se``, ``log_odds``, with the
    closed form's ``mass_pred``, ``mass_pred_spread`` and ``log_odds_pred_spread``), with its class scores
    (``s_needle``, ``s_dist``: (E, C)), which classes it looks up (``looked_up``: (E, C)) and its gaps
    over those (``gap``, ``gap_max``: (E,))."""
    label = key(gamma)
    net = NeedleModel("log_n", cfg, members.generators("init"), score="cosine",
                      score_bound=gamma * cfg.bound).to(ctx.device)
    needle_task.fit_model(net, cfg, members, ctx, label, step_lengths(cfg.task_seed, cfg.n_min, cfg.n_max, cfg.steps))
    s_needle, s_dist = class_scores(net, cfg, gamma)
    looked_up = s_needle - s_dist.max(1, keepdims=True) >= LOOKED_UP * cfg.bound
    w = looked_up / np.maximum(looked_up.sum(1, keepdims=True), 1)  # a mean over the looked-up classes
    gap = (w * (s_needle - s_dist.mean(1, keepdims=True))).sum(1)
    gap_max = (w * (s_needle - s_dist.max(1, keepdims=True))).sum(1)
    arrays = {"s_needle": s_needle, "s_dist": s_dist, "looked_up": looked_up, "gap": gap, "gap_max": gap_max}
    measured = [evaluate_length(net, cfg, n, members, torch.as_tensor(looked_up)) for n in cfg.lengths]
    for k in measured[0]:
        arrays[k] = np.stack([m[k] for m in measured], 1)
    arrays["mass_pred"] = np.stack([theory.critical_mass(n, gamma, gap) for n in cfg.lengths], 1)
    spread = [spread_closed_form(n, gamma, s_needle, s_dist, w) for n in cfg.lengths]
    arrays["mass_pred_spread"] = np.stack([m for m, _ in spread], 1)
    arrays["log_odds_pred_spread"] = np.stack([lo for _, lo in spread], 1)
    return Trained(ModelSpec(label, "log_n"), members, arrays)


@torch.no_grad()
def class_scores(net: NeedleModel, cfg: CriticalConfig, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """The bounded scores ``B cos(q, k)`` of a needle and of a distractor of each class, per member
    (E, C) each: the logits of one context holding both of every class, over ``gamma log n``."""
    E, C = net.attn.n_members, cfg.n_classes
    dev = net.query.device
    classes = torch.arange(C, device=dev).repeat(2)[None, None].expand(E, 1, -1)  # (E, 1, 2C)
    flag = (torch.arange(2 * C, device=dev) < C).to(torch.float32)[None, None].expand(E, 1, -1)
    onehot = torch.nn.functional.one_hot(classes, C).to(torch.float32)
    x = torch.cat([flag[..., None], onehot, torch.zeros_like(flag[..., None])], -1)
    z = net.logits(x, flag).double()[:, 0] / (gamma * math.log(2 * C))  # (E, 2C): scores times gamma log n
    return z[:, :C].cpu().numpy(), z[:, C:].cpu().numpy()


def spread_closed_form(n: int, gamma: float, s_needle: np.ndarray, s_dist: np.ndarray, w: np.ndarray):
    """The closed form with every class's own score, per member (E,), the needle's class c* weighted by
    ``w`` (E, C) and the distractors' classes uniform: the odds against the needle
    ``(n - 1) mean_c exp(gamma log n (s_c - s*_c*))``, as the mass ``1 / (1 + odds)`` and as the log odds."""
    beta = gamma * math.log(n)
    d = beta * (s_dist[:, None, :] - s_needle[:, :, None])  # (E, c*, c)
    shift = d.max(-1, keepdims=True)
    log_odds = math.log(n - 1) + shift[..., 0] + np.log(np.exp(d - shift).mean(-1))  # (E, c*)
    return (w / (1.0 + np.exp(log_odds))).sum(1), (w * log_odds).sum(1)


@torch.no_grad()
def evaluate_length(net: NeedleModel, cfg: CriticalConfig, n: int, members: Members,
                    looked_up: torch.Tensor) -> dict[str, np.ndarray]:
    """At length n, per member (E,), over contexts drawn from the ``eval`` stream's sub-stream n:
    accuracy and the needle's attention mass (``acc``, ``mass_all``); and over the contexts whose needle
    class is ``looked_up`` (E, C), the mass with its standard error and the mean log odds against the
    needle ``log((1 - a) / a)`` (``mass``, ``mass_se``, ``log_odds``). Softmax in float64, so that a
    mass within 1e-7 of 1 keeps its odds."""
    gens = members.generators("eval", n)
    device = net.query.device
    acc, mass, log_odds, keep = [], [], [], []
    for start in range(0, cfg.n_eval, EVAL_CHUNK):
        x, target, where = sample(cfg, gens, min(EVAL_CHUNK, cfg.n_eval - start), n, device)
        acc.append((net(x, x[..., 0]).argmax(-1) == target).double())
        logp = torch.log_softmax(net.logits(x, x[..., 0]).double(), -1)
        lp = logp.gather(-1, where[..., None])[..., 0]
        mass.append(lp.exp())
        log_odds.append(torch.log(-torch.expm1(lp)) - lp)
        keep.append(looked_up.to(device).gather(1, target).double())
    acc, mass, log_odds, keep = (torch.cat(v, 1).cpu().numpy() for v in (acc, mass, log_odds, keep))
    k = np.maximum(keep.sum(1), 1)
    m = (keep * mass).sum(1) / k
    var = (keep * (mass - m[:, None]) ** 2).sum(1) / np.maximum(k - 1, 1)
    return {"acc": acc.mean(1), "mass_all": mass.mean(1), "mass": m, "mass_se": np.sqrt(var / k),
            "log_odds": (keep * log_odds).sum(1) / k}


def ablate(cfg: CriticalConfig, variant, ctx: RunContext) -> dict[str, np.ndarray]:
    """The ablation's cell: ``variant`` on the needle task in the bounded geometry (scores
    ``bound * cos(q, k)``, times whatever the variant's temperatures are), trained on n_min..n_max; per
    seed, the attention mass off the needle at the longest evaluation length over all contexts (0:
    all of it on the needle), and whether the seed learned the task at the training length (accuracy
    at least 0.99). Beside ``dilution``'s column, it shows which strategies counter dilution when no
    gap can grow past 2B."""
    members, spec = Members.of(ctx.seeds), ModelSpec.of(variant)
    net = NeedleModel(spec.resolved, cfg, members.generators("init"), score="cosine",
                      score_bound=cfg.bound).to(ctx.device)
    needle_task.fit_model(net, cfg, members, ctx, spec.variant,
                          step_lengths(cfg.task_seed, cfg.n_min, cfg.n_max, cfg.steps))
    everything = torch.ones(len(members), cfg.n_classes, dtype=torch.bool)
    far = evaluate_length(net, cfg, max(cfg.lengths), members, everything)
    near = evaluate_length(net, cfg, cfg.n_max, members, everything)
    return {"value": 1.0 - far["mass_all"], "learned": (near["acc"] >= 0.99).astype(float)}


# --- run -----------------------------------------------------------------------------------------


def train_model(cfg: CriticalConfig, name: str, ctx: RunContext) -> Trained:
    """One model of ``models`` (``gamma=G``), for every member seed of ``ctx``."""
    gamma = {key(g): g for g in cfg.gammas}[name]
    return train(gamma, cfg, Members.of(ctx.seeds), ctx)


def run(cfg: CriticalConfig, ctx: RunContext) -> None:
    trained = cells.trained(EXPERIMENT, cfg, ctx)  # each gamma its own run directory (reproduce spreads them)
    write_results(ctx, measure(cfg, trained))


def measure(cfg: CriticalConfig, trained: Mapping[str, Trained]) -> Results:
    """The per-length table, the per-gamma table with the exponents, the transition, metrics.json."""
    idx = [cfg.lengths.index(n) for n in cfg.fit_lengths]
    rows, per_gamma = [], []
    for gamma in cfg.gammas:
        t = trained[key(gamma)]
        for j, n in enumerate(cfg.lengths):
            rows.append({"gamma": gamma, "n": n, **ci_columns("mass", t["mass"][:, j]),
                         "mass_pred": float(t["mass_pred"][:, j].mean()),
                         "mass_pred_spread": float(t["mass_pred_spread"][:, j].mean()), **ci_columns("acc", t["acc"][:, j])})
        n_fit = np.array(cfg.fit_lengths)
        fit = lambda lo: np.array([theory.off_needle_exponent(row[idx], n_fit) for row in lo])  # noqa: E731
        expo, expo_spread = fit(t["log_odds"]), fit(t["log_odds_pred_spread"])
        expo_pred = fit(np.stack([theory.critical_log_odds(np.array(cfg.lengths), gamma, g) for g in t["gap"]]))
        per_gamma.append({"gamma": gamma, "looked_up": f"{int(t['looked_up'].sum())}/{t['looked_up'].size}",
                          **ci_columns("gap", t["gap"], bounded=False), "gap_max": float(t["gap_max"].mean()),
                          "gamma_gap": gamma * float(t["gap"].mean()), **ci_columns("exponent", expo, bounded=False),
                          "exponent_pred": float(expo_pred.mean()), "exponent_pred_spread": float(expo_spread.mean()),
                          "exponent_asymptote": 1 - gamma * float(t["gap"].mean()),
                          "mass_train": float(t["mass"][:, cfg.lengths.index(min(cfg.lengths))].mean()),
                          "mass_max": float(t["mass"][:, -1].mean()), "mass_all_max": float(t["mass_all"][:, -1].mean()),
                          "acc_max": float(t["acc"][:, -1].mean())})
    table = pd.DataFrame(per_gamma)
    g = table.gamma.to_numpy()
    transition = {
        "observed": theory.crossing(g, table.exponent),
        "predicted": theory.crossing(g, table.exponent_pred),
        "predicted_spread": theory.crossing(g, table.exponent_pred_spread),
        "asymptote": theory.crossing(g, table.exponent_asymptote),  # gamma gap = 1
        "asymptote_max": theory.crossing(g, 1 - g * table.gap_max.to_numpy()),  # gamma gap_max = 1
    }
    results = Results()
    results.table("by_length", pd.DataFrame(rows), ci=["mass", "acc"])
    results.table("transition", table, ci=["gap", "exponent"])
    results.metrics = {"gammas": list(cfg.gammas), "lengths": list(cfg.lengths), "fit_lengths": list(cfg.fit_lengths),
                       "train_length": cfg.n_max, "bound": cfg.bound, "seeds": list(next(iter(trained.values())).members.seeds),
                       "transition": transition,
                       "per_gamma": {key(r["gamma"]): {k: v for k, v in r.items() if k != "gamma"} for r in per_gamma}}
    return results


EXPERIMENT = Experiment(
    name="critical",
    version="1",
    claim="Critical attention scaling (Chen et al. 2025): gamma log n has a transition at gamma g = 1 in a bounded geometry",
    config=CriticalConfig,
    run=run,
    plot=figures("ssa_theory.experiments.critical_plots", "transition"),
    headline="transition",
    presets={
        "default": Preset({}, seeds=5, minutes=1.4, about="the run paper_repro.md reports: 7 models of 5 seeds, "
                          "about 1.5 minutes of one core"),
        "quick": Preset({"steps": 100, "gammas": (0.35, 1.0, 2.0), "eval_lengths": (16, 64, 256), "n_eval": 32,
                         "log_every": 50}, seeds=2, about="a smoke test in seconds; numbers are not converged", scratch=True),
    },
    ablation=Ablation("attention mass off the needle at n = 4096, cosine scores (bound 1), trained on n <= 16",
                      "0: all mass on the needle", ablate, overrides={"eval_lengths": (16, 4096), "fit_from": 16, "n_eval": 128},
                      quick={"steps": 100, "eval_lengths": (16, 256), "n_eval": 32, "log_every": 50}, bounded=True, minutes=0.1),
    models=Models(models, train_model),
    tasks={"needle": needle_task.VERSION},
)
