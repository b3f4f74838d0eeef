"""flipflop: flip-flop language modelling (Liu et al., NeurIPS 2023), glitches against a temperature.

Claim checked (``paper_repro.md`` section 6): the authors of flip-flop name attention dilution as a
cause of the rare read errors ("glitches") of transformers; SSA's temperatures are meant to keep
attention sharp, so they should remove glitches, most of all on sequences sparser or longer than
training. C8 [paper] (fewer steps to vanilla's loss) is measured here too.

The task [paper: Liu et al.; sizes ours]. A sequence of T instruction/bit pairs ``w b``, ``r b``,
``i b`` (write, read, ignore), the first a write. A read's bit is the last written bit; the other
bits are uniform. Instructions are ``i`` with probability ``p_ignore``, else ``w`` or ``r`` alike.
Example (T = 4): ``w 1 i 0 r 1 i 1``. The loss is the cross-entropy of the read bits only (they are
deterministic; the rest is noise). Training: T = ``pairs`` at ``p_ignore`` 0.8, fresh sequences
every step, ``steps`` 200 (C9's regime: short enough that vanilla is not at the floor, chosen from a
pilot on other seeds). Tests: in distribution, sparse (``sparse_p`` 0.99: reads far from their write),
dense (p_ignore 0.1), and longer sequences at the training p_ignore. The glitch rate is the fraction of
read bits predicted wrong, per seed, and pooled over seeds as errors over reads with an exact
interval; and at the reads of the in-distribution set, the attention entropy of the sparsest head
of the last layer (the one that can point at the last write). The sparse set holds ``sparse_eval``
sequences a member (at p_ignore 0.99 a sequence of 64 pairs has about 0.32 reads), about 330 reads a
member. C9's rule reads the errors clustered by seed (``log_rate_ratios``): sparse glitches come from
whole seeds that fail, so pooled reads would overstate the evidence. Every test set draws from its own
sub-stream of the ``eval`` stream.

The placebo (``placebo=True``): a vanilla model initialised from the ``init_twin`` stream and trained
on the same data, read against vanilla by C9's own rule; the rule must not call it "reproduced".

The model is ``ssa_theory.lm`` as in ``passkey`` (NoPE attention plus a causal convolution of 2
taps; no parameter penalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ssa_theory import cells, lm
from ssa_theory.claims import ONE_SEED, Above, Claim, calibrate, gated
from ssa_theory.config import TrainingConfig, ranged, variant_field
from ssa_theory.stats import binomial_ci, mean_ci, rate_columns
from ssa_theory.registry import Ablation, Experiment, Models
from ssa_theory.rundir import RunContext, read_json
from ssa_theory.seeding import Members
from ssa_theory.skeleton import ModelSpec, Results, Trained, figures, write_results

STRATEGIES = ("vanilla", "global", "log_n", "ssa_q_pos", "ssa")
PLACEBO = lm.PLACEBO

# --- C9's rule constants, fixed before the data they judge (paper_repro.md names the commit) ---------------
C9_MAX = 0.75  # C9's threshold: SSA's glitch rate at most 0.75 of vanilla's (geometric mean of per-seed ratios)
C9_EFFECT = 0.5  # C9's declared effect, twice the threshold's cut (power): half vanilla's rate
C9_FLOOR = 0.01  # below this pooled vanilla rate there is no room for the effect: "not testable (floor)"
CONTINUITY = 0.5  # added to each seed's errors and reads before its log rate: a seed with no error keeps a finite rate
W, R, I, BIT0 = 0, 1, 2, 3  # tokens: instructions, then the bits 0 and 1
VOCAB = 5

LEARNED = 0.95  # a model learned the task when at least this share of its in-distribution reads is right


@dataclass(frozen=True)
class FlipflopConfig(TrainingConfig):
    """Settings of ``flipflop``; the defaults are the default preset (its time: benchmarks/RESULTS.md)."""

    pairs: int = ranged(64, ge=2)  # T, instruction/bit pairs per training sequence (2T tokens)
    p_ignore: float = ranged(0.8, ge=0, lt=1)  # the probability of an ignore instruction in training
    # C9's regime, chosen before the data from a pilot of vanilla at 8 other seeds (100..107): 200 steps (half
    # the training) and reads still farther from their writes (p_ignore 0.99) glitch at 2.1% pooled (55 of 2650
    # reads; 51 of them on one seed), where 400 steps and p_ignore 0.98 glitched at 0.2%
    sparse_p: float = ranged(0.99, ge=0, lt=1)
    dense_p: float = ranged(0.1, ge=0, lt=1)  # p_ignore of the dense test set
    long_pairs: tuple[int, ...] = ranged((256, 1024), ge=2, le=8192)  # longer test sequences, at p_ignore
    n_eval: int = 64  # test sequences per set and member
    sparse_eval: int = ranged(1024, ge=1)  # sparse test sequences per member: about 330 reads at p_ignore 0.99
    strategies: tuple[str, ...] = variant_field(STRATEGIES)  # the variants trained
    placebo: bool = True  # also train the vanilla twin (PLACEBO), read against vanilla by C9's rule
    d_model: int = 32  # the model width
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads per block
    conv: int = 2  # causal convolution taps (local order; no position embedding)
    glitch_target: float = ranged(0.01, gt=0, lt=1)  # time to learn: the first logged step with a monitor glitch rate at most this
    n_monitor: int = 64  # monitor sequences per member
    steps: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    log_every: int = 20
    temp_lr_factor: float = 10.0  # the temperature parameters train at this multiple of lr (their own rate)

    def __post_init__(self) -> None:
        super().__post_init__()
        lm.check_model_fields(self)

    def n_sequences(self, test: str) -> int:
        return self.sparse_eval if test == "sparse" else self.n_eval

    @property
    def tests(self) -> list[tuple[str, int, float]]:
        """(name, pairs, p_ignore) of every test set, the in-distribution one first."""
        return [("in_distribution", self.pairs, self.p_ignore), ("sparse", self.pairs, self.sparse_p),
                ("dense", self.pairs, self.dense_p)] + [(f"long_{t}", t, self.p_ignore) for t in self.long_pairs]

    def shape(self, variant) -> lm.LMShape:
        return lm.LMShape(vocab=VOCAB, variant=variant, d_model=self.d_model, n_layers=self.n_layers,
                          n_heads=self.n_heads,
                          d_mlp=2 * self.d_model, conv=self.conv, train_length=2 * self.pairs)


# --- data ----------------------------------------------------------------------------------------


def sequences(g: torch.Generator, count: int, pairs: int, p_ignore: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` flip-flop sequences (CPU): tokens (count, 2 pairs) and the mask (count, 2 pairs - 1) of
    input positions whose next token is a read bit (the ``r`` tokens)."""
    u = torch.rand(count, pairs, generator=g)
    instr = torch.where(u < p_ignore, I, torch.where(u < p_ignore + (1 - p_ignore) / 2, W, R))
    instr[:, 0] = W
    bits = torch.randint(0, 2, (count, pairs), generator=g)
    at = torch.arange(pairs).expand(count, pairs)
    last_write = torch.cummax(torch.where(instr == W, at, torch.zeros_like(at)), 1).values
    bits = torch.where(instr == R, bits.gather(1, last_write), bits)
    tokens = torch.stack([instr, bits + BIT0], -1).reshape(count, 2 * pairs)
    reads = torch.stack([instr == R, torch.zeros_like(instr, dtype=torch.bool)], -1).reshape(count, 2 * pairs)
    return tokens, reads[:, :-1]


def _batch(gens, count: int, pairs: int, p_ignore: float):
    parts = [sequences(g, count, pairs, p_ignore) for g in gens]
    return torch.stack([t for t, _ in parts]), torch.stack([m for _, m in parts])


# --- training and measurement --------------------------------------------------------------------


def train(spec: ModelSpec, cfg: FlipflopConfig, members: Members, ctx: RunContext, init: str = "init") -> Trained:
    """Train one strategy for every member at once (initialised from the ``init`` stream; the temperature
    parameters at ``temp_lr_factor`` times the rate); its reads, errors and glitch rate on every test set
    (E, tests) and the attention entropy at the in-distribution reads (E,)."""
    net, hist = _fit(spec, cfg, members, ctx, init, temp_lr=cfg.lr * cfg.temp_lr_factor)
    return Trained(spec, members, evaluate(net, cfg, members, ctx.device), hist)


def _fit(spec: ModelSpec, cfg: FlipflopConfig, members: Members, ctx: RunContext, init: str = "init",
         temp_lr: float | None = None):
    gens = members.generators("data")
    monitor = _batch(members.generators("eval"), cfg.n_monitor, cfg.pairs, cfg.p_ignore)
    return lm.fit_members(cfg.shape(spec.resolved), members, ctx,
                          batch=lambda step: _batch(gens, cfg.batch_size, cfg.pairs, cfg.p_ignore), monitor=monitor,
                          steps=cfg.steps, lr=cfg.lr, log_every=cfg.log_every, label=spec.label,
                          token_freq=token_frequencies(cfg), init=init, temp_lr=temp_lr)


def token_frequencies(cfg: FlipflopConfig) -> torch.Tensor:
    """Each token's expected share of the training tokens (V,), for the ``freq`` strategy: half are
    instructions (``i`` with probability p_ignore, else ``w`` or ``r``; the first is ``w``), half bits."""
    p, T = cfg.p_ignore, cfg.pairs
    w = (1 + (T - 1) * (1 - p) / 2) / T
    return torch.tensor([w, (T - 1) * (1 - p) / 2 / T, (T - 1) * p / T, 0.5, 0.5]) / 2


@torch.no_grad()
def evaluate(net: lm.Ensemble, cfg: FlipflopConfig, members: Members, device) -> dict[str, np.ndarray]:
    reads = np.zeros((len(members), len(cfg.tests)), dtype=np.int64)
    errors = np.zeros_like(reads)
    entropy = None
    for i, (name, pairs, p) in enumerate(cfg.tests):
        gens = members.generators("eval", i)  # test set i's own sub-stream (the monitor set draws from the stream)
        wrong = count = 0
        n = cfg.n_sequences(name)
        for start in range(0, n, 16):  # chunks: long sequences are large
            tokens, mask = _batch(gens, min(16, n - start), pairs, p)
            tokens, mask = tokens.to(device), mask.to(device)
            if i == 0:
                logits, w = net(tokens[..., :-1], read=torch.arange(2 * pairs - 1, device=device))
                ent = read_entropy(w, mask)
                entropy = ent if entropy is None else entropy + ent
            else:
                logits = net(tokens[..., :-1])
            _, e, c = lm.scored(logits, tokens, mask)
            wrong, count = wrong + e.sum(1), count + c.sum(1)
        reads[:, i], errors[:, i] = count.cpu().numpy(), wrong.cpu().numpy()
    n_chunks = math.ceil(cfg.n_eval / 16)
    return {"glitch": errors / np.maximum(reads, 1), "reads": reads, "errors": errors,
            "read_entropy": (entropy / n_chunks).cpu().numpy(), **lm.temperature_arrays(net)}


def read_entropy(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per member (E,): the mean entropy (nats) of the attention rows at the reads, for the head of the
    last layer whose mean entropy there is least. ``w`` (E, layers, B, H, L, L), ``mask`` (E, B, L)."""
    last = w[:, -1]  # (E, B, H, L, L)
    h = -torch.special.xlogy(last, last).sum(-1)  # (E, B, H, L)
    m = mask[:, :, None, :].to(h.dtype)
    per_head = (h * m).sum((1, 3)) / m.sum((1, 3)).clamp_min(1)  # (E, H)
    return per_head.min(1).values


# --- run -----------------------------------------------------------------------------------------


def train_model(cfg: FlipflopConfig, key: str, ctx: RunContext) -> Trained:
    """One strategy's model (or the placebo twin's), for every member of the run (``Experiment.models``)."""
    spec, init = lm.model_spec(cfg, key)
    return train(spec, cfg, Members.of(ctx.seeds), ctx, init)


def run(cfg: FlipflopConfig, ctx: RunContext) -> None:
    trained = cells.trained(EXPERIMENT, cfg, ctx)  # each strategy its own run directory (reproduce spreads them)
    write_results(ctx, measure(cfg, Members.of(ctx.seeds), trained))


def measure(cfg: FlipflopConfig, members: Members, trained: Mapping[str, Trained]) -> Results:
    names = [t[0] for t in cfg.tests]
    results = Results()
    results.frames["curves"] = pd.DataFrame([
        {"strategy": s, "seed": seed, "step": int(step), "loss": float(t.history["loss"][i, e]),
         "glitch": float(t.history["error"][i, e])}
        for s, t in trained.items() for e, seed in enumerate(members.seeds) for i, step in enumerate(t.history["step"])])
    rows = []
    for s, t in trained.items():
        row = {"strategy": s}
        for i, name in enumerate(names):
            row.update(rate_columns(name, t["glitch"][:, i], int(t["errors"][:, i].sum()), int(t["reads"][:, i].sum())))
        row["read_entropy"] = float(t["read_entropy"].mean())
        rows.append(row)
    results.table("glitches", pd.DataFrame(rows), ci=names)
    counts = []
    for s, t in trained.items():
        for i, name in enumerate(names):
            k, n = int(t["errors"][:, i].sum()), int(t["reads"][:, i].sum())
            rate, lo, hi = binomial_ci(k, n) if n else (math.nan, math.nan, math.nan)
            counts.append({"strategy": s, "test": name, "reads": n, "errors": k, "pooled": rate, "pooled_lo": lo,
                           "pooled_hi": hi, "per_seed_errors": " ".join(str(int(e)) for e in t["errors"][:, i]),
                           "per_seed_reads": " ".join(str(int(r)) for r in t["reads"][:, i])})
    results.table("counts", pd.DataFrame(counts), ci=["pooled"])
    learn = lm.time_to_learn({s: t.history for s, t in trained.items()}, members, accuracy_key="error",
                             accuracy_target=cfg.glitch_target, higher_is_better=False, cell_name="pairs",
                             cell_values=[cfg.pairs])
    results.table("time_to_learn", learn, ci=["steps_ratio"])
    results.table("temperatures", lm.temperature_table(trained))
    results.table("per_seed", pd.DataFrame([
        {"strategy": s, "seed": seed, **{n: float(t["glitch"][e, i]) for i, n in enumerate(names)},
         "read_entropy": float(t["read_entropy"][e])} for s, t in trained.items() for e, seed in enumerate(members.seeds)]))
    results.metrics = {"tests": {n: {"pairs": pr, "p_ignore": p} for n, pr, p in cfg.tests},
                       "seeds": list(members.seeds),
                       "strategies": {s: {"glitch": {n: t["glitch"][:, i] for i, n in enumerate(names)},
                                          "reads": {n: t["reads"][:, i] for i, n in enumerate(names)},
                                          "errors": {n: t["errors"][:, i] for i, n in enumerate(names)},
                                          "read_entropy": t["read_entropy"]} for s, t in trained.items()},
                       "time_to_learn": learn.to_dict("records") if len(learn) else []}
    return results


# --- claims --------------------------------------------------------------------------------------


def log_rate_ratios(vanilla: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per seed (the seed trains both arms on the same data and reads the same test set), the log of
    ``other``'s glitch rate over vanilla's, each ``(errors + CONTINUITY) / (reads + CONTINUITY)``: C9's
    seed-clustered statistic (a seed whose errors cluster counts once, not once per error)."""
    ve, vr = np.asarray(vanilla["errors"], dtype=float), np.asarray(vanilla["reads"], dtype=float)
    oe, orr = np.asarray(other["errors"], dtype=float), np.asarray(other["reads"], dtype=float)
    n = min(ve.size, oe.size)
    return (np.log((oe[:n] + CONTINUITY) / (orr[:n] + CONTINUITY))
            - np.log((ve[:n] + CONTINUITY) / (vr[:n] + CONTINUITY)))


# C9's test on per-seed log rate ratios: the geometric-mean ratio at most ``C9_MAX`` with its t-interval below 1
_halves = Above(-math.log(C9_MAX), sign=-1.0)


def glitch_rule(vanilla: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]) -> str:
    """C9's rule, stated before the data, on one test set's per-seed ``errors`` and ``reads`` of each arm,
    clustered by seed (``log_rate_ratios``):
    - fewer than two seeds: ``ONE_SEED``;
    - "not testable (floor)" when vanilla's pooled rate is below ``C9_FLOOR`` (no room to halve it that
      the reads could show);
    - "reproduced" when the geometric mean of the per-seed rate ratios is at most ``C9_MAX`` and its
      t-interval lies below 1 (``_halves``; power is computed at ``C9_EFFECT``);
    - "not reproduced: more glitches" when the interval lies above 1; "not reproduced" otherwise."""
    ve, vr = np.asarray(vanilla["errors"]), np.asarray(vanilla["reads"])
    if ve.size < 2:
        return ONE_SEED
    if ve.sum() < C9_FLOOR * vr.sum():
        return f"not testable (floor): the control glitches at {ve.sum() / max(vr.sum(), 1):.2%} pooled, under {C9_FLOOR:.0%}"
    x = log_rate_ratios(vanilla, other)
    if _halves(x):
        return "reproduced"
    return "not reproduced: more glitches" if mean_ci(x)[1] > 0 else "not reproduced"


def claims(exported: Path) -> list[Claim]:
    """C9 from ``metrics.json``: ``glitch_rule`` on the sparse set (reads far from their writes, where
    dilution would bite), SSA against vanilla, and the placebo twin against vanilla; the headline is the
    geometric mean over seeds of SSA's glitch rate over vanilla's with its t-interval (``log_rate_ratios``),
    and the rule's false-positive rate and power from the twin's per-seed log ratios, resampled
    (``claims.calibrate``)."""
    m = read_json(Path(exported) / "metrics.json")
    arm = lambda name: {k: np.asarray(m["strategies"][name][k]["sparse"]) for k in ("errors", "reads")}  # noqa: E731
    van, ssa = arm("vanilla"), arm("ssa")
    x = log_rate_ratios(van, ssa)
    mean, lo, hi = mean_ci(x)
    twin = arm(PLACEBO) if PLACEBO in m["strategies"] else None
    cal = calibrate(log_rate_ratios(van, twin), _halves, math.log(C9_EFFECT),
                    "the twin's per-seed log rate ratios to vanilla, resampled") if twin is not None else None
    glob = arm("global") if "global" in m["strategies"] else None
    scr = arm(SSA_SCRAMBLED) if SSA_SCRAMBLED in m["strategies"] else None
    return [Claim("C9", "flipflop",
                  "attention glitches (flip-flop): a temperature keeps attention sharp and removes them",
                  f"glitch rate on sparse sequences (p_ignore {m['tests']['sparse']['p_ignore']:g}), SSA / vanilla, "
                  "geometric mean of per-seed ratios",
                  math.exp(mean), math.exp(lo), math.exp(hi), gated(glitch_rule(van, ssa), cal),
                  glitch_rule(van, twin) if twin is not None else "", cal.words() if cal else "",
                  against_global=glitch_rule(glob, ssa) if glob is not None else "",
                  scrambled=glitch_rule(van, scr) if scr is not None else "",
                  scrambled_global=glitch_rule(glob, scr) if glob is not None and scr is not None else "")]


SSA_SCRAMBLED = lm.SSA_SCRAMBLED  # C9's placebo that can fail


def model_keys(cfg) -> list[str]:
    """The strategies, the vanilla twin and SSA's scrambled twin (``lm.model_keys``)."""
    return lm.model_keys(cfg, scrambled=True)


def ablate(cfg: FlipflopConfig, variant, ctx: RunContext) -> np.ndarray:
    """The ablation's cell: ``variant`` trained on flip-flop; per seed, its glitch rate on the sparse set,
    and whether it learned the task (in distribution, at most ``1 - LEARNED`` of its reads wrong)."""
    members = Members.of(ctx.seeds)
    net, _ = _fit(ModelSpec.of(variant), cfg, members, ctx)
    glitch = evaluate(net, cfg, members, ctx.device)["glitch"]
    return {"value": glitch[:, 1], "learned": (glitch[:, 0] <= 1 - LEARNED).astype(float)}


EXPERIMENT = Experiment(
    name="flipflop",
    version="3",  # 3: 8 seeds, C9's regime off the floor (200 steps, p_ignore 0.99), seed-clustered rule, own temperature rate
    # 2: the placebo twin; reads and errors pooled (C9 with power); test sets from eval sub-streams
    claim="flip-flop: does a temperature remove attention glitches on sparse and long sequences?",
    config=FlipflopConfig,
    run=run,
    plot=figures("ssa_theory.experiments.flipflop_plots", "glitches", "curves"),
    headline="glitches",
    claims=claims,
    presets=lm.presets(7.0, seeds=8, quick={"steps": 60, "pairs": 16, "long_pairs": (64,), "n_eval": 16, "n_monitor": 16,
                                   "strategies": ("vanilla", "ssa")},
                       gpu={"d_model": 128, "n_layers": 4, "n_heads": 4, "steps": 5000, "batch_size": 64, "pairs": 256,
                            "long_pairs": (1024, 4096), "n_eval": 256}),
    ablation=Ablation("glitch rate on sparse flip-flop sequences (p_ignore 0.98)", "0: every read right", ablate,
                      # the committed ablation's settings (before C9's regime moved the defaults)
                      overrides={"steps": 200, "long_pairs": (), "n_eval": 32, "sparse_p": 0.98, "sparse_eval": 512},
                      quick={"steps": 40, "pairs": 16, "n_eval": 16, "n_monitor": 16}, bounded=True, minutes=0.83),
    models=Models(model_keys, train_model),
)
