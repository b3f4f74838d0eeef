"""text: the paper's language-modelling claim on real text, offline, past the training length.

Claims checked (``paper_repro.md`` section 8): C10 [paper] SSA lowers the held-out loss of a language
model (here at the training length, against vanilla and against a learned global temperature); C11
[ours, after the log-n laws of SSMax, Qwen and SSA's own position term] past the training length a
temperature that grows with log n keeps the loss from rising where vanilla's rises.

The data [``ssa_theory.tasks.text``]: the King James Bible, characters as tokens, split by whole books
(``val_books``, ``test_books``; the rest trains). The model is ``ssa_theory.lm`` in two position arms:
``nope`` (no positional encoding, a causal convolution of ``conv`` taps for local order, as
``passkey``) and ``rope`` (RoPE at base ``rope_base``, no convolution: what real models use, and where
perplexity explodes past the training length). Each strategy (and the placebo twin: vanilla from
another initialisation) trains ``seeds`` seeds on the ensemble axis, on random windows of
``train_length`` characters, the temperature parameters at ``temp_lr_factor`` times the rate.

Evaluation by sliding windows (``score``): the same ``n_scored`` test characters at every length; each
window of ``L_eval`` characters scores only its last ``stride`` ones, so every scored character sees at
least ``L_eval - stride`` characters of context (chunks would confound length with each chunk's first
characters). Bits per character per length; the loss by position in windows of the longest length
(``by_position``); the key-token loss in the spirit of LongPPL (arXiv 2410.23771): the characters whose
log-probability under the vanilla ``nope`` model (mean over seeds) improves by more than ``KEY_GAIN``
nats with ``train_length`` characters of context rather than ``short`` (fixed once, the same set for
every model), where plain bits per character averages the long-context effect away. Reference floors:
a count-based character n-gram model on the same split (``ngram_bits``, Witten-Bell interpolation of
orders 0 to ``ngram_order``) and each model's own loss at the training length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ssa_theory import cells, lm
from ssa_theory.claims import MIN_SPREAD, ONE_SEED, Above, Claim, calibrate, gated
from ssa_theory.config import TrainingConfig, ranged, require, variant_field
from ssa_theory.registry import Experiment, Models
from ssa_theory.rundir import RunContext, read_json
from ssa_theory.seeding import Members
from ssa_theory.skeleton import ModelSpec, Results, Trained, figures, write_results
from ssa_theory.variants import get_variant
from ssa_theory.stats import ci_columns, mean_ci
from ssa_theory.tasks import text as corpus

STRATEGIES = ("vanilla", "global", "log_n", "ssmax", "ssa_q_pos", "ssa_q_tok", "ssa")
ARMS = ("nope", "rope")
PLACEBO = lm.PLACEBO
LN2 = math.log(2)
GROWS = ("ssa_q_pos", "log_n", "ssmax", "ssa")  # the strategies whose temperature grows with log n (C11)
FINETUNE = "finetune:"  # the array prefix of C10's fine-tuning protocol, run inside each arm's vanilla model

# --- the rules' constants, fixed before the data they judge (paper_repro.md names the commit) -------------
C10_MIN = 0.01  # C10's threshold: SSA's bits per character at the training length below the control's by this much
C10_EFFECT = 0.02  # ... its declared effect (power)
C11_MIN = 0.05  # C11's threshold: the rise from L to 16L (bits per character) smaller than vanilla's by this much
C11_EFFECT = 0.10  # ... its declared effect (power)
KEY_GAIN = 0.5  # a key character: its log-probability improves by more than this (nats) with long context


@dataclass(frozen=True)
class TextConfig(TrainingConfig):
    """Settings of ``text``; the defaults are the default preset (its time: benchmarks/RESULTS.md)."""

    val_books: tuple[str, ...] = ranged(("Judges", "Galatians"), also="books of the King James Bible")  # the validation split (whole books)
    test_books: tuple[str, ...] = ranged(("Ruth", "Jonah", "Mark", "Philippians"), also="books of the King James Bible")  # the test split (whole books); the rest trains
    train_length: int = ranged(128, ge=8)  # L: training windows of this many characters
    eval_mults: tuple[int, ...] = ranged((1, 2, 4, 8, 16), ge=1, nonempty=True, also="starting at 1, increasing")  # evaluated at L x these
    stride: int = ranged(64, ge=1, also="<= train_length")  # each evaluation window scores its last stride characters
    n_scored: int = ranged(1024, ge=1, also="a multiple of stride")  # test characters scored at every length (the same ones)
    short: int = ranged(16, ge=1, also="< train_length")  # the short context of the key-token selection
    n_position: int = ranged(1, ge=1)  # windows of the longest length for the loss by position
    strategies: tuple[str, ...] = variant_field(STRATEGIES)  # the variants trained in each arm
    arms: tuple[str, ...] = ranged(ARMS, choices=ARMS, nonempty=True)  # the position arms: nope (no positions, a causal convolution) and rope
    placebo: bool = True  # also train the placebo twin and SSA's scrambled twin in each arm
    rope_base: float = ranged(10000.0, gt=1)  # the rope arm's RoPE base
    d_model: int = 64  # the model width
    n_layers: int = 2  # transformer blocks
    n_heads: int = 4  # attention heads per block
    conv: int = 2  # the nope arm's causal convolution taps
    temp_lr_factor: float = 10.0  # the temperature parameters train at this multiple of lr
    ngram_order: int = ranged(5, ge=1)  # the order of the count-based n-gram floor
    # C10 in the paper's protocol: vanilla pretrained for ``steps``, then ``finetune_steps`` more at ``finetune_lr``
    # plain, with a global temperature added at 1 (exact), and with SSA added at u = 0 and alpha = finetune_alpha
    # (sigmoid -7 = 0.0009: tau within 0.5% of 1 at the training length); a second plain fine-tune on another
    # data stream is its placebo
    finetune: bool = True
    finetune_with: tuple[str, ...] = variant_field(("global", "ssa"))  # the temperatures added when fine-tuning
    finetune_steps: int = ranged(120, ge=1)  # C10's fine-tuning steps
    finetune_lr: float = ranged(1e-3, gt=0)  # C10's fine-tuning learning rate
    finetune_alpha: float = -7.0  # where SSA's position term starts when added
    n_monitor: int = 16  # validation windows for the training curve
    steps: int = 500
    batch_size: int = 8  # training windows per step and member (16 in version 1: a stronger model, over the 30-minute budget)
    lr: float = 3e-3
    log_every: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        lm.check_model_fields(self)
        require(self.eval_mults[0] == 1 and list(self.eval_mults) == sorted(set(self.eval_mults)),
                f"eval_mults must start at 1 and increase (got {self.eval_mults})")
        require(self.stride <= self.train_length, f"stride must lie in 1..train_length (got {self.stride})")
        require(self.n_scored >= self.stride and self.n_scored % self.stride == 0,
                f"n_scored must be a multiple of stride (got {self.n_scored}, {self.stride})")
        require(self.short < self.train_length, f"short must lie in 1..train_length - 1 (got {self.short})")
        require(not self.finetune or "vanilla" in self.strategies, "finetune=true needs vanilla among the strategies")

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(self.train_length * m for m in self.eval_mults)

    def shape(self, variant, arm: str, alpha_init: float = -4.0) -> lm.LMShape:
        return lm.LMShape(vocab=len(corpus.vocabulary()), variant=variant, d_model=self.d_model,
                          n_layers=self.n_layers, n_heads=self.n_heads, d_mlp=4 * self.d_model,
                          conv=self.conv if arm == "nope" else 0, rope_base=self.rope_base if arm == "rope" else None,
                          train_length=self.train_length, alpha_init=alpha_init)


def data(cfg: TextConfig) -> dict[str, np.ndarray]:
    """The three splits as token arrays (``tasks.text.split``)."""
    return corpus.split(cfg.val_books, cfg.test_books)


# --- evaluation ----------------------------------------------------------------------------------


def ends(cfg: TextConfig, n_test: int) -> np.ndarray:
    """The end (exclusive) of every scoring window: the scored characters are the ``stride`` before each
    end, the same at every length, starting where the longest window fits."""
    first = max(cfg.lengths) * (cfg.n_position + 1)  # after the loss-by-position windows
    k = cfg.n_scored // cfg.stride
    require(first + k * cfg.stride <= n_test,
            f"the test books hold {n_test} characters; n_scored={cfg.n_scored} at {first} needs {first + k * cfg.stride}")
    return first + cfg.stride * (np.arange(k) + 1)


@torch.no_grad()
def token_losses(net: lm.Ensemble, test: np.ndarray, window: int, last: np.ndarray, keep: int, device,
                 chunk: int = 8) -> torch.Tensor:
    """Per member, the loss (nats) of the characters ``last - keep + 1 .. last`` of ``test`` for each
    entry of ``last``, each predicted from the ``window`` characters before ``last`` and those after them
    up to itself (one window of inputs ``test[last - window : last]``): (E, len(last) * keep)."""
    E = net.stacked[0].shape[0]
    out = []
    t = torch.as_tensor(test.astype(np.int64))
    for i in range(0, len(last), chunk):
        rows = torch.stack([t[e - window:e + 1] for e in last[i:i + chunk]]).to(device)  # the inputs, then the last target
        x = rows[:, :-1].expand(E, -1, -1)
        logits = net(x)[:, :, -keep:]
        target = rows[:, -keep:].expand(E, -1, -1)
        out.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                   reduction="none").reshape(E, -1))
    return torch.cat(out, 1)


def evaluate(net: lm.Ensemble, cfg: TextConfig, test: np.ndarray, device) -> dict[str, np.ndarray]:
    """Per member: the loss of every scored character at every length (``losses`` (E, lengths, scored)),
    and with the ``short`` context (``short_losses`` (E, scored)); the loss by position in the longest
    windows (``by_position`` (E, max length)); the learned temperatures."""
    last = ends(cfg, len(test)) - 1  # each window's last scored character
    losses = torch.stack([token_losses(net, test, n, last, cfg.stride, device) for n in cfg.lengths], 1)
    short = token_losses(net, test, cfg.short + cfg.stride - 1, last, cfg.stride, device)
    longest = max(cfg.lengths)
    whole = (np.arange(cfg.n_position) + 1) * longest  # whole windows from the split's start, non-overlapping
    pos = token_losses(net, test, longest, whole, longest, device, chunk=1)
    pos = pos.reshape(pos.shape[0], cfg.n_position, longest).mean(1)
    return {"losses": losses.cpu().numpy(), "short_losses": short.cpu().numpy(), "by_position": pos.cpu().numpy(),
            "tau_cv": tau_spread(net, cfg, test, last[:TAU_WINDOWS], device), **lm.temperature_arrays(net)}


TAU_WINDOWS = 8  # test windows of the training length over which tau's spread across tokens is read


@torch.no_grad()
def tau_spread(net: lm.Ensemble, cfg: TextConfig, test: np.ndarray, last: np.ndarray, device) -> np.ndarray:
    """Per member, layer and side (query, value): the coefficient of variation of SSA's inverse temperature
    over every token and head of the windows of the training length ending at ``last``
    (``lm.Ensemble.token_temperatures``), (E, n_layers, 2); NaN on a side without an SSA term."""
    t = torch.as_tensor(test.astype(np.int64))
    E = net.stacked[0].shape[0]
    x = torch.stack([t[e - cfg.train_length + 1:e + 1] for e in last]).to(device).expand(E, -1, -1)
    tau = net.token_temperatures(x).double()  # (E, layers, 2, B, H, L)
    flat = tau.flatten(3)
    cv = (flat.std(-1) / flat.mean(-1).abs()).cpu().numpy()
    variant = get_variant(net.shape.variant)
    for j, side in enumerate(("q", "v")):
        if not variant.terms(side):
            cv[:, :, j] = np.nan
    return cv


# --- the n-gram floor ----------------------------------------------------------------------------


def ngram_bits(train: np.ndarray, test: np.ndarray, targets: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """Bits for each ``targets`` index of ``test`` under a character n-gram model of ``train``: Witten-Bell
    interpolation of orders 0 (uniform over ``vocab``) to ``order`` (contexts of ``order`` characters),
    ``P_k(c | h) = (C(h c) + T(h) P_(k-1)(c | h')) / (C(h) + T(h))``, T(h) the number of distinct
    characters seen after h; the counts are exact (contexts coded in base ``vocab``)."""
    p = np.full(len(targets), 1.0 / vocab)
    tr = train.astype(np.int64)
    te = test.astype(np.int64)
    for k in range(1, order + 1):
        def code(a: np.ndarray, at: np.ndarray) -> np.ndarray:  # the k characters before each index
            c = np.zeros(len(at), dtype=np.int64)
            for j in range(k, 0, -1):
                c = c * vocab + a[at - j]
            return c

        idx = np.arange(k, len(tr))
        h = code(tr, idx)
        hc = h * vocab + tr[idx]
        uh, ch = np.unique(h, return_counts=True)
        uhc, chc = np.unique(hc, return_counts=True)
        t_arr = np.unique(uhc // vocab, return_counts=True)[1]  # distinct continuations per context, in uh's order
        qh = code(te, targets)
        qhc = qh * vocab + te[targets]

        def lookup(keys, values, q):
            i = np.searchsorted(keys, q)
            i = np.minimum(i, len(keys) - 1)
            return np.where(keys[i] == q, values[i], 0)

        c_h, t_h, c_hc = lookup(uh, ch, qh), lookup(uh, t_arr, qh), lookup(uhc, chc, qhc)
        seen = c_h > 0
        p = np.where(seen, (c_hc + t_h * p) / np.maximum(c_h + t_h, 1), p)
    return -np.log2(p)


# --- training ------------------------------------------------------------------------------------


SSA_SCRAMBLED = lm.SSA_SCRAMBLED  # the placebo that can fail


def model_keys(cfg: TextConfig) -> list[str]:
    """``ARM:NAME`` for every position arm and strategy, the twin (``ARM:placebo``) and, with SSA, its
    scrambled twin (``ARM:ssa_scrambled``). C10's fine-tuning protocol runs inside ``ARM:vanilla``, from
    its weights (``finetune``)."""
    return [f"{arm}:{s}" for arm in cfg.arms for s in lm.model_keys(cfg, scrambled=True)]


def _windows(source: torch.Tensor, g: torch.Generator, count: int, L: int) -> torch.Tensor:
    """``count`` random windows of ``L + 1`` tokens of ``source`` (inputs and the next token)."""
    start = torch.randint(0, len(source) - L - 1, (count,), generator=g)
    return torch.stack([source[s:s + L + 1] for s in start.tolist()])


def _fit(cfg: TextConfig, spec: ModelSpec, arm: str, members: Members, splits, ctx: RunContext, init: str, *,
         stream: str = "data", steps: int | None = None, lr: float | None = None, start=None,
         alpha_init: float = -4.0):
    """Train on random windows of the train split (member e from its ``stream``), the monitor on the
    validation split; from ``start`` (stacked parameters by name) where given."""
    train_t = torch.as_tensor(splits["train"].astype(np.int64))
    val_t = torch.as_tensor(splits["val"].astype(np.int64))
    L = cfg.train_length
    gens = members.generators(stream)
    mon = torch.stack([_windows(val_t, g, cfg.n_monitor, L) for g in members.generators("eval")])
    every = torch.ones(len(members), L, dtype=torch.bool)
    lr = cfg.lr if lr is None else lr
    return lm.fit_members(cfg.shape(spec.resolved, arm, alpha_init), members, ctx,
                          batch=lambda step: (torch.stack([_windows(train_t, g, cfg.batch_size, L) for g in gens]), every),
                          monitor=(mon, every), steps=cfg.steps if steps is None else steps, lr=lr,
                          log_every=cfg.log_every, label=spec.label, init=init, temp_lr=lr * cfg.temp_lr_factor,
                          start=start)


def train_model(cfg: TextConfig, key: str, ctx: RunContext) -> Trained:
    """One model of ``model_keys`` for every member seed: trained on random windows of the train split
    (each member its own stream), then evaluated on the test split (``evaluate``); ``ARM:vanilla`` then
    runs C10's fine-tuning protocol from its own weights (``finetune``: arrays ``FINETUNE`` + name)."""
    arm, name = key.split(":", 1)
    spec, init = lm.model_spec(cfg, name)
    spec = ModelSpec(key, spec.resolved)
    splits = data(cfg)
    members = Members.of(ctx.seeds)
    net, hist = _fit(cfg, spec, arm, members, splits, ctx, init)
    arrays = evaluate(net, cfg, splits["test"], ctx.device)
    if cfg.finetune and name == "vanilla":
        before = torch.from_numpy(arrays["losses"][:, 0]).mean(1).numpy() / LN2  # its bits at L (the windows the fine-tunes are scored on)
        arrays.update({FINETUNE + k: v for k, v in finetune(cfg, arm, net, before, members, splits, init, ctx).items()})
    return Trained(spec, members, arrays, hist)


def tuned_ways(cfg: TextConfig) -> tuple[str, ...]:
    """C10's fine-tunes: plain, with each of ``finetune_with`` added, and plain on another data stream (the placebo)."""
    return ("vanilla", *cfg.finetune_with, PLACEBO)


def finetune(cfg: TextConfig, arm: str, pre: lm.Ensemble, before: np.ndarray, members: Members, splits, init: str,
             ctx: RunContext) -> dict[str, np.ndarray]:
    """C10 in the paper's protocol, per member: from ``pre`` (``ARM:vanilla`` as trained, scoring ``before``
    bits per character at L (E,), as ``evaluate`` read them), fine-tuned
    ``finetune_steps`` steps at ``finetune_lr`` each way of ``tuned_ways``: plain; with each temperature
    of ``finetune_with`` added at its initial value (``global``: a factor of exactly 1; ``ssa``: u = 0,
    alpha = ``finetune_alpha``); and plain on another data stream (the placebo). Per way: the bits per
    character at L of the sliding-window evaluation before and after (``bits_before``, ``bits_WAY``:
    (E,)), and for the added temperatures how far they moved (``moved_WAY``: the largest |change| of any
    temperature parameter, (E,)), and the temperatures themselves (``WAY.NAME``)."""
    start = {k: v.detach().clone() for k, v in pre._params().items()}
    last = ends(cfg, len(splits["test"])) - 1
    L = cfg.train_length
    arrays = {"bits_before": before}
    for way in tuned_ways(cfg):
        name = "vanilla" if way == PLACEBO else way
        spec = ModelSpec(f"{FINETUNE}{arm}:{way}", lm.model_spec(cfg, name)[0].resolved)
        net, _ = _fit(cfg, spec, arm, members, splits, ctx, init, stream="finetune_twin" if way == PLACEBO else "finetune",
                      steps=cfg.finetune_steps, lr=cfg.finetune_lr, start=start, alpha_init=cfg.finetune_alpha)
        init_temps = lm.Ensemble(cfg.shape(spec.resolved, arm, cfg.finetune_alpha), list(members.seeds)).temperatures()
        moved = np.zeros(len(members))
        for k, v in net.temperatures().items():
            moved = np.maximum(moved, (v.detach().cpu() - init_temps[k].detach()).abs().reshape(len(members), -1).amax(1).numpy())
        arrays[f"bits_{way}"] = token_losses(net, splits["test"], L, last, cfg.stride, ctx.device).mean(1).cpu().numpy() / LN2
        arrays[f"moved_{way}"] = moved
        arrays.update({f"{way}.{k}": v for k, v in lm.temperature_arrays(net).items()})
    return arrays


def run(cfg: TextConfig, ctx: RunContext) -> None:
    trained = cells.trained(EXPERIMENT, cfg, ctx)  # each model its own run directory (reproduce spreads them)
    write_results(ctx, measure(cfg, ctx.seeds, trained))


# --- measurement ---------------------------------------------------------------------------------


def key_tokens(cfg: TextConfig, trained: Mapping[str, Trained]) -> np.ndarray:
    """The scored characters whose loss under the vanilla ``nope`` model (mean over seeds; the first arm's
    vanilla where there is no nope arm) falls by more than ``KEY_GAIN`` from ``short`` characters of
    context to ``train_length``: a boolean mask over the scored characters."""
    ref = trained.get("nope:vanilla") or trained[f"{cfg.arms[0]}:vanilla"]
    return (ref["short_losses"].mean(0) - ref["losses"][:, 0].mean(0)) > KEY_GAIN


def measure(cfg: TextConfig, seeds, trained: Mapping[str, Trained]) -> Results:
    splits = data(cfg)
    last = ends(cfg, len(splits["test"])) - 1
    scored = (last[:, None] - cfg.stride + 1 + np.arange(cfg.stride)[None]).ravel()  # the scored characters' indices
    floor = float(ngram_bits(splits["train"], splits["test"], scored, cfg.ngram_order, len(corpus.vocabulary())).mean())
    overlap = corpus.overlap(splits["train"], splits["test"])
    tuned = {}  # C10's fine-tunes, per arm, from the arrays of that arm's vanilla model
    for k, t in trained.items():
        ft = {a[len(FINETUNE):]: v for a, v in t.arrays.items() if a.startswith(FINETUNE)}
        if ft:
            tuned[k.split(":", 1)[0]] = ft
    key = key_tokens(cfg, trained) if "vanilla" in cfg.strategies else np.zeros(len(scored), dtype=bool)
    rows, per_seed, positions = [], [], []
    for k, t in trained.items():
        arm, name = k.split(":", 1)
        bits = t["losses"].mean(2) / LN2  # (E, lengths)
        key_bits = t["losses"][:, :, key].mean(2) / LN2 if key.any() else np.full_like(bits, np.nan)
        for j, n in enumerate(cfg.lengths):
            rows.append({"arm": arm, "strategy": name, "length": n, "mult": cfg.eval_mults[j],
                         **ci_columns("bits", bits[:, j], bounded=False),
                         **ci_columns("key_bits", key_bits[:, j], bounded=False)})
        for e, seed in enumerate(t.members.seeds):
            per_seed.append({"arm": arm, "strategy": name, "seed": seed,
                             **{f"bits_{m}L": float(bits[e, j]) for j, m in enumerate(cfg.eval_mults)},
                             **{f"key_bits_{m}L": float(key_bits[e, j]) for j, m in enumerate(cfg.eval_mults)}})
        edges = np.unique(np.geomspace(1, max(cfg.lengths) + 1, 24).astype(int))
        for a, b in zip(edges[:-1], edges[1:]):
            positions.append({"arm": arm, "strategy": name, "position": int(a), "to": int(b),
                              **ci_columns("bits", t["by_position"][:, a - 1:b - 1].mean(1) / LN2, bounded=False)})
    results = Results()
    results.table("bits", pd.DataFrame(rows), ci=["bits", "key_bits"])
    results.table("per_seed", pd.DataFrame(per_seed))
    results.table("by_position", pd.DataFrame(positions), ci=["bits"])
    results.table("temperatures", lm.temperature_table(trained))
    spread = [{"arm": k.split(":", 1)[0], "strategy": k.split(":", 1)[1], "layer": layer, "side": side,
               **ci_columns("tau_cv", t["tau_cv"][:, layer, j], bounded=True)}  # a CV is >= 0: the bootstrap keeps it so
              for k, t in trained.items() if "tau_cv" in t.arrays
              for layer in range(t["tau_cv"].shape[1]) for j, side in enumerate(("q", "v"))
              if np.isfinite(t["tau_cv"][:, layer, j]).all()]
    if spread:  # tau's spread across tokens, for the models with an SSA term (a model run before it has none)
        results.table("tau_spread", pd.DataFrame(spread), ci=["tau_cv"])
    ft_rows = []
    for arm, t in tuned.items():
        for way in tuned_ways(cfg):
            ft_rows.append({"arm": arm, "way": way, **ci_columns("bits_before", t["bits_before"], bounded=False),
                            **ci_columns("bits", t[f"bits_{way}"], bounded=False),
                            "moved_mean": float(t[f"moved_{way}"].mean()), "moved_max": float(t[f"moved_{way}"].max())})
    if ft_rows:
        results.table("finetune", pd.DataFrame(ft_rows), ci=["bits_before", "bits"])
    results.frames["curves"] = pd.DataFrame([
        {"model": k, "seed": seed, "step": int(step), "loss": float(t.history["loss"][i, e])}
        for k, t in trained.items() for e, seed in enumerate(t.members.seeds) for i, step in enumerate(t.history["step"])])
    results.metrics = {
        "lengths": list(cfg.lengths), "mults": list(cfg.eval_mults), "train_length": cfg.train_length,
        "seeds": list(seeds), "arms": list(cfg.arms), "ngram_bits": floor, "ngram_order": cfg.ngram_order,
        "test_overlap_32": overlap, "key_tokens": int(key.sum()), "scored": int(len(scored)),
        "split_chars": {k: int(len(v)) for k, v in splits.items()},
        "models": {k: {"bits": t["losses"].mean(2) / LN2,
                       **({"tau_cv": {side: np.nanmean(t["tau_cv"][:, :, j], 0).tolist() for j, side in enumerate("qv")
                                      if np.isfinite(t["tau_cv"][:, :, j]).all()}} if "tau_cv" in t.arrays else {})}
                   for k, t in trained.items()},
        "finetune": {arm: {"steps": cfg.finetune_steps, "lr": cfg.finetune_lr, "alpha": cfg.finetune_alpha,
                           "bits_before": t["bits_before"],
                           **{way: {"bits": t[f"bits_{way}"], "moved": t[f"moved_{way}"]} for way in tuned_ways(cfg)}}
                     for arm, t in tuned.items()}}
    return results


# --- claims --------------------------------------------------------------------------------------


def _lower(by: float) -> Above:
    """The test of ``lower_rule`` on per-seed differences other - control: at least ``by`` below, clearly."""
    return Above(by, sign=-1.0)


def lower_rule(control: np.ndarray, other: np.ndarray, by: float) -> tuple[str, tuple[float, float, float]]:
    """``other`` below ``control`` by at least ``by``, paired by seed: the mean difference with its
    t-interval; "reproduced" when the interval lies below 0 and the mean is at most ``-by``; "not
    reproduced: clearly higher" when the interval lies above 0; "not reproduced" otherwise."""
    x = np.asarray(other, dtype=float) - np.asarray(control, dtype=float)
    diff = mean_ci(x)
    if x.size < 2:
        return ONE_SEED, diff
    if _lower(by)(x):
        return "reproduced", diff
    return ("not reproduced: clearly higher" if diff[1] > 0 else "not reproduced"), diff


def spread_of(m: Mapping, key: str) -> str:
    """The mechanism of one model in words: the coefficient of variation of SSA's tau across the tokens of
    test windows of the training length, per layer and side (``tau_spread``); "" where it was not read."""
    tau = m["models"].get(key, {}).get("tau_cv")
    if not tau:
        return ""
    words = "; ".join(f"{side}: " + ", ".join(f"{v:.3g}" for v in vals) for side, vals in tau.items())
    flat = all(v < MIN_SPREAD for vals in tau.values() for v in vals)
    return f"CV of tau across tokens by layer ({words})" + ("; nearly constant: SSA acted as a global temperature"
                                                              if flat else "")


def claims(exported: Path) -> list[Claim]:
    """Per position arm: C10, SSA's bits per character at the training length against vanilla and against
    ``global``; C11, the rise from L to the longest length of each temperature that grows with log n
    against vanilla's ("not testable" where vanilla does not rise by ``C11_MIN``). Each with the placebo
    twin read by the same rule and the rule's calibration on the twin's per-seed differences; C10 and
    SSA's C11 also with the scrambled twin (``ssa_theory.scramble``) in SSA's place."""
    m = read_json(Path(exported) / "metrics.json")
    bits = {k: np.asarray(v["bits"], dtype=float) for k, v in m["models"].items()}
    out = []
    for arm in m["arms"]:
        get = lambda name: bits.get(f"{arm}:{name}")  # noqa: E731
        ft = m.get("finetune", {}).get(arm)
        if ft:
            v, tw = np.asarray(ft["vanilla"]["bits"]), np.asarray(ft[PLACEBO]["bits"])
            cal = calibrate(tw - v, _lower(C10_MIN), -C10_EFFECT,
                            "the placebo fine-tune's per-seed differences from the plain one, resampled")
            for cid, ctrl in (("C10.ft", "vanilla"), ("C10.ft.global", "global")):
                if "ssa" not in ft or ctrl not in ft:
                    continue
                verdict, (d, lo, hi) = lower_rule(np.asarray(ft[ctrl]["bits"]), np.asarray(ft["ssa"]["bits"]), C10_MIN)
                out.append(Claim(f"{cid} ({arm})", "text", "SSA lowers the held-out loss of a language model (real text)",
                                 f"bits per character at L after {ft['steps']} fine-tuning steps from vanilla, SSA added "
                                 f"- {ctrl} {'continued' if ctrl == 'vanilla' else 'added'} ({arm})", d, lo, hi,
                                 gated(verdict, cal), lower_rule(v, tw, C10_MIN)[0], cal.words() if cal else ""))
        van, twin, scr = get("vanilla"), get(PLACEBO), get(SSA_SCRAMBLED)
        if van is None:
            continue
        noise0 = None if twin is None else twin[:, 0] - van[:, 0]
        cal10 = calibrate(noise0, _lower(C10_MIN), -C10_EFFECT, "the twin's per-seed differences from vanilla, resampled") \
            if noise0 is not None else None
        for cid, ctrl in (("C10", "vanilla"), ("C10.global", "global")):
            ssa, c = get("ssa"), get(ctrl)
            if ssa is None or c is None:
                continue
            verdict, (d, lo, hi) = lower_rule(c[:, 0], ssa[:, 0], C10_MIN)
            placebo = lower_rule(van[:, 0], twin[:, 0], C10_MIN)[0] if twin is not None else ""
            out.append(Claim(f"{cid} ({arm})", "text", "SSA lowers the held-out loss of a language model (real text)",
                             f"bits per character at L = {m['train_length']}, SSA - {ctrl} ({arm})", d, lo, hi,
                             gated(verdict, cal10), placebo, cal10.words() if cal10 else "",
                             scrambled=lower_rule(c[:, 0], scr[:, 0], C10_MIN)[0] if scr is not None else "",
                             spread=spread_of(m, f"{arm}:ssa")))
        rise = lambda b: b[:, -1] - b[:, 0]  # noqa: E731
        cal11 = calibrate(rise(twin) - rise(van), _lower(C11_MIN), -C11_EFFECT,
                          "the twin's per-seed differences from vanilla, resampled") if twin is not None else None
        for name in GROWS:
            g = get(name)
            if g is None:
                continue
            verdict, (d, lo, hi) = lower_rule(rise(van), rise(g), C11_MIN)
            if rise(van).mean() < C11_MIN:
                verdict = f"not testable: vanilla's loss rises {rise(van).mean():+.3f} bits, under {C11_MIN:g}"
            placebo = lower_rule(rise(van), rise(twin), C11_MIN)[0] if twin is not None else ""
            scrambled = ""
            if name == "ssa" and scr is not None:
                scrambled = lower_rule(rise(van), rise(scr), C11_MIN)[0]
                if rise(van).mean() < C11_MIN:
                    scrambled = f"not testable: vanilla's loss rises {rise(van).mean():+.3f} bits, under {C11_MIN:g}"
            out.append(Claim(f"C11 ({arm}, {name})", "text",
                             "past the training length a temperature growing with log n keeps the loss from rising",
                             f"rise in bits per character from L to {m['mults'][-1]}L, {name} - vanilla ({arm})",
                             d, lo, hi, gated(verdict, cal11), placebo, cal11.words() if cal11 else "",
                             scrambled=scrambled, spread=spread_of(m, f"{arm}:{name}")))
    return out


EXPERIMENT = Experiment(
    name="text",
    version="2",
    claim="real text (KJV, offline): SSA's loss at the training length (C10) and past it, against log-n laws (C11)",
    config=TextConfig,
    run=run,
    plot=figures("ssa_theory.experiments.text_plots", "by_length", "by_position"),
    headline="bits",
    claims=claims,
    presets=lm.presets(22.3, seeds=5,
                       quick={"steps": 20, "strategies": ("vanilla", "ssa"), "finetune_steps": 5, "eval_mults": (1, 2),
                              "n_scored": 128, "n_position": 1, "d_model": 16, "n_heads": 2, "train_length": 32,
                              "stride": 16, "short": 8, "ngram_order": 2, "log_every": 10, "n_monitor": 4},
                       # a wider, deeper model trained 40x longer on 256-character windows
                       gpu={"d_model": 256, "n_layers": 6, "n_heads": 8, "steps": 20000, "batch_size": 64,
                            "train_length": 256, "n_scored": 16384, "stride": 128}),
    models=Models(model_keys, train_model),
    tasks={"text": corpus.VERSION},
    missing=corpus.missing,
)
