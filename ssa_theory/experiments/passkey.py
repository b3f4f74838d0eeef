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
scores (``strategies``: C7) and with scores ``bound * cos(q, k)`` (model keys ``COSINE + name``:
C7b): there no gap between two keys exceeds ``2 bound`` unless a temperature multiplies it. The
temperature parameters train at ``temp_lr_factor`` times the rate (the authors' released code trains
its temperature scalar at its own rate; under one shared rate a position term from alpha = -4 barely
moves in 400 steps). No parameter pays a penalty.

C7b's controls (``model_keys``): in the bounded geometry the strategies of ``bounded``, the position
term alone from a second start (``pos_starts``: sigmoid(-2) = 0.12), vanilla at the matched range
(``matched_bound``: a static range as wide as SSA's learned scale reaches) and vanilla and SSA at a
second bound (the sensitivity row), each beside the placebo twin (vanilla from another
initialisation). Two readings, each with its own rule: the outcome (exact match at the longest
length, ``retrieval_rule``) and the mechanism (the slope of the needle's logit gap on log n,
``gap_slopes``, against the matched-range control's: ``slope_rule``); ``arms`` tabulates both per
model, with the learned position coefficient.

Evaluation: exact match on a grid of lengths up to 32x the longest training length and of needle
depths; and at the read (the QUERY position), for the retrieval head (per member, the layer and head
that pays the needle most at the training length): its attention on the needle, its logit gaps
against the mean and the largest other token, and the dilution closed form from its training-length
mass with the logits held fixed, and scaled by the strategy's own temperature law (``law_ratio``,
from the strategy table).

Time to learn (C8) on a task of its own that vanilla takes at least 500 steps to learn
(``learn_task``: a 2-digit passkey on lengths 32..64, batch 16, lr 6e-4, 2500 steps): vanilla, SSA
and the twin, each seed on the same data stream; the monitor is scored every ``learn_log_every``
steps; per seed, the step at which exact match first reaches ``accuracy_target`` (interpolated),
censored when never; C8's rule reads the per-seed log ratios (``steps_rule``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ssa_theory import cells, lm, theory
from ssa_theory.claims import ONE_SEED, Above, Claim, calibrate, gated, paired
from ssa_theory.config import TrainingConfig, ranged, require, variant_field
from ssa_theory.registry import Ablation, Experiment, Models
from ssa_theory.rundir import RunContext, read_json
from ssa_theory.seeding import Members, step_lengths
from ssa_theory.skeleton import ModelSpec, Results, Trained, figures, write_results
from ssa_theory.stats import binomial_ci, ci_columns, mean_ci, rate_columns, survival

STRATEGIES = ("vanilla", "ssa")  # the free geometry: there vanilla retrieves 0.96 at 32x (C7 has no headroom)
# the strategies trained in the bounded geometry: global beside SSA, so that a fixed sharper scale and a
# temperature that grows with n are told apart (as C5 does), and SSA's position term alone
BOUNDED = ("vanilla", "global", "log_n", "ssa_q_pos", "ssa")
DIGITS = 10  # tokens 0..9 are the digits
PLACEBO = lm.PLACEBO
SSA_SCRAMBLED = lm.SSA_SCRAMBLED  # C7b's and C8's placebo that can fail
COSINE = "cosine:"  # the key prefix of a model in the bounded geometry: COSINE + strategy (or PLACEBO)
LEARN = "learn:"  # the key prefix of C8's models: LEARN + strategy (or PLACEBO), on C8's own task
ALPHA_INIT = -4.0  # where a position term starts unless its key says otherwise (sigmoid(-4) = 0.018)

# --- the rules' constants, fixed before the data they judge (paper_repro.md names the commit) -------------
# Each rule has a threshold its point estimate must reach (besides an interval that excludes no effect) and a
# declared effect, twice the threshold, at which its power is computed: at its own threshold no rule of this
# form can have power above 50%.
MIN_GAIN = 0.05  # C7's threshold: SSA's exact match at the longest length above the control's by this much
GAIN_EFFECT = 0.10  # C7's declared effect (power)
MIN_SLOPE = 0.25  # C7b's mechanism: the needle's logit gap grows by this much (nats) per unit log n more than the control's
SLOPE_EFFECT = 0.5  # ... its declared effect (power)
C8_SEEDS = 8  # C8's rule needs this many seeds per model
C8_MIN_STEPS = 500  # ... and a task vanilla takes at least this many steps (median) to learn
C8_MIN = 1.1  # C8's threshold: SSA reaches the target in at most 1/1.1 of vanilla's steps (geometric mean per seed)
C8_EFFECT = 1.25  # C8's declared effect (power): 1/1.25 of vanilla's steps
LEARNED = 0.95  # a model has learned the task when its exact match at the training length is at least this


@dataclass(frozen=True)
class PasskeyConfig(TrainingConfig):
    """Settings of ``passkey``; the defaults are the default preset (its time: benchmarks/RESULTS.md)."""

    digits: tuple[int, ...] = ranged((1,), ge=1, nonempty=True)  # passkey lengths d, one grid cell each (5 digits: see paper_repro.md)
    n_filler: int = ranged(8, ge=1)  # filler token types
    decoys: int = ranged(2, ge=0)  # decoy blocks in the filler: a DECOY marker and d digits that are not the passkey
    n_min: int = ranged(32, also="<= n_max; long enough for the needle, the decoys, the query and the answer")  # training lengths n_min..n_max (tokens, answer included), uniform per step
    n_max: int = ranged(128, also=">= n_min")  # the longest training length
    eval_lengths: tuple[int, ...] = ranged((128, 512, 1024, 4096), le=16384, nonempty=True, also=">= n_max")  # the lengths evaluated (tokens)
    depths: tuple[float, ...] = ranged((0.0, 0.25, 0.5, 0.75, 1.0), ge=0, le=1, nonempty=True)  # needle depth, a fraction of the filler
    n_eval: int = 8  # contexts per (length, depth) and member: 320 per length over 5 depths and 8 seeds
    strategies: tuple[str, ...] = variant_field(STRATEGIES)  # the variants trained with free dot-product scores
    # also trained with scores bound * cos(q, k) (QK-norm at a fixed scale)
    bounded: tuple[str, ...] = variant_field(BOUNDED)
    bound: float = ranged(4.0, gt=0)  # the cosine geometry's scale s: every score in [-s, s], a needle's gap at most 2s
    # ssa_q_pos in the bounded geometry also from these starts of alpha (-2: sigmoid 0.12), besides ALPHA_INIT
    pos_starts: tuple[float, ...] = ranged((-2.0,), also="needs ssa_q_pos in bounded")
    # vanilla also at this bound (0: not): a static range 1.5x the committed one, the matched-range control of
    # C7b (a pilot of ssa_q_pos at 3 other seeds reached about that scale at the training length)
    matched_bound: float = ranged(6.0, ge=0, also="0: none")
    second_bound: float = ranged(8.0, ge=0, also="0: none")  # vanilla and SSA also at this bound (0: not): C7b's sensitivity row
    placebo: bool = True  # also train the vanilla twin (PLACEBO) in each geometry and on C8's task
    temp_lr_factor: float = 10.0  # the temperature parameters train at this multiple of lr (their own rate)
    d_model: int = 32  # the model width
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads per block
    conv: int = 2  # causal convolution taps (local order; no position embedding)
    task_seed: int = ranged(0, ge=0)  # the length schedule is the task: fixed across member seeds
    accuracy_target: float = ranged(0.9, gt=0, le=1)  # C8's fixed target: the monitor's exact match, crossing interpolated
    n_monitor: int = 64  # monitor contexts per member, at n_max
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    log_every: int = 20  # the monitor every log_every steps, when n_logs is 0
    n_logs: int = ranged(40, ge=0, also="0 or >= 2")  # the monitor at this many log-spaced steps (0: every log_every)
    # C8's task, one vanilla takes at least 500 steps to learn (a 2-seed pilot: 713 and 572 steps)
    learn: bool = True  # train C8's models (vanilla, SSA and the twin on this task)
    learn_digits: int = ranged(2, ge=1)  # C8's task: passkey digits
    learn_n_min: int = ranged(32, also="<= learn_n_max; long enough for learn_digits and the decoys")  # C8's task: shortest training length
    learn_n_max: int = ranged(64, also=">= learn_n_min")  # C8's task: longest training length
    learn_steps: int = ranged(2500, ge=2)  # C8's task: training steps
    learn_batch_size: int = ranged(16, ge=1)  # C8's task: sequences per step
    learn_lr: float = ranged(6e-4, gt=0)  # C8's task: learning rate
    learn_log_every: int = ranged(25, ge=1)  # C8's task: the monitor every this many steps

    def __post_init__(self) -> None:
        super().__post_init__()
        least = 2 * max(self.digits) + 3 + self.decoys * (max(self.digits) + 1)
        require(least <= self.n_min <= self.n_max,
                f"need {least} <= n_min <= n_max (got {self.n_min}, {self.n_max}): a sequence holds the "
                "needle, the decoys, the query and the answer")
        require(min(self.eval_lengths) >= self.n_max,
                f"eval_lengths must be >= n_max = {self.n_max}, the longest training length (got {self.eval_lengths})")
        lm.check_model_fields(self)
        require(PLACEBO not in self.bounded, f"{PLACEBO!r} names the vanilla twin; it is not a strategy (set placebo=true)")
        require(not self.pos_starts or "ssa_q_pos" in self.bounded,
                "pos_starts are starts of ssa_q_pos in the bounded geometry; add it to bounded or empty pos_starts")
        if self.learn:
            require(2 * self.learn_digits + 3 + self.decoys * (self.learn_digits + 1) <= self.learn_n_min <= self.learn_n_max,
                    f"C8's task needs learn_n_min <= learn_n_max, both long enough for {self.learn_digits} digits and "
                    f"the decoys (got {self.learn_n_min}, {self.learn_n_max})")
        require(self.n_logs == 0 or self.n_logs >= 2, f"n_logs must be 0 or >= 2 (got {self.n_logs})")

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

    def shape(self, variant, bound: float | None = None, alpha_init: float = ALPHA_INIT) -> lm.LMShape:
        """The model: free dot products, or scores ``bound * cos(q, k)`` where ``bound`` is given."""
        return lm.LMShape(vocab=self.vocab, variant=variant, d_model=self.d_model, n_layers=self.n_layers,
                          n_heads=self.n_heads, d_mlp=2 * self.d_model, conv=self.conv, train_length=self.n_max,
                          score="dot" if bound is None else "cosine", score_bound=bound, alpha_init=alpha_init)

    def learn_task(self) -> "PasskeyConfig":
        """C8's task as a config of its own: ``learn_digits`` digits on lengths ``learn_n_min..learn_n_max``,
        ``learn_steps`` steps at ``learn_lr``, batch ``learn_batch_size``, the monitor every ``learn_log_every``."""
        return replace(self, digits=(self.learn_digits,), n_min=self.learn_n_min, n_max=self.learn_n_max,
                       steps=self.learn_steps, batch_size=self.learn_batch_size, lr=self.learn_lr,
                       log_every=self.learn_log_every, n_logs=0, learn=False)

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
          bound: float | None = None, alpha_init: float = ALPHA_INIT) -> Trained:
    """Train one strategy for every (d, seed) member at once (initialised from the ``init`` stream; with
    scores ``bound * cos(q, k)`` where ``bound`` is given); then measure it (``evaluate``)."""
    net, hist = _fit(spec, cfg, members, ctx, init, bound, alpha_init)
    return Trained(spec, members, evaluate(net, cfg, members, ctx.device), hist)


def _fit(spec: ModelSpec, cfg: PasskeyConfig, members: Members, ctx: RunContext, init: str = "init",
         bound: float | None = None, alpha_init: float = ALPHA_INIT, temp_lr: float | None = None):
    """Train on the task's stream; ``temp_lr`` the temperature parameters' own rate (None: ``lr``)."""
    ds, gens, lengths = member_digits(cfg, members), members.generators("data"), train_lengths(cfg)
    mon_tokens, _ = _batch(cfg, members.generators("eval"), ds, cfg.n_monitor, cfg.n_max)

    def batch(step: int):
        n = lengths[step]
        return _batch(cfg, gens, ds, cfg.batch_size, n)[0], answer_mask(n, ds)

    return lm.fit_members(cfg.shape(spec.resolved, bound, alpha_init), members, ctx, batch=batch,
                          monitor=(mon_tokens, answer_mask(cfg.n_max, ds)), steps=cfg.steps, lr=cfg.lr,
                          log_every=cfg.log_every, label=spec.label, token_freq=token_frequencies(cfg), init=init,
                          log_at=cfg.log_steps(), temp_lr=temp_lr)


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
    tau = law_tau(cfg, net, head.cpu().numpy(), ds)
    ratio = tau / tau[:, :1]
    return {"tau_law": tau, "acc": acc, "hits": hits, "needle_mass": mass,
            "needle_mass_pred": predicted_mass(cfg, ds, mass[:, 0]),
            "needle_mass_law": predicted_mass(cfg, ds, mass[:, 0], ratio), "law_ratio": ratio,
            "gap_mean": gap_mean, "gap_max": gap_max, "head": head.cpu().numpy(), **lm.temperature_arrays(net)}


def law_tau(cfg: PasskeyConfig, net: lm.Ensemble, head: np.ndarray, ds) -> np.ndarray:
    """``tau_q(n)`` at the read (E, lengths; ``law_ratio`` is it over its value at n0): the query-side
    temperature law of the strategy, for each member's retrieval head (``head``: layer x heads + head),
    from the layer plan's readout
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
    return taus


def law_ratio(cfg: PasskeyConfig, net: lm.Ensemble, head: np.ndarray, ds) -> np.ndarray:
    """``law_tau`` over its value at the training length (E, lengths): 1 at n0."""
    tau = law_tau(cfg, net, head, ds)
    return tau / tau[:, :1]


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


@dataclass(frozen=True)
class Arm:
    """One model of a run, parsed from its key: the strategy (or ``PLACEBO``), the score geometry (``bound``
    None: free dot products), where a position term starts, and the task (``learn``: C8's)."""

    key: str
    name: str
    bound: float | None = None
    alpha_init: float = ALPHA_INIT
    learn: bool = False

    @property
    def geometry(self) -> str:
        return "dot" if self.bound is None else f"cosine {self.bound:g}"


def arm(cfg: PasskeyConfig, key: str) -> Arm:
    """The ``Arm`` of a model key: ``vanilla`` (free geometry), ``cosine:ssa`` (bound ``cfg.bound``),
    ``cosine6:vanilla`` (bound 6), ``cosine:ssa_q_pos@-2`` (its position term starting at alpha -2),
    ``learn:ssa`` (C8's task)."""
    head, name, start = _parts(key)
    if head in ("dot", LEARN):
        return Arm(key, name, learn=head == LEARN)
    bound = float(head[len("cosine"):]) if head != "cosine" else cfg.bound
    return Arm(key, name, bound, float(start) if start else ALPHA_INIT)


def _parts(key: str) -> tuple[str, str, str]:
    """(head, strategy or PLACEBO, alpha start or "") of a model key; head ``dot``, ``LEARN`` or
    ``cosine[B]``."""
    if key.startswith(LEARN):
        return LEARN, key[len(LEARN):], ""
    if not key.startswith("cosine"):
        return "dot", key, ""
    head, rest = key.split(":", 1)
    name, _, start = rest.partition("@")
    return head, name, start


def bounded_key(bound: float | None, name: str, start: float | None = None) -> str:
    """The key of ``name`` at ``bound`` (None: the run's ``bound``), from alpha ``start`` (None: ``ALPHA_INIT``)."""
    head = COSINE if bound is None else f"cosine{bound:g}:"
    return head + name + ("" if start is None else f"@{start:g}")


def model_keys(cfg: PasskeyConfig) -> list[str]:
    """Every model a run trains: the strategies and the placebo twin in the free geometry; the bounded
    strategies, ``ssa_q_pos`` from each of ``pos_starts`` and the twin at ``bound``; vanilla at
    ``matched_bound``; vanilla and SSA at ``second_bound``; C8's vanilla, SSA and twin on its own task;
    with the twins (``placebo``), SSA's scrambled twin at ``bound``, and C8's global temperature and
    scrambled twin on C8's task."""
    twin = [PLACEBO] if cfg.placebo else []
    keys = lm.model_keys(cfg) + [bounded_key(None, s) for s in (*cfg.bounded, *twin)]
    if cfg.placebo and "ssa" in cfg.bounded:  # C7b's scrambled mechanism (skeleton.scrambled), a placebo too
        keys.append(bounded_key(None, SSA_SCRAMBLED))
    keys += [bounded_key(None, "ssa_q_pos", a) for a in cfg.pos_starts]
    if cfg.matched_bound:
        keys.append(bounded_key(cfg.matched_bound, "vanilla"))
    if cfg.second_bound:
        keys += [bounded_key(cfg.second_bound, s) for s in ("vanilla", "ssa") if s in cfg.bounded]
    if cfg.learn:
        keys += [LEARN + s for s in ("vanilla", "ssa", *twin) if s in cfg.strategies or s == PLACEBO]
        if cfg.placebo and "ssa" in cfg.strategies:  # C8 against a global temperature, and its scrambled twin
            keys += [LEARN + s for s in ("global", SSA_SCRAMBLED) if s != "global" or "global" in cfg.bounded]
    return keys


def split_key(key: str) -> tuple[str, str]:
    """(geometry, strategy or PLACEBO) of a model key: ``dot`` (C8's models too) or ``cosine[B]``."""
    head, name, _ = _parts(key)
    return ("dot" if head == LEARN else head), name


def model_weight(cfg: PasskeyConfig, key: str) -> float:
    """A model's share of the time, for scheduling: C8's models train longer on shorter sequences."""
    return 1.8 if key.startswith(LEARN) else 1.0


def train_model(cfg: PasskeyConfig, key: str, ctx: RunContext) -> Trained:
    """One model of ``model_keys``, for every member seed of the run. Temperature parameters train at
    ``temp_lr_factor`` times the rate. C8's models are trained on ``learn_task`` and not evaluated by length."""
    a = arm(cfg, key)
    spec, init = lm.model_spec(cfg, a.name)
    if key != a.name:
        spec = ModelSpec(key, spec.resolved)
    if a.learn:
        task = cfg.learn_task()
        members = Members.grid(task.digits, ctx.seeds, lambda d: f"d={d}")
        _, hist = _fit(spec, task, members, ctx, init, temp_lr=task.lr * cfg.temp_lr_factor)
        return Trained(spec, members, {}, hist)
    members = Members.grid(cfg.digits, ctx.seeds, lambda d: f"d={d}")
    net, hist = _fit(spec, cfg, members, ctx, init, a.bound, a.alpha_init, temp_lr=cfg.lr * cfg.temp_lr_factor)
    return Trained(spec, members, evaluate(net, cfg, members, ctx.device), hist)


def run(cfg: PasskeyConfig, ctx: RunContext) -> None:
    trained = cells.trained(EXPERIMENT, cfg, ctx)  # each model its own run directory (reproduce spreads them)
    write_results(ctx, measure(cfg, ctx.seeds, trained))


def gap_slopes(cfg: PasskeyConfig, gap: np.ndarray) -> np.ndarray:
    """Per member (E,): the least-squares slope of the needle's logit gap at the read (``gap_mean``,
    (E, lengths)) on log n over the evaluation lengths: how much the gap grows per unit log n (0: a static
    gap, whatever its size)."""
    x = np.log(np.asarray(cfg.lengths, dtype=float))
    x = x - x.mean()
    return (np.asarray(gap) - np.asarray(gap).mean(1, keepdims=True)) @ x / (x @ x)


def position_coefficient(t: Trained) -> np.ndarray:
    """Per member (E,): sigmoid(alpha) of the query-side position term at the retrieval head (NaN where the
    model has none): the learned coefficient of log n in ``1 + sigmoid(alpha) log n``."""
    E = len(t.members)
    out = np.full(E, np.nan)
    heads = t.arrays.get("head")
    for k, v in t.arrays.items():
        if k.startswith("temp.") and k.endswith("q_alpha") and heads is not None:
            layer = int(k.split(".")[2])
            H = v.shape[1]
            for e in range(E):
                lay, h = divmod(int(heads[e]), H)
                if lay == layer:
                    out[e] = 1 / (1 + np.exp(-v[e, h]))
    return out


def measure(cfg: PasskeyConfig, seeds, trained: Mapping[str, Trained]) -> Results:
    """The tables: exact match and the read's needle mass, gaps and closed forms by length, every arm's
    C7b readings (``arms``), C8's steps to the target, the summary per model, the learned temperatures,
    metrics.json."""
    results = Results()
    results.frames["curves"] = pd.DataFrame([
        {"strategy": s, "digits": cfg.learn_digits if s.startswith(LEARN) else cfg.digits[c], "seed": seed,
         "step": int(step), "loss": float(t.history["loss"][i, e]), "acc": float(t.history["exact"][i, e])}
        for s, t in trained.items() for e, (c, seed) in enumerate(zip(t.members.cells, t.members.seeds))
        for i, step in enumerate(t.history["step"])])
    table = {s: t for s, t in trained.items() if not s.startswith(LEARN)}
    results.frames["grid"] = pd.DataFrame([
        {"strategy": s, "digits": cfg.digits[c], "seed": seed, "n": n, "depth": depth, "acc": float(t["acc"][e, i, j])}
        for s, t in table.items() for e, (c, seed) in enumerate(zip(t.members.cells, t.members.seeds))
        for i, n in enumerate(cfg.lengths) for j, depth in enumerate(cfg.depths)])
    results.table("by_length", _by_length(cfg, table), ci=["acc", "needle_mass"])
    results.table("arms", _arms(cfg, table), ci=["acc_max", "gap_slope", "pos_coef"])
    learners = {s[len(LEARN):]: t for s, t in trained.items() if s.startswith(LEARN)}
    learn = time_to_learn(cfg.learn_task(), learners) if learners else pd.DataFrame()
    results.table("time_to_learn", learn)
    results.table("strategies", _summary(cfg, table), ci=["acc_train", "acc_max"])
    results.table("temperatures", lm.temperature_table(table))
    results.metrics = _metrics(cfg, seeds, table, learn, learners)
    return results


def _arms(cfg, trained) -> pd.DataFrame:
    """C7b's readings per model at the longest passkey: exact match at the longest length with its exact
    interval (contexts pooled over seeds), the gap's slope on log n (``gap_slopes``, t-interval over
    seeds), the learned position coefficient (``position_coefficient``) and the strategy's temperature
    law at the read at the training length and the longest (``tau_law``: SSA's token term left out)."""
    rows = []
    c = len(cfg.digits) - 1
    for s, t in trained.items():
        idx = t.members.in_cell(c)
        k, total = int(t["hits"][idx, -1].sum()), int(idx.sum()) * len(cfg.depths) * cfg.n_eval
        _, lo, hi = binomial_ci(k, total)
        geometry, name = split_key(s)
        pos = position_coefficient(t)[idx]
        rows.append({"model": s, "strategy": name, "geometry": geometry, "seeds": int(idx.sum()),
                     "retrieved": k, "contexts": total, **rate_columns("acc_max", t["acc"][idx, -1].mean(1), k, total),
                     "acc_exact_lo": lo, "acc_exact_hi": hi,
                     **ci_columns("gap_slope", gap_slopes(cfg, t["gap_mean"][idx]), bounded=False),
                     "gap_train": float(t["gap_mean"][idx, 0].mean()), "gap_max_len": float(t["gap_mean"][idx, -1].mean()),
                     **(ci_columns("pos_coef", pos, bounded=False) if np.isfinite(pos).all()
                        else {"pos_coef": math.nan, "pos_coef_lo": math.nan, "pos_coef_hi": math.nan}),
                     "tau_law_train": float(t["tau_law"][idx, 0].mean()), "tau_law_max": float(t["tau_law"][idx, -1].mean())})
    return pd.DataFrame(rows)


def _by_length(cfg, trained) -> pd.DataFrame:
    rows = []
    for s, t in trained.items():
        for c, d in enumerate(cfg.digits):
            idx = t.members.in_cell(c)
            for i, n in enumerate(cfg.lengths):
                k, total = int(t["hits"][idx, i].sum()), int(idx.sum()) * len(cfg.depths) * cfg.n_eval
                pooled, lo, hi = binomial_ci(k, total)
                rows.append({"strategy": s, "geometry": split_key(s)[0], "digits": d, "n": n,
                             **rate_columns("acc", t["acc"][idx, i].mean(1), k, total),
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


def learn_steps(cfg: PasskeyConfig, t: Trained, c: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per seed of grid cell ``c``: the steps to ``accuracy_target`` exact match on the monitor
    (``steps_to_target``) and whether it was reached (False: censored at the last logged step)."""
    hit = [steps_to_target(t.history["step"], t.history["exact"][:, e], cfg.accuracy_target)
           for e in np.nonzero(t.members.in_cell(c))[0]]
    return np.array([h[0] for h in hit]), np.array([h[1] for h in hit])


def time_to_learn(cfg: PasskeyConfig, trained: Mapping[str, Trained]) -> pd.DataFrame:
    """C8, per model and passkey length: the steps each seed needs to reach ``accuracy_target`` exact match
    on the monitor (interpolated; a seed that never does is censored at the last step), and the
    Kaplan-Meier median over seeds with its 95% interval (``stats.survival``; a bound the band never
    crosses is left empty, not printed as infinite), the censored count, and the per-seed steps."""
    rows = []
    for s, t in trained.items():
        for c, d in enumerate(cfg.digits):
            steps, reached = learn_steps(cfg, t, c)
            km = survival(steps, reached)
            finite = lambda x: x if math.isfinite(x) else math.nan  # noqa: E731
            rows.append({"strategy": s, "digits": d, "median_steps": finite(km["median"]), "median_lo": finite(km["lo"]),
                         "median_hi": finite(km["hi"]), "censored": km["censored"], "seeds": km["seeds"],
                         "per_seed_steps": " ".join(f"{x:.0f}" + ("" if r else "+") for x, r in zip(steps, reached))})
    return pd.DataFrame(rows)


def _summary(cfg, trained) -> pd.DataFrame:
    rows = []
    for s, t in trained.items():
        for c, d in enumerate(cfg.digits):
            idx = t.members.in_cell(c)
            a0, a1 = t["acc"][idx, 0].mean(1), t["acc"][idx, -1].mean(1)
            total = int(idx.sum()) * len(cfg.depths) * cfg.n_eval
            rows.append({"strategy": s, "geometry": split_key(s)[0], "digits": d,
                         **rate_columns("acc_train", a0, int(t["hits"][idx, 0].sum()), total),
                         **rate_columns("acc_max", a1, int(t["hits"][idx, -1].sum()), total),
                         "learned": bool(np.all(a0 >= LEARNED)),
                         "needle_mass_train": float(t["needle_mass"][idx, 0].mean()),
                         "needle_mass_max": float(t["needle_mass"][idx, -1].mean()),
                         "needle_mass_max_pred": float(t["needle_mass_pred"][idx, -1].mean()),
                         "needle_mass_max_law": float(t["needle_mass_law"][idx, -1].mean()),
                         "gap_train": float(t["gap_mean"][idx, 0].mean()), "gap_max_len": float(t["gap_mean"][idx, -1].mean()),
                         "per_seed_acc_max": " ".join(f"{x:.3g}" for x in a1)})
    return pd.DataFrame(rows)


def _metrics(cfg, seeds, trained, learn, learners) -> dict:
    out = {"lengths": list(cfg.lengths), "train_lengths": [cfg.n_min, cfg.n_max], "digits": list(cfg.digits),
           "seeds": list(seeds), "bound": cfg.bound, "matched_bound": cfg.matched_bound, "second_bound": cfg.second_bound,
           "accuracy_target": cfg.accuracy_target, "strategies": {}}
    for s, t in trained.items():
        out["strategies"][s] = {str(d): {
            "acc_train": t["acc"][t.members.in_cell(c), 0].mean(1), "acc_max": t["acc"][t.members.in_cell(c), -1].mean(1),
            "gap_slope": gap_slopes(cfg, t["gap_mean"][t.members.in_cell(c)]),
            "pos_coef": position_coefficient(t)[t.members.in_cell(c)],
        } for c, d in enumerate(cfg.digits)}
    out["time_to_learn"] = learn.to_dict("records") if len(learn) else []
    out["learn"] = {}
    if cfg.learn:
        task = cfg.learn_task()
        out["learn"] = {"digits": task.learn_digits, "lengths": [task.n_min, task.n_max], "steps": task.steps,
                        "per_seed": {}}
        for s, t in learners.items():
            steps, reached = learn_steps(task, t)
            out["learn"]["per_seed"][s] = {"steps": steps, "reached": reached.astype(float)}
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
    - "reproduced" when ``other`` exceeds vanilla by at least ``MIN_GAIN``, the paired CI above 0 (power is
      computed at ``GAIN_EFFECT``);
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
        return f"not testable: the control retrieves {b.mean():.3f} at the longest length, less headroom than {MIN_GAIN:g}", diff
    return ("reproduced" if diff[0] >= MIN_GAIN and diff[1] > 0 else "not reproduced"), diff


def slope_rule(control: Mapping[str, np.ndarray],
               other: Mapping[str, np.ndarray]) -> tuple[str, tuple[float, float, float]]:
    """C7b's mechanism rule, stated before the data, on per-seed slopes of the needle's logit gap on log n
    (``gap_slope``; the same seeds in both arms); returns the verdict and the paired difference
    other - control with its t-interval:
    - fewer than two seeds: ``ONE_SEED``;
    - "reproduced" (the gap grows with log n beyond the control's) when the difference is at least
      ``MIN_SLOPE`` and its interval lies above 0 (power is computed at ``SLOPE_EFFECT``);
    - "not reproduced: static" when the interval lies below ``MIN_SLOPE`` (a gap that does not grow that
      much, whatever its size); "not reproduced" otherwise."""
    a, b = np.asarray(other["gap_slope"], dtype=float), np.asarray(control["gap_slope"], dtype=float)
    n = min(a.size, b.size)
    diff = paired(a[:n], b[:n])
    if n < 2:
        return ONE_SEED, diff
    if diff[0] >= MIN_SLOPE and diff[1] > 0:
        return "reproduced", diff
    return ("not reproduced: static" if diff[2] < MIN_SLOPE else "not reproduced"), diff


def _log_ratios(van: Mapping, other: Mapping) -> tuple[np.ndarray, int, int]:
    """Per seed, ``log(other's steps / vanilla's)`` to C8's target (C8's paired statistic), with censored
    times at their censoring step: a vanilla seed that never got there makes its ratio an upper bound
    (against the claim). Pairs censored in both arms are dropped. Returns the log ratios, the number of
    pairs dropped, and the seeds where only ``other`` is censored (its ratio a lower bound: for the claim)."""
    vs, vr = np.asarray(van["steps"], dtype=float), np.asarray(van["reached"], dtype=bool)
    os_, orr = np.asarray(other["steps"], dtype=float), np.asarray(other["reached"], dtype=bool)
    n = min(vs.size, os_.size)
    vs, vr, os_, orr = vs[:n], vr[:n], os_[:n], orr[:n]
    keep = vr | orr
    return np.log(np.maximum(os_[keep], 1.0) / np.maximum(vs[keep], 1.0)), int((~keep).sum()), int((vr & ~orr).sum())


# C8's test on per-seed log ratios: the geometric-mean ratio at most ``1 / C8_MIN`` with its t-interval below 1
_faster = Above(math.log(C8_MIN), sign=-1.0)


def steps_rule(van: Mapping | None, other: Mapping | None) -> tuple[str, tuple[float, float, float]]:
    """C8's rule, stated before the data, on each seed's steps to the fixed target in both arms (the same
    seed trains both on the same data stream; ``{"steps", "reached"}``); returns the verdict and the
    geometric-mean ratio other / vanilla with its t-interval (on the per-seed log ratios, ``_log_ratios``):
    - "not testable" with fewer than ``C8_SEEDS`` seeds, when vanilla reached the target on fewer than
      half its seeds, or when vanilla's median is under ``C8_MIN_STEPS`` (too fast to show a difference);
    - "reproduced" when the ratio is at most ``1 / C8_MIN`` with its interval below 1 (``_faster``)
      and no seed is censored in the other arm alone (there its ratio would favour the claim);
    - "not reproduced" when the interval lies above 1 (the other model slower);
    - "no clear difference" otherwise."""
    nan = (math.nan, math.nan, math.nan)
    if van is None or other is None:
        return "not testable: no time-to-learn run", nan
    x, dropped, only_other = _log_ratios(van, other)
    m, lo, hi = mean_ci(x) if x.size else nan
    ratio = (math.exp(m), math.exp(lo), math.exp(hi)) if x.size else nan
    steps, reached = np.asarray(van["steps"], dtype=float), np.asarray(van["reached"], dtype=bool)
    why = []
    if min(steps.size, len(other["steps"])) < C8_SEEDS:
        why.append(f"{min(steps.size, len(other['steps']))} seeds, the rule needs {C8_SEEDS}")
    if reached.sum() * 2 < reached.size:
        why.append("vanilla reached the target on fewer than half its seeds")
    elif np.median(np.where(reached, steps, np.inf)) < C8_MIN_STEPS:
        why.append(f"vanilla learns in {np.median(np.where(reached, steps, np.inf)):.0f} steps (median), under {C8_MIN_STEPS}")
    if why:
        return "not testable: " + "; ".join(why), ratio
    if x.size < 2:
        return ONE_SEED, ratio
    if _faster(x) and not only_other:
        return "reproduced", ratio
    if lo > 0:
        return "not reproduced", ratio
    return "no clear difference", ratio


def claims(exported: Path) -> list[Claim]:
    """From ``metrics.json``, at the longest passkey (largest d); each with the placebo twin read by the same
    rule and the rule's false-positive rate and power (``claims.calibrate``: the twin's per-seed
    differences from vanilla, resampled and centred, then shifted by the declared effect):
    - C7: ``retrieval_rule`` in the free geometry, SSA against vanilla;
    - C7b (bound ``bound``): the outcome, SSA against vanilla (C7b) and against vanilla at the matched
      range (C7b.range); the mechanism, the slope of SSA's logit gap on log n against the
      matched-range control's (C7b.slope, ``slope_rule``); the outcome at the second bound (C7b.bound);
    - C8: ``steps_rule`` on C8's task."""
    m = read_json(Path(exported) / "metrics.json")
    d = str(max(m["digits"]))
    st = m["strategies"]
    n1, n0 = max(m["lengths"]), m["train_lengths"][1]
    get = lambda key: st.get(key, {}).get(d)  # noqa: E731
    out = []

    how = "the twin's per-seed differences from vanilla, resampled"

    def noise(van, twin, key):
        if not (van and twin):
            return None
        k = min(len(van[key]), len(twin[key]))
        return np.asarray(twin[key][:k], dtype=float) - np.asarray(van[key][:k], dtype=float)

    def claim(cid, measure, control, other, rule, passes, effect, key, base=(None, None), glob=None, scr=None,
              spread=""):
        """One row: the rule on ``other`` against ``control`` (and against ``glob``, a global temperature,
        where given), the placebo twin against ``base[0]`` (the geometry's own vanilla) by the same rule,
        the scrambled twin ``scr`` against ``control`` and ``glob``, and the rule's calibration on the twin's noise."""
        van0, twin = base
        if control is None or other is None:
            return
        verdict, (v, lo, hi) = rule(control, other)
        cal = calibrate(noise(van0, twin, key), passes, effect, how) if twin else None
        out.append(Claim(cid, "passkey", "SSA improves passkey retrieval", measure, v, lo, hi,
                         gated(verdict, cal), rule(van0, twin)[0] if twin else "", cal.words() if cal else "",
                         against_global=rule(glob, other)[0] if glob else "",
                         scrambled=rule(control, scr)[0] if scr else "",
                         scrambled_global=rule(glob, scr)[0] if scr and glob else "", spread=spread))

    gain_passes, slope_passes = Above(MIN_GAIN), Above(MIN_SLOPE)

    claim("C7", f"exact match at n = {n1}, SSA - vanilla ({d}-digit passkey among decoys; free dot product; trained on n <= {n0})",
          get("vanilla"), get("ssa"), retrieval_rule, gain_passes, GAIN_EFFECT, "acc_max", (get("vanilla"), get(PLACEBO)))
    B, Bm, B2 = m.get("bound", 0), m.get("matched_bound", 0), m.get("second_bound", 0)
    van, ssa = get(COSINE + "vanilla"), get(COSINE + "ssa")
    glob, scr = get(COSINE + "global"), get(COSINE + SSA_SCRAMBLED)
    base = (van, get(COSINE + PLACEBO))  # every bounded row's placebo and noise: the twin at the committed bound
    spread = ""
    if ssa and "pos_coef" in ssa:
        c, g = np.asarray(ssa["pos_coef"], dtype=float), np.asarray(ssa["gap_slope"], dtype=float)
        spread = (f"position coefficient sigmoid(alpha) {np.nanmean(c):.3g} (seeds {np.nanmin(c):.3g} to {np.nanmax(c):.3g}); "
                  f"the needle's logit gap grows {g.mean():.3g} nats per unit log n")
    claim("C7b", f"exact match at n = {n1}, SSA - vanilla (cosine scores, bound {B:g})",
          van, ssa, retrieval_rule, gain_passes, GAIN_EFFECT, "acc_max", base, glob, scr, spread)
    if Bm:
        matched = get(bounded_key(Bm, "vanilla"))
        claim("C7b.range", f"exact match at n = {n1}, SSA (bound {B:g}) - vanilla at the matched range (bound {Bm:g})",
              matched, ssa, retrieval_rule, gain_passes, GAIN_EFFECT, "acc_max", base)
        claim("C7b.slope", f"slope of the needle's logit gap on log n, SSA (bound {B:g}) - vanilla at the matched range "
              f"(bound {Bm:g}), nats per unit log n", matched, ssa, slope_rule, slope_passes, SLOPE_EFFECT, "gap_slope", base,
              glob, scr)
    if B2:
        claim("C7b.bound", f"exact match at n = {n1}, SSA - vanilla, both at bound {B2:g} (sensitivity)",
              get(bounded_key(B2, "vanilla")), get(bounded_key(B2, "ssa")), retrieval_rule, gain_passes, GAIN_EFFECT,
              "acc_max", base)

    per = m.get("learn", {}).get("per_seed", {})
    if "vanilla" in per and "ssa" in per:
        verdict, (ratio, lo, hi) = steps_rule(per["vanilla"], per["ssa"])
        twin = per.get(PLACEBO)
        cal = None
        if twin:
            x, _, _ = _log_ratios(per["vanilla"], twin)
            cal = calibrate(x, _faster, -math.log(C8_EFFECT), "the twin's per-seed log ratios to vanilla, resampled")
        glob, scr = per.get("global"), per.get(SSA_SCRAMBLED)
        out.append(Claim("C8", "passkey", "SSA reaches vanilla's loss with fewer training tokens",
                         f"steps to {m.get('accuracy_target', 0.9):g} exact match, SSA / vanilla, geometric mean over seeds "
                         f"({m['learn']['digits']}-digit passkey, n {m['learn']['lengths'][0]}..{m['learn']['lengths'][1]})",
                         ratio, lo, hi, gated(verdict, cal), steps_rule(per["vanilla"], twin)[0] if twin else "",
                         cal.words() if cal else "", against_global=steps_rule(glob, per["ssa"])[0] if glob else "",
                         scrambled=steps_rule(per["vanilla"], scr)[0] if scr else "",
                         scrambled_global=steps_rule(glob, scr)[0] if glob and scr else ""))
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
    version="4",  # 4: C7b's controls (starts, matched range, second bound), temperatures at their own rate, C8's own task
    # 3: decoys, the bounded (cosine) arm, C8 on a fixed target with censored seeds, gaps and the law
    claim="LM claims: SSA improves passkey retrieval past the training length (C7) and learns faster (C8)",
    config=PasskeyConfig,
    run=run,
    plot=figures("ssa_theory.experiments.passkey_plots", "haystack", "accuracy_and_mass", "curves"),
    headline="strategies",
    claims=claims,
    presets=lm.presets(28.0, quick={"steps": 40, "eval_lengths": (64, 128), "depths": (0.5,), "n_eval": 4,
                                   "strategies": ("vanilla", "ssa"), "bounded": ("vanilla", "ssa"), "pos_starts": (),
                                   "n_monitor": 8, "n_logs": 8, "n_min": 24, "n_max": 64, "learn_steps": 40,
                                   "learn_log_every": 10, "learn_n_min": 24, "learn_n_max": 32},
                       gpu={"digits": (1, 5), "d_model": 128, "n_layers": 4, "n_heads": 4, "steps": 4000,
                            "batch_size": 64, "eval_lengths": (128, 1024, 4096, 16384), "n_eval": 32}, seeds=8),
    ablation=Ablation("passkeys missed at n = 4096, trained on n <= 128 (1 digit)", "0: every passkey retrieved",
                      ablate,
                      overrides={"steps": 300, "digits": (1,), "eval_lengths": (128, 4096), "depths": (0.5,), "n_eval": 8},
                      quick={"steps": 40, "eval_lengths": (64, 256), "n_min": 24, "n_max": 64, "n_monitor": 8, "n_logs": 8},
                      bounded=True, minutes=0.8),
    models=Models(model_keys, train_model, model_weight),
)
