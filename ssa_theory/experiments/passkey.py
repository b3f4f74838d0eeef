"""passkey: retrieval of a passkey among decoys, past the training length, in a small causal LM.

Claims checked (``paper_repro.md`` section 7): C7 [paper] SSA improves passkey retrieval, read in two
score geometries (C7: free dot products; C7b: bounded cosine scores, where dilution can bind); C8
[paper] SSA learns faster (here: steps to a fixed exact match).

The task [ours; the synthetic core of the passkey prompt of landmark attention and LongLoRA]. A
sequence of n tokens: filler drawn uniformly from ``n_filler`` filler tokens, with a KEY marker and d
digit tokens (the needle) and ``decoys`` blocks of a DECOY marker and d other digits inserted at
uniform points (the needle's at a given depth in evaluation), then a QUERY marker and the d digits
again. A diluted read mixes the decoys' digits with the passkey's. The loss is the cross-entropy of
the answer digits only, each predicted from everything before it (so exact match under teacher
forcing is exact match of greedy decoding). Every step draws fresh sequences at one length n, drawn
uniformly from ``n_min..n_max`` (the task's stream, the same for every member), so that log n is not a
constant in training. Members are (d, seed) pairs, one grid cell per passkey length of ``digits``.

The model is ``ssa_theory.lm`` (NoPE attention, a causal convolution of 2 taps for local order, 2
pre-LayerNorm blocks), the attention variant being the strategy compared, with free dot-product
scores (``strategies``) and, for ``bounded``, with scores ``bound * cos(q, k)`` (model keys
``COSINE + name``): there no gap between two keys exceeds ``2 bound`` unless a temperature multiplies
it. The placebo twin (vanilla from another initialisation) trains in both. No parameter pays a
penalty. Evaluation: exact match on a grid of lengths up to 32x the longest training length and of
needle depths; and at the read (the QUERY position), for the retrieval head (per member, the layer
and head that pays the needle most at the training length): its attention on the needle, its logit
gaps against the mean and the largest other token, and the dilution closed form from its
training-length mass with the logits held fixed, and scaled by the strategy's own temperature law
(``law_ratio``, from the strategy table).

Time to learn (C8): a fixed monitor set at the longest training length is scored at ``n_logs``
log-spaced steps; per seed, the step at which exact match first reaches ``accuracy_target``
(interpolated), censored when never; Kaplan-Meier medians over seeds (``time_to_learn``). C8's models
(vanilla, SSA, the twin) train ``learn_seeds`` seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ssa_theory import cells, lm, theory
from ssa_theory.claims import ONE_SEED, Claim, paired
from ssa_theory.config import TrainingConfig, require, variant_field
from ssa_theory.registry import Ablation, Experiment, Models
from ssa_theory.rundir import RunContext, read_json
from ssa_theory.seeding import Members, step_lengths
from ssa_theory.skeleton import ModelSpec, Results, Trained, figures, write_results
from ssa_theory.stats import binomial_ci, ci_columns, survival

STRATEGIES = ("vanilla", "global", "log_n", "ssa_q_pos", "ssa")
# the strategies also trained in the bounded geometry: global beside SSA, so that a fixed sharper scale and a
# temperature that grows with n are told apart (as C5 does)
BOUNDED = ("vanilla", "global", "log_n", "ssa")
DIGITS = 10  # tokens 0..9 are the digits
PLACEBO = lm.PLACEBO
COSINE = "cosine:"  # the key prefix of a model in the bounded geometry: COSINE + strategy (or PLACEBO)
MIN_GAIN = 0.05  # C7's smallest effect: SSA's exact match at the longest length above vanilla's by this much
C8_SEEDS = 8  # C8's rule needs this many seeds per model
C8_MIN_STEPS = 500  # ... and a task vanilla takes at least this many steps (KM median) to learn
C8_EFFECT = 0.9  # C8's declared effect: SSA's median steps at most 0.9 of vanilla's
LEARNED = 0.95  # a model has learned the task when its exact match at the training length is at least this


@dataclass(frozen=True)
class PasskeyConfig(TrainingConfig):
    """Settings of ``passkey``; the defaults are the default preset (its time: benchmarks/RESULTS.md)."""

    digits: tuple[int, ...] = (1,)  # passkey lengths d, one grid cell each (5 digits: see paper_repro.md)
    n_filler: int = 8  # filler token types
    decoys: int = 2  # decoy blocks in the filler: a DECOY marker and d digits that are not the passkey
    n_min: int = 32  # training lengths n_min..n_max (tokens, answer included), uniform per step
    n_max: int = 128
    eval_lengths: tuple[int, ...] = (128, 512, 1024, 4096)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # needle depth, a fraction of the filler
    n_eval: int = 16  # contexts per (length, depth) and member: 240 per length over 5 depths and 3 seeds
    strategies: tuple[str, ...] = variant_field(STRATEGIES)
    # also trained with scores bound * cos(q, k) (QK-norm at a fixed scale)
    bounded: tuple[str, ...] = variant_field(BOUNDED)
    bound: float = 4.0  # the cosine geometry's scale s: every score in [-s, s], a needle's gap at most 2s
    placebo: bool = True  # also train the vanilla twin (PLACEBO), in each geometry, read against vanilla by C7 and C8
    # seeds of C8's models (vanilla, SSA and the twin, free geometry) from the run's first; C8 needs 8
    learn_seeds: int = 3
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    conv: int = 2  # causal convolution taps (local order; no position embedding)
    task_seed: int = 0  # the length schedule is the task: fixed across member seeds
    accuracy_target: float = 0.9  # C8's fixed target: the monitor's exact match, crossing interpolated
    n_monitor: int = 64  # monitor contexts per member, at n_max
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    log_every: int = 20  # the monitor every log_every steps, when n_logs is 0
    n_logs: int = 40  # the monitor at this many log-spaced steps (0: every log_every)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.digits) >= 1 and all(d >= 1 for d in self.digits), f"digits must be >= 1 (got {self.digits})")
        require(self.n_filler >= 1, f"n_filler must be >= 1 (got {self.n_filler})")
        require(self.decoys >= 0, f"decoys must be >= 0 (got {self.decoys})")
        least = 2 * max(self.digits) + 3 + self.decoys * (max(self.digits) + 1)
        require(least <= self.n_min <= self.n_max,
                f"need {least} <= n_min <= n_max (got {self.n_min}, {self.n_max}): a sequence holds the "
                "needle, the decoys, the query and the answer")
        require(len(self.eval_lengths) >= 1 and min(self.eval_lengths) >= self.n_max,
                f"eval_lengths must be >= n_max = {self.n_max}, the longest training length (got {self.eval_lengths})")
        require(max(self.eval_lengths) <= 16384,
                f"eval_lengths above 16384 would not fit (got {max(self.eval_lengths)})")
        require(len(self.depths) >= 1 and all(0 <= d <= 1 for d in self.depths),
                f"depths must lie in [0, 1] (got {self.depths})")
        lm.check_model_fields(self)
        for s in self.bounded:
            require(s in self.strategies,
                    f"bounded names {s!r}, which is not among the strategies; add it there or drop it")
        require(self.bound > 0, f"bound must be > 0 (got {self.bound})")
        require(self.learn_seeds >= 1, f"learn_seeds must be >= 1 (got {self.learn_seeds})")
        require(self.n_logs == 0 or self.n_logs >= 2, f"n_logs must be 0 or >= 2 (got {self.n_logs})")
        require(0 < self.accuracy_target <= 1, f"accuracy_target must lie in (0, 1] (got {self.accuracy_target})")

    @property
    def vocab(self) -> int:
        return DIGITS + self.n_filler + 3  # digits, filler, KEY, QUERY, DECOY

    @property
    def decoy(self) -> int:
        return DIGITS + self.n_filler + 2

    @property
    def key(self) -> int:
        return DIGITS + self.n_filler

    @property
    def query(self) -> int:
        return DIGITS + self.n_filler + 1

    @property
    def lengths(self) -> tuple[int, ...]:
        """Evaluation lengths, the longest training length first (the retrieval head is found there)."""
        return tuple(sorted({self.n_max, *self.eval_lengths}))

    def shape(self, variant, bounded: bool = False) -> lm.LMShape:
        return lm.LMShape(vocab=self.vocab, variant=variant, d_model=self.d_model, n_layers=self.n_layers,
                          n_heads=self.n_heads, d_mlp=2 * self.d_model, conv=self.conv, train_length=self.n_max,
                          score="cosine" if bounded else "dot", score_bound=self.bound if bounded else None)

    def log_steps(self) -> list[int] | None:
        """The steps after which the monitor is scored (besides 0 and the last): ``n_logs`` log-spaced
        from 1 to ``steps``, or None (every ``log_every``) when ``n_logs`` is 0."""
        if not self.n_logs:
            return None
        return sorted({int(round(x)) for x in np.geomspace(1, self.steps, self.n_logs)})


# --- data ----------------------------------------------------------------------------------------


def sequences(cfg: PasskeyConfig, g: torch.Generator, count: int, n: int, d: int,
              depth: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` sequences of n tokens with a d-digit passkey (CPU): tokens (count, n) and the needle's
    start (count,) (the KEY's index). The body before the QUERY is filler with ``cfg.decoys + 1``
    blocks inserted: the needle (KEY and the d digits) and the decoys (DECOY and d other random
    digits), each at a uniformly drawn point of the filler, the needle's at ``depth`` (a fraction of
    the filler; None: uniform); then QUERY and the d digits again. A diluted read mixes the decoys'
    digits with the needle's, and a read of the wrong block returns a wrong digit.

    Example (n = 16, d = 2, one decoy): ``f f K 4 7 f f D 1 9 f f f Q 4 7``."""
    blocks = cfg.decoys + 1
    n_fill = n - 2 * d - 2 - cfg.decoys * (d + 1)
    filler = torch.randint(DIGITS, DIGITS + cfg.n_filler, (count, n_fill), generator=g)
    digits = torch.randint(0, DIGITS, (count, blocks, d), generator=g)  # block 0: the passkey
    points = torch.randint(0, n_fill + 1, (count, blocks), generator=g)  # insertion points in the filler
    if depth is not None:
        points[:, 0] = int(round(depth * n_fill))
    # the body (n - d - 1 tokens): filler token f lands after the blocks inserted at or before it
    order = torch.argsort(points * blocks + torch.arange(blocks), dim=1)  # by point; the needle first on ties
    sorted_points = points.gather(1, order)
    rank = torch.argsort(order, dim=1)  # the place of each block among the inserted ones
    block_start = sorted_points.gather(1, rank) + rank * (d + 1)  # (count, blocks): each block's first index
    body = n - d - 1
    tokens = torch.empty(count, n, dtype=torch.long)
    j = torch.arange(body)[None, :]
    in_block = torch.zeros(count, body, dtype=torch.bool)
    for b in range(blocks):
        off = j - block_start[:, b:b + 1]
        here = (off >= 0) & (off <= d)
        marker = cfg.key if b == 0 else cfg.decoy
        value = torch.where(off == 0, torch.tensor(marker), digits[:, b].gather(1, (off - 1).clamp(0, d - 1)))
        tokens[:, :body] = torch.where(here, value, tokens[:, :body]) if b else torch.where(here, value, 0)
        in_block |= here
    fill_index = (~in_block).long().cumsum(1) - 1  # filler tokens in order, skipping the blocks
    tokens[:, :body] = torch.where(in_block, tokens[:, :body], filler.gather(1, fill_index.clamp(0, n_fill - 1)))
    tokens[:, body] = cfg.query
    tokens[:, body + 1:] = digits[:, 0]
    return tokens, block_start[:, 0]


def train_lengths(cfg: PasskeyConfig) -> list[int]:
    """The length of every training step: the task's own stream, identical for every member."""
    return step_lengths(cfg.task_seed, cfg.n_min, cfg.n_max, cfg.steps)


def member_digits(cfg: PasskeyConfig, members: Members) -> list[int]:
    return [cfg.digits[c] for c in members.cells]


def _batch(cfg: PasskeyConfig, gens, ds, count: int, n: int, depth: float | None = None):
    """tokens (E, count, n) and needle starts (E, count): member e draws from ``gens[e]`` with ``ds[e]`` digits."""
    parts = [sequences(cfg, g, count, n, d, depth) for g, d in zip(gens, ds)]
    return torch.stack([t for t, _ in parts]), torch.stack([s for _, s in parts])


def answer_mask(n: int, ds) -> torch.Tensor:
    """(E, n - 1): the input positions whose next token is an answer digit (member e: the last ds[e])."""
    j = torch.arange(n - 1)[None, :]
    d = torch.as_tensor(ds)[:, None]
    return j >= (n - 1 - d)


# --- training ------------------------------------------------------------------------------------


def train(spec: ModelSpec, cfg: PasskeyConfig, members: Members, ctx: RunContext, init: str = "init",
          bounded: bool = False) -> Trained:
    """Train one strategy for every (d, seed) member at once (initialised from the ``init`` stream; in
    the cosine geometry when ``bounded``); then measure it (``evaluate``)."""
    net, hist = _fit(spec, cfg, members, ctx, init, bounded)
    return Trained(spec, members, evaluate(net, cfg, members, ctx.device), hist)


def _fit(spec: ModelSpec, cfg: PasskeyConfig, members: Members, ctx: RunContext, init: str = "init",
         bounded: bool = False):
    ds, gens, lengths = member_digits(cfg, members), members.generators("data"), train_lengths(cfg)
    mon_tokens, _ = _batch(cfg, members.generators("eval"), ds, cfg.n_monitor, cfg.n_max)

    def batch(step: int):
        n = lengths[step]
        return _batch(cfg, gens, ds, cfg.batch_size, n)[0], answer_mask(n, ds)

    return lm.fit_members(cfg.shape(spec.resolved, bounded), members, ctx, batch=batch,
                          monitor=(mon_tokens, answer_mask(cfg.n_max, ds)), steps=cfg.steps, lr=cfg.lr,
                          log_every=cfg.log_every, label=spec.label, token_freq=token_frequencies(cfg), init=init,
                          log_at=cfg.log_steps())


def token_frequencies(cfg: PasskeyConfig) -> torch.Tensor:
    """Each token's expected share of the training tokens (V,), for the ``freq`` strategy: over lengths
    n uniform on n_min..n_max and the first passkey length d, with k decoys, a sequence holds
    (2 + k) d digits (uniform), one KEY, one QUERY, k DECOYs and the rest filler (uniform over its types)."""
    d, k = cfg.digits[0], cfg.decoys
    inv = np.mean([1.0 / n for n in range(cfg.n_min, cfg.n_max + 1)])  # E[1/n]
    f = torch.zeros(cfg.vocab)
    f[:DIGITS] = (2 + k) * d * inv / DIGITS
    f[cfg.key] = f[cfg.query] = inv
    f[cfg.decoy] = k * inv
    f[DIGITS:cfg.key] = (1 - ((2 + k) * d + 2 + k) * inv) / cfg.n_filler
    return f


@torch.no_grad()
def evaluate(net: lm.Ensemble, cfg: PasskeyConfig, members: Members, device) -> dict[str, np.ndarray]:
    """Accuracy (E, lengths, depths) and the contexts retrieved (``hits``, same shape; ``n_eval`` each);
    at the read, the retrieval head's needle mass and its logit gaps, the needle block against the
    mean and against the largest other visible token (``gap_mean``, ``gap_max``; (E, lengths)); the
    closed form from the training-length mass with the logits held fixed (``needle_mass_pred``) and
    scaled by the strategy's own temperature law (``needle_mass_law``, ``law_ratio``); the learned
    temperatures. Each (length, depth) draws its contexts from its own sub-stream of the ``eval``
    stream (keys n and the depth's index)."""
    ds = member_digits(cfg, members)
    E, L, Dp = len(members), len(cfg.lengths), len(cfg.depths)
    acc = np.zeros((E, L, Dp))
    hits = np.zeros((E, L, Dp), dtype=np.int64)
    mass, gap_mean, gap_max = (np.zeros((E, L)) for _ in range(3))
    head = None
    for i, n in enumerate(cfg.lengths):
        parts = []
        for j, depth in enumerate(cfg.depths):
            gens = members.generators("eval", n, j)
            tokens, start = _batch(cfg, gens, ds, cfg.n_eval, n, depth)
            tokens = tokens.to(device)
            reads = sorted({n - 1 - d for d in ds})  # the QUERY's index in the input (tokens[:-1]), per d
            logits, w = net(tokens[..., :-1], read=torch.tensor(reads, device=device))
            _, wrong, _ = lm.scored(logits, tokens, answer_mask(n, ds).to(device))
            hits[:, i, j] = (wrong == 0).sum(1).cpu().numpy()
            acc[:, i, j] = hits[:, i, j] / cfg.n_eval  # exact match
            parts.append(read_gaps(w, start.to(device), ds, reads))  # 3 x (E, layers, heads, contexts)
        m, g_mean, g_max = (torch.cat(v, -1).mean(-1).reshape(E, -1) for v in zip(*parts))  # (E, layers x heads)
        if head is None:  # the first length is the training length: fix each member's retrieval head there
            head = m.argmax(1)
        pick = lambda t: t.gather(1, head[:, None])[:, 0].cpu().numpy()  # noqa: E731
        mass[:, i], gap_mean[:, i], gap_max[:, i] = pick(m), pick(g_mean), pick(g_max)
    ratio = law_ratio(cfg, net, head.cpu().numpy(), ds)
    return {"acc": acc, "hits": hits, "needle_mass": mass, "needle_mass_pred": predicted_mass(cfg, ds, mass[:, 0]),
            "needle_mass_law": predicted_mass(cfg, ds, mass[:, 0], ratio), "law_ratio": ratio, "gap_mean": gap_mean, "gap_max": gap_max,
            "head": head.cpu().numpy(), **lm.temperature_arrays(net)}


def law_ratio(cfg: PasskeyConfig, net: lm.Ensemble, head: np.ndarray, ds) -> np.ndarray:
    """``tau_q(n) / tau_q(n0)`` at the read (E, lengths): the query-side temperature law of the strategy,
    for each member's retrieval head (``head``: layer x heads + head), from the layer plan's readout
    (``LayerPlan.law``: the strategies that declare they read only n, the positions and the train
    length) at the read's position and key count ``n - d`` (the read sees the keys before it), with
    the member's learned per-head scalars. SSA's token term reads the token, not n, and is left out:
    for ``ssa`` the law is its position term's, ``1 + sigmoid(alpha) log n``; so is any factor whose
    formula reads the query, the projections or the key frequencies (``asentmax``, ``freq``). 1 for
    vanilla."""
    from ssa_theory.plan import LAW

    E, H = len(head), cfg.n_heads
    taus = np.ones((E, len(cfg.lengths)))
    params = net._params()
    for e in range(E):
        layer, h = divmod(int(head[e]), H)
        plan = net._base[0].blocks[layer].attn.plan
        prefix = f"blocks.{layer}.attn.temp."
        found = {k[len(prefix):]: v[e:e + 1].detach().cpu().float() for k, v in params.items() if k.startswith(prefix)}

        def tau_at(n: int) -> float:
            seen = torch.tensor(float(n - ds[e]))  # the keys the read sees; its 0-based position is one less
            tau = plan.readout(found, "q", torch.zeros(1, 1, 1, cfg.d_model), which=LAW,
                               positions=torch.tensor(n - ds[e] - 1).reshape(1, 1, 1), n=seen.reshape(1, 1, 1, 1))
            return 1.0 if tau is None else float(torch.broadcast_to(tau, (1, 1, H, 1))[0, 0, h, 0])

        taus[e] = [tau_at(n) for n in cfg.lengths] if plan.law("q") else 1.0
    return taus / taus[:, :1]


def read_gaps(w: torch.Tensor, start: torch.Tensor, ds, reads) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At each member's read row, per layer, head and context (E, layers, heads, B): the needle's mass
    (KEY and d digits), and its logit gap as one key, ``log(needle mass)`` minus the
    mean and minus the largest log weight of the other keys the read sees (softmax's normaliser
    cancels in the difference)."""
    E, _, B, _, _, Lk = w.shape
    row = torch.tensor([reads.index(Lk - d) for d in ds], device=w.device)
    wr = w[torch.arange(E, device=w.device), :, :, :, row].double()  # (E, layers, B, H, Lk)
    j = torch.arange(Lk, device=w.device)
    d = torch.as_tensor(ds, device=w.device)[:, None, None]
    on = (j >= start[..., None]) & (j <= start[..., None] + d)  # (E, B, Lk)
    seen = j[None, None, :] <= (Lk - d)  # the read row sees the keys up to itself
    other = (seen & ~on)[:, None, :, None, :]
    mass = (wr * on[:, None, :, None, :]).sum(-1)
    logw = torch.log(wr.clamp_min(1e-300))
    mean_other = (logw * other).sum(-1) / other.sum(-1).clamp_min(1)
    max_other = logw.masked_fill(~other, -math.inf).amax(-1)
    lm_ = torch.log(mass.clamp_min(1e-300))
    out = (mass, lm_ - mean_other, lm_ - max_other)
    return tuple(t.permute(0, 1, 3, 2).float() for t in out)


def predicted_mass(cfg: PasskeyConfig, ds, mass0: np.ndarray, ratio: np.ndarray | None = None) -> np.ndarray:
    """The closed form (E, lengths): the needle's k = d + 1 tokens as one key whose share at the
    training length n0 is the measured ``mass0``, among n - k distractors, its logit gap held fixed
    (``ratio`` None) or scaled by ``ratio`` (E, lengths; the strategy's temperature law, ``law_ratio``):
    ``theory.dilution_mass(n - k + 1, ratio * theory.effective_gap(mass0, n0 - k + 1))``."""
    k = np.asarray(ds, dtype=float) + 1
    gap = theory.effective_gap(np.clip(mass0, 1e-12, 1 - 1e-12), cfg.lengths[0] - k + 1)
    r = np.ones((len(k), len(cfg.lengths))) if ratio is None else np.asarray(ratio, dtype=float)
    return np.stack([theory.dilution_mass(n - k + 1, gap * r[:, i]) for i, n in enumerate(cfg.lengths)], 1)


# --- run -----------------------------------------------------------------------------------------


def model_keys(cfg: PasskeyConfig) -> list[str]:
    """Every model a run trains: the strategies and the placebo twin in the free geometry, then
    ``COSINE + name`` for the bounded strategies and their twin."""
    twin = [PLACEBO] if cfg.placebo else []
    return lm.model_keys(cfg) + [COSINE + s for s in (*cfg.bounded, *twin)]


def split_key(key: str) -> tuple[str, str]:
    """(geometry, strategy or PLACEBO) of a model key."""
    return ("cosine", key[len(COSINE):]) if key.startswith(COSINE) else ("dot", key)


def c8_model(cfg: PasskeyConfig, key: str) -> bool:
    """Whether a model is one of C8's (vanilla, SSA and the twin in the free geometry): those train ``learn_seeds`` seeds."""
    return key in ("vanilla", "ssa", PLACEBO) and key in model_keys(cfg)


def model_seeds(cfg: PasskeyConfig, key: str, seeds) -> list[int]:
    """The run's seeds, or for C8's models ``learn_seeds`` seeds from the run's first (if that is more)."""
    seeds = list(seeds)
    if c8_model(cfg, key) and cfg.learn_seeds > len(seeds):
        return [seeds[0] + i for i in range(cfg.learn_seeds)]
    return seeds


def model_weight(cfg: PasskeyConfig, key: str) -> float:
    """A model's share of the time, for scheduling: C8's models train more seeds."""
    return 2.0 if c8_model(cfg, key) and cfg.learn_seeds > 3 else 1.0


def train_model(cfg: PasskeyConfig, key: str, ctx: RunContext) -> Trained:
    """One model of ``model_keys``, for its members (``model_seeds``)."""
    geometry, name = split_key(key)
    spec, init = lm.model_spec(cfg, name)
    if geometry != "dot":
        spec = ModelSpec(key, spec.resolved)
    members = Members.grid(cfg.digits, model_seeds(cfg, key, ctx.seeds), lambda d: f"d={d}")
    return train(spec, cfg, members, ctx, init, bounded=geometry != "dot")


def run(cfg: PasskeyConfig, ctx: RunContext) -> None:
    trained = cells.trained(EXPERIMENT, cfg, ctx)  # each model its own run directory (reproduce spreads them)
    write_results(ctx, measure(cfg, ctx.seeds, trained))


def _first(t: Trained, seeds) -> Trained:
    """The members of the run's own seeds (a C8 model trains more; the tables compare every model on these)."""
    return t.select(np.isin(np.asarray(t.members.seeds), list(seeds))) if set(t.members.seeds) - set(seeds) else t


def measure(cfg: PasskeyConfig, seeds, trained: Mapping[str, Trained]) -> Results:
    """The tables: exact match and the read's needle mass, gaps and closed forms by length (each model on
    the run's seeds), C8's steps to the target (C8's models on all their seeds), the summary per model,
    the learned temperatures, metrics.json."""
    results = Results()
    results.frames["curves"] = pd.DataFrame([
        {"strategy": s, "digits": cfg.digits[c], "seed": seed, "step": int(step),
         "loss": float(t.history["loss"][i, e]), "acc": float(t.history["exact"][i, e])}
        for s, t in trained.items() for e, (c, seed) in enumerate(zip(t.members.cells, t.members.seeds))
        for i, step in enumerate(t.history["step"])])
    table = {s: _first(t, seeds) for s, t in trained.items()}
    results.frames["grid"] = pd.DataFrame([
        {"strategy": s, "digits": cfg.digits[c], "seed": seed, "n": n, "depth": depth, "acc": float(t["acc"][e, i, j])}
        for s, t in table.items() for e, (c, seed) in enumerate(zip(t.members.cells, t.members.seeds))
        for i, n in enumerate(cfg.lengths) for j, depth in enumerate(cfg.depths)])
    results.table("by_length", _by_length(cfg, table), ci=["acc", "needle_mass"])
    learn = time_to_learn(cfg, {s: t for s, t in trained.items() if c8_model(cfg, s)})
    results.table("time_to_learn", learn)
    results.table("strategies", _summary(cfg, table), ci=["acc_train", "acc_max"])
    results.table("temperatures", lm.temperature_table(table))
    results.metrics = _metrics(cfg, seeds, table, learn)
    return results


def _by_length(cfg, trained) -> pd.DataFrame:
    rows = []
    for s, t in trained.items():
        for c, d in enumerate(cfg.digits):
            idx = t.members.in_cell(c)
            for i, n in enumerate(cfg.lengths):
                k, total = int(t["hits"][idx, i].sum()), int(idx.sum()) * len(cfg.depths) * cfg.n_eval
                pooled, lo, hi = binomial_ci(k, total)
                rows.append({"strategy": s, "geometry": split_key(s)[0], "digits": d, "n": n,
                             **ci_columns("acc", t["acc"][idx, i].mean(1)),
                             "contexts": total, "retrieved": k, "acc_exact_lo": lo, "acc_exact_hi": hi,
                             **ci_columns("needle_mass", t["needle_mass"][idx, i]),
                             "needle_mass_pred": float(t["needle_mass_pred"][idx, i].mean()),
                             "needle_mass_law": float(t["needle_mass_law"][idx, i].mean()),
                             "law_ratio": float(t["law_ratio"][idx, i].mean()),
                             "gap_mean": float(t["gap_mean"][idx, i].mean()), "gap_max": float(t["gap_max"][idx, i].mean())})
    return pd.DataFrame(rows)


def steps_to_target(steps, values, target: float) -> tuple[float, bool]:
    """The first step at which ``values`` reach ``target``, linearly interpolated between the two logged
    steps around the crossing, and True; or the last logged step and False (censored) if never."""
    steps, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    hit = np.nonzero(v >= target)[0]
    if not hit.size:
        return float(steps[-1]), False
    i = hit[0]
    if i == 0:
        return float(steps[0]), True
    t = (target - v[i - 1]) / (v[i] - v[i - 1])
    return float(steps[i - 1] + t * (steps[i] - steps[i - 1])), True


def time_to_learn(cfg: PasskeyConfig, trained: Mapping[str, Trained]) -> pd.DataFrame:
    """C8, per model and passkey length: the steps each seed needs to reach ``accuracy_target`` exact match
    on the monitor (interpolated; a seed that never does is censored at the last step), and the
    Kaplan-Meier median over seeds with its 95% interval (``stats.survival``), the censored count,
    and the per-seed steps."""
    rows = []
    for s, t in trained.items():
        for c, d in enumerate(cfg.digits):
            idx = np.nonzero(t.members.in_cell(c))[0]
            hit = [steps_to_target(t.history["step"], t.history["exact"][:, e], cfg.accuracy_target) for e in idx]
            steps, reached = np.array([h[0] for h in hit]), np.array([h[1] for h in hit])
            km = survival(steps, reached)
            rows.append({"strategy": s, "digits": d, "median_steps": km["median"], "median_lo": km["lo"],
                         "median_hi": km["hi"], "censored": km["censored"], "seeds": km["seeds"],
                         "per_seed_steps": " ".join(f"{x:.0f}" + ("" if r else "+") for x, r in zip(steps, reached))})
    return pd.DataFrame(rows)


def _summary(cfg, trained) -> pd.DataFrame:
    rows = []
    for s, t in trained.items():
        for c, d in enumerate(cfg.digits):
            idx = t.members.in_cell(c)
            a0, a1 = t["acc"][idx, 0].mean(1), t["acc"][idx, -1].mean(1)
            rows.append({"strategy": s, "geometry": split_key(s)[0], "digits": d, **ci_columns("acc_train", a0),
                         **ci_columns("acc_max", a1), "learned": bool(np.all(a0 >= LEARNED)),
                         "needle_mass_train": float(t["needle_mass"][idx, 0].mean()),
                         "needle_mass_max": float(t["needle_mass"][idx, -1].mean()),
                         "needle_mass_max_pred": float(t["needle_mass_pred"][idx, -1].mean()),
                         "needle_mass_max_law": float(t["needle_mass_law"][idx, -1].mean()),
                         "gap_train": float(t["gap_mean"][idx, 0].mean()), "gap_max_len": float(t["gap_mean"][idx, -1].mean()),
                         "per_seed_acc_max": " ".join(f"{x:.3g}" for x in a1)})
    return pd.DataFrame(rows)


def _metrics(cfg, seeds, trained, learn) -> dict:
    out = {"lengths": list(cfg.lengths), "train_lengths": [cfg.n_min, cfg.n_max], "digits": list(cfg.digits),
           "seeds": list(seeds), "bound": cfg.bound, "accuracy_target": cfg.accuracy_target, "strategies": {}}
    for s, t in trained.items():
        out["strategies"][s] = {str(d): {
            "acc_train": t["acc"][t.members.in_cell(c), 0].mean(1), "acc_max": t["acc"][t.members.in_cell(c), -1].mean(1),
        } for c, d in enumerate(cfg.digits)}
    out["time_to_learn"] = learn.to_dict("records") if len(learn) else []
    return out


# --- claims --------------------------------------------------------------------------------------


def retrieval_rule(van: Mapping[str, np.ndarray],
                   other: Mapping[str, np.ndarray]) -> tuple[str, tuple[float, float, float]]:
    """C7's rule, stated before the data, on per-seed exact match at the training length (``acc_train``)
    and the longest length (``acc_max``); returns the verdict and the paired difference other - vanilla
    at the longest length with its 95% interval:
    - fewer than two seeds: ``ONE_SEED``;
    - "not testable" when a model did not learn the task (exact match below ``LEARNED`` at the training
      length), or when vanilla's accuracy at the longest length leaves less headroom than the declared
      effect ``MIN_GAIN`` (no gain of that size is possible);
    - "reproduced" when ``other`` exceeds vanilla by at least ``MIN_GAIN``, the paired CI above 0;
    - "not reproduced" otherwise."""
    a, b = np.asarray(other["acc_max"], dtype=float), np.asarray(van["acc_max"], dtype=float)
    n = min(a.size, b.size)  # a model with more seeds (C8's) is paired on the run's own
    a, b = a[:n], b[:n]
    diff = paired(a, b)
    if b.size < 2:
        return ONE_SEED, diff
    if min(np.min(van["acc_train"]), np.min(other["acc_train"])) < LEARNED:
        return "not testable: a model did not learn the task at the training length", diff
    if 1 - b.mean() < MIN_GAIN:
        return f"not testable: vanilla retrieves {b.mean():.3f} at the longest length, less headroom than {MIN_GAIN:g}", diff
    return ("reproduced" if diff[0] >= MIN_GAIN and diff[1] > 0 else "not reproduced"), diff


def steps_rule(van: Mapping[str, float] | None,
               other: Mapping[str, float] | None) -> tuple[str, tuple[float, float, float]]:
    """C8's rule, stated before the data, on two ``time_to_learn`` rows (Kaplan-Meier medians of the steps
    to the fixed target, censored seeds kept); returns the verdict and the ratio of medians other /
    vanilla with the ratio of the intervals' far ends (other's low over vanilla's high, other's high
    over vanilla's low):
    - "not testable" with fewer than ``C8_SEEDS`` seeds a model, when vanilla's median is below
      ``C8_MIN_STEPS`` (a task learned that fast cannot show a 10% difference at this monitor), or
      when vanilla did not reach the target on half its seeds (no median);
    - "reproduced" when the other model's median is at most ``C8_EFFECT`` times vanilla's and the two
      intervals are disjoint (its high below vanilla's low);
    - "not reproduced" when the other model is slower, the intervals disjoint (its low above vanilla's high);
    - "no clear difference" otherwise."""
    nan = (math.nan, math.nan, math.nan)
    if van is None or other is None:
        return "not testable: no time-to-learn run", nan
    v, o = van, other
    ratio = (o["median_steps"] / v["median_steps"], o["median_lo"] / v["median_hi"], o["median_hi"] / v["median_lo"])
    seeds, why = min(v["seeds"], o["seeds"]), []
    if seeds < C8_SEEDS:
        why.append(f"{seeds} seeds, the rule needs {C8_SEEDS}")
    if not math.isfinite(v["median_steps"]):
        why.append("vanilla reached the target on fewer than half its seeds")
    elif v["median_steps"] < C8_MIN_STEPS:
        why.append(f"vanilla learns in {v['median_steps']:.0f} steps (median), under {C8_MIN_STEPS}")
    if why:
        return "not testable: " + "; ".join(why), ratio
    if o["median_steps"] <= C8_EFFECT * v["median_steps"] and o["median_hi"] < v["median_lo"]:
        return "reproduced", ratio
    if o["median_lo"] > v["median_hi"]:
        return "not reproduced", ratio
    return "no clear difference", ratio


def claims(exported: Path) -> list[Claim]:
    """C7 (``retrieval_rule``) in each geometry and C8 (``steps_rule``) from ``metrics.json``, at the
    longest passkey (largest d): SSA against vanilla, and the placebo twin against vanilla by the same
    rules."""
    m = read_json(Path(exported) / "metrics.json")
    d = str(max(m["digits"]))
    st = m["strategies"]
    n1, n0 = max(m["lengths"]), m["train_lengths"][1]
    out = []
    for geometry, prefix, cid in (("free dot product", "", "C7"),
                                  (f"cosine, bound {m.get('bound', 0):g}", COSINE, "C7b")):
        van, ssa, twin = (st.get(prefix + k, {}).get(d) for k in ("vanilla", "ssa", PLACEBO))
        if van is None or ssa is None:
            continue
        verdict, (diff, lo, hi) = retrieval_rule(van, ssa)
        out.append(Claim(cid, "passkey", "SSA improves passkey retrieval",
                         f"exact match at n = {n1}, SSA - vanilla ({d}-digit passkey among decoys; {geometry}; trained on n <= {n0})",
                         diff, lo, hi, verdict, retrieval_rule(van, twin)[0] if twin else ""))

    def learn_row(name):  # a median or bound never reached is inf, which JSON keeps as null
        rows = [r for r in m["time_to_learn"] if r["strategy"] == name and str(r["digits"]) == d]
        return {k: math.inf if v is None else v for k, v in rows[0].items()} if rows else None

    verdict, (ratio, lo, hi) = steps_rule(learn_row("vanilla"), learn_row("ssa"))
    twin = learn_row(PLACEBO)
    out.append(Claim("C8", "passkey", "SSA reaches vanilla's loss with fewer training tokens",
                     f"Kaplan-Meier median steps to {m.get('accuracy_target', 0.9):g} exact match, SSA / vanilla ({d}-digit passkey)",
                     ratio, lo, hi, verdict, steps_rule(learn_row("vanilla"), twin)[0] if twin else ""))
    return out


def ablate(cfg: PasskeyConfig, variant, ctx: RunContext) -> np.ndarray:
    """The ablation's cell: ``variant`` trained on lengths n_min..n_max with the first passkey length;
    per seed, the fraction of passkeys it misses at the longest evaluation length (0 is perfect), and
    whether it learned the task (exact match at least ``LEARNED`` at the training length)."""
    members = Members.grid(cfg.digits[:1], ctx.seeds, lambda d: f"d={d}")
    net, _ = _fit(ModelSpec.of(variant), cfg, members, ctx)
    acc = evaluate(net, cfg, members, ctx.device)["acc"].mean(2)  # (E, lengths): the training length first
    return {"value": 1.0 - acc[:, -1], "learned": (acc[:, 0] >= LEARNED).astype(float)}


EXPERIMENT = Experiment(
    name="passkey",
    version="3",  # 3: decoys, the bounded (cosine) arm, C8 on a fixed target with censored seeds, gaps and the law
    claim="LM claims: SSA improves passkey retrieval past the training length (C7) and learns faster (C8)",
    config=PasskeyConfig,
    run=run,
    plot=figures("ssa_theory.experiments.passkey_plots", "haystack", "accuracy_and_mass", "curves"),
    headline="strategies",
    claims=claims,
    presets=lm.presets(13.0, quick={"steps": 40, "eval_lengths": (64, 128), "depths": (0.5,), "n_eval": 4,
                                   "strategies": ("vanilla", "ssa"), "bounded": ("vanilla", "ssa"), "n_monitor": 8,
                                   "n_logs": 8, "n_min": 24, "n_max": 64, "learn_seeds": 3},
                       gpu={"digits": (1, 5), "d_model": 128, "n_layers": 4, "n_heads": 4, "steps": 4000,
                            "batch_size": 64, "eval_lengths": (128, 1024, 4096, 16384), "n_eval": 32, "learn_seeds": 8}),
    ablation=Ablation("passkeys missed at n = 4096, trained on n <= 128 (1 digit)", "0: every passkey retrieved",
                      ablate,
                      overrides={"steps": 300, "digits": (1,), "eval_lengths": (128, 4096), "depths": (0.5,), "n_eval": 8},
                      quick={"steps": 40, "eval_lengths": (64, 256), "n_min": 24, "n_max": 64, "n_monitor": 8, "n_logs": 8},
                      bounded=True, minutes=0.8),
    models=Models(model_keys, train_model, model_weight),
)
