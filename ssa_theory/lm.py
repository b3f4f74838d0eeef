"""A small causal language model built from the public layer, E seeds at once: the model room of the LM experiments.

The architecture [ours; nanoGPT's pre-LayerNorm decoder, Zoology's attention baseline for positions]:

    tokens (B, L) -> embedding (V, D)
      -> n_layers x [ x + conv(LN(x));  x + SelectiveAttention(LN(x));  x + MLP(LN(x)) ]
      -> LN -> unembedding (D, V) -> logits (B, L, V)

Positions must not confound the temperature. With learned absolute positions extrapolation is
undefined; with RoPE, rotations never seen in training fail on their own. The default is therefore
NoPE attention plus a short causal depthwise convolution (``conv`` taps, 2 to 3) for local order;
``rope_base`` switches RoPE on inside the attention instead.

Seeds on the ensemble axis: ``Ensemble`` holds E copies of ``TinyLM`` stacked parameter by parameter
(``torch.func.stack_module_state``) and runs them with ``vmap``, so the E members train as one call
and every parameter has a leading member axis, as in ``ssa_theory.ensemble``. Member e is initialised
from its own seed (``seeding.derive_seed(seed, "init")``, inside a forked RNG so no global state
leaks) and equals a single model with that seed (tested).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ssa_theory.nn import SelectiveAttention
from ssa_theory.scramble import Scrambler
from ssa_theory.variants import SCRAMBLED_SUFFIX, Variant, get_variant
from ssa_theory.seeding import derive_seed, torch_generator
from ssa_theory import skeleton


@dataclass(frozen=True)
class LMShape:
    """The model's sizes and its attention variant."""

    vocab: int
    variant: "str | Variant" = "vanilla"  # a name, or the Variant already resolved (built once per member and layer)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_mlp: int = 128
    conv: int = 2  # causal convolution taps (0: none)
    rope_base: float | None = None  # None: NoPE
    train_length: int | None = None  # for strategies that read it (yarn, qwen, llama4)
    score: str = "dot"  # the attention's score geometry (SelectiveAttention): "dot" (free), "cosine", "softcap"
    score_bound: float | None = None  # B of a bounded geometry: scores B cos(q, k) or B tanh(q.k / (sqrt(d) B))
    alpha_init: float = -4.0  # where SSA's position terms start (sigmoid(-4) = 0.018: nearly vanilla)


class CausalConv(nn.Module):
    """Depthwise causal convolution: ``y_t = sum_j w_j * x_(t-j)``, j < taps; x (B, L, D) -> (B, L, D)."""

    def __init__(self, d: int, taps: int) -> None:
        super().__init__()
        self.taps = taps
        self.weight = nn.Parameter(torch.randn(taps, d) / math.sqrt(taps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        padded = F.pad(x, (0, 0, self.taps - 1, 0))  # (B, L + taps - 1, D)
        return sum(self.weight[j] * padded[:, self.taps - 1 - j: self.taps - 1 - j + L] for j in range(self.taps))


class Block(nn.Module):
    def __init__(self, shape: LMShape) -> None:
        super().__init__()
        D = shape.d_model
        self.conv = CausalConv(D, shape.conv) if shape.conv else None
        self.ln_c = nn.LayerNorm(D) if shape.conv else None
        self.ln_a, self.ln_m = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = SelectiveAttention(D, shape.n_heads, variant=shape.variant, rope_base=shape.rope_base,
                                       train_length=shape.train_length, score=shape.score, score_bound=shape.score_bound,
                                       alpha_init=shape.alpha_init)
        self.mlp = nn.Sequential(nn.Linear(D, shape.d_mlp), nn.GELU(), nn.Linear(shape.d_mlp, D))

    def _convolved(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.conv is None else x + self.conv(self.ln_c(x))

    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the attention reads from the block's input x (B, L, D): the convolved, normed stream."""
        return self.ln_a(self._convolved(x))

    def forward(self, x: torch.Tensor, read: torch.Tensor | None = None, extras: dict | None = None):
        """x (B, L, D) -> (B, L, D); with ``read`` (indices (R,)), also the attention weights
        (B, H, R, L) that those rows pay, as the layer applies them. ``extras``: the strategies' per-token
        data (``{"k_freq": (B, L)}``, each token's training frequency, for the ``freq`` strategy)."""
        x = self._convolved(x)
        h = self.ln_a(x)
        weights = None if read is None else self.attn.attention_weights(h, rows=read, extras=extras)
        x = x + self.attn(h, extras=extras)
        x = x + self.mlp(self.ln_m(x))
        return x if read is None else (x, weights)


class TinyLM(nn.Module):
    """One member: tokens (B, L) -> next-token logits (B, L, V)."""

    def __init__(self, shape: LMShape) -> None:
        super().__init__()
        self.embed = nn.Embedding(shape.vocab, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self.ln = nn.LayerNorm(shape.d_model)
        self.head = nn.Linear(shape.d_model, shape.vocab, bias=False)

    def token_temperatures(self, tokens: torch.Tensor, extras: dict | None = None) -> torch.Tensor:
        """SSA's inverse temperature at every token, as each layer applies it: (n_layers, 2, B, H, L), the
        query side then the value side (``SelectiveAttention.temperature``); 1 where a side has no SSA term."""
        x = self.embed(tokens)
        out = []
        for block in self.blocks:
            h = block.attn_input(x)
            sides = [block.attn.temperature(h, side, extras=extras) for side in ("q", "v")]
            out.append(torch.stack([torch.ones(h.shape[0], block.attn.n_heads, h.shape[1], device=h.device,
                                               dtype=h.dtype) if t is None else t for t in sides]))
            x = block(x, extras=extras)
        return torch.stack(out)

    def forward(self, tokens: torch.Tensor, read: torch.Tensor | None = None, token_freq: torch.Tensor | None = None,
                extras: dict | None = None, taus: bool = False):
        """Logits (B, L, V); with ``read`` (row indices (R,)), also every layer's attention weights at
        those rows, stacked (n_layers, B, H, R, L). ``token_freq`` (V,): each vocabulary token's
        training frequency, which the ``freq`` strategy reads for every key. ``extras``: more per-token
        data for the strategies (a scrambled variant's permutations, (B, L)), the same for every layer. With
        ``taus``, ``token_temperatures`` instead (how ``Ensemble`` reaches it through ``functional_call``)."""
        if taus:
            return self.token_temperatures(tokens, extras)
        x = self.embed(tokens)
        extras = dict(extras or {})
        if token_freq is not None:
            extras["k_freq"] = token_freq[tokens]
        extras = extras or None
        weights = []
        for block in self.blocks:
            if read is None:
                x = block(x, extras=extras)
            else:
                x, w = block(x, read, extras)
                weights.append(w)
        logits = self.head(self.ln(x))
        return logits if read is None else (logits, torch.stack(weights))


def member(shape: LMShape, seed: int, init: str = "init") -> TinyLM:
    """The model of member seed ``seed``: torch's default initialisation drawn from the seed's ``init``
    stream (``init_twin`` for a placebo twin: the same law, another draw)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, init))
        return TinyLM(shape)


class Ensemble(nn.Module):
    """E members of ``TinyLM`` as one module: every parameter stacked with a leading member axis (E, ...).

    ``forward(tokens)`` takes tokens (E, B, L), member e reading ``tokens[e]``, and returns logits
    (E, B, L, V) through ``vmap``; member e equals ``member(shape, seeds[e])`` (tested). Adam on these
    stacked parameters, with the members' losses summed (``train.fit``), trains every member as its own
    model (``ssa_theory.ensemble``).
    """

    def __init__(self, shape: LMShape, seeds, token_freq: torch.Tensor | None = None, init: str = "init") -> None:
        super().__init__()
        models = [member(shape, s, init) for s in seeds]
        self.register_buffer("token_freq",
                             None if token_freq is None else torch.as_tensor(token_freq, dtype=torch.float32))
        stacked, buffers = stack_module_state(models)
        if buffers:
            raise ValueError(f"TinyLM has no buffers; got {sorted(buffers)}")
        self.shape = shape
        self.names = list(stacked)
        self.stacked = nn.ParameterList(nn.Parameter(stacked[k].detach().clone()) for k in self.names)
        self._base = [copy.deepcopy(models[0]).to("meta")]  # a list: not a registered submodule
        # a scrambled variant (ssa_theory.scramble): fresh permutations at every call, from each member's placebo stream
        self.scrambler = Scrambler(get_variant(shape.variant), [torch_generator(s, "placebo") for s in seeds])

    def _params(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.stacked))

    def forward(self, tokens: torch.Tensor, read: torch.Tensor | None = None):
        """Logits (E, B, L, V); with ``read`` also the weights (E, n_layers, B, H, R, L)."""
        base, freq = self._base[0], self.token_freq
        with warnings.catch_warnings():  # vmap runs SDPA member by member on the CPU (no batching rule): slower, exact
            warnings.filterwarnings("ignore", message="There is a performance drop")
            if self.scrambler:  # (E, B, L) permutations, member e reading its own
                extras = self.scrambler(tokens.shape[1], tokens.shape[2], tokens.device)
                return vmap(lambda p, t, x: functional_call(base, p, (t, read, freq, x)))(self._params(), tokens, extras)
            return vmap(lambda p, t: functional_call(base, p, (t, read, freq)))(self._params(), tokens)

    def token_temperatures(self, tokens: torch.Tensor) -> torch.Tensor:
        """SSA's inverse temperature at every token of tokens (E, B, L), per member (``TinyLM.token_temperatures``):
        (E, n_layers, 2, B, H, L)."""
        base = self._base[0]
        extras = self.scrambler(tokens.shape[1], tokens.shape[2], tokens.device) if self.scrambler else None
        call = lambda p, t, x: functional_call(base, p, (t, None, None, x), {"taus": True})  # noqa: E731
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")
            return vmap(call, in_dims=(0, 0, None if extras is None else 0))(self._params(), tokens, extras)

    def temperatures(self) -> dict[str, torch.Tensor]:
        """The learned temperature parameters of every layer, per member: name -> (E, ...); e.g.
        ``blocks.0.attn.temp.q_alpha`` (E, H), read as sigmoid(alpha) by a position term."""
        return {k: v for k, v in self._params().items() if ".attn.temp." in k}


PLACEBO = skeleton.PLACEBO  # the vanilla twin's model key and row (``skeleton.twin``)
SSA_SCRAMBLED = "ssa" + SCRAMBLED_SUFFIX  # SSA with its terms' inputs scrambled (``skeleton.scrambled``): the placebo that can fail


def check_model_fields(cfg) -> None:
    """The checks of the model fields an LM experiment's config shares across fields (``strategies``,
    ``placebo``, ``d_model`` and ``n_heads``; each field's own range is ``config.SHARED_BOUNDS``):
    ``ConfigError`` naming the field and the fix."""
    from ssa_theory.config import require
    from ssa_theory.variants import resolve_variants

    require(len(cfg.strategies) >= 1, "strategies must name at least one strategy")
    require(PLACEBO not in cfg.strategies,
            f"{PLACEBO!r} names the vanilla twin; it is not a strategy (set placebo=true)")
    resolve_variants(cfg)
    require(not cfg.placebo or "vanilla" in cfg.strategies, "placebo=true needs vanilla among the strategies")
    require(cfg.d_model % cfg.n_heads == 0, f"d_model={cfg.d_model} must be a multiple of n_heads={cfg.n_heads}")



def twins(cfg, scrambled: bool = True) -> list[str]:
    """The placebos an LM experiment trains beside its strategies where ``cfg.placebo``: the vanilla twin,
    then (with ``scrambled`` and SSA among the strategies) SSA's scrambled twin (``SSA_SCRAMBLED``)."""
    if not cfg.placebo:
        return []
    return [PLACEBO, *([SSA_SCRAMBLED] if scrambled and "ssa" in cfg.strategies else [])]


def model_keys(cfg, scrambled: bool = False) -> list[str]:
    """Every model an LM experiment's run trains (``Experiment.models``): its strategies, then its placebos
    (``twins``; SSA's scrambled twin only with ``scrambled``)."""
    return list(cfg.strategies) + twins(cfg, scrambled)


def model_spec(cfg, key: str):
    """``(ModelSpec, init stream)`` of a model key of ``model_keys``: a strategy as itself (the variant
    ``cfg`` resolved) from the ``init`` stream; ``PLACEBO`` as ``skeleton.twin()``, vanilla attention
    from ``init_twin``; ``NAME_scrambled`` as ``skeleton.scrambled(NAME)``, from ``init`` (the same
    draw as NAME's)."""
    from ssa_theory.variants import variant_of

    if key == PLACEBO:
        spec = skeleton.twin()
    elif key.endswith(SCRAMBLED_SUFFIX):  # the scrambled twin of a strategy of the config (skeleton.scrambled)
        spec = skeleton.scrambled(variant_of(cfg, key[:-len(SCRAMBLED_SUFFIX)]).name)
    else:
        spec = skeleton.ModelSpec.of(key, variant_of(cfg, key))
    return spec, spec.init

def presets(minutes: float, quick: dict, gpu: dict, seeds: int = 3) -> dict:
    """The LM experiments' presets: ``default`` (``seeds`` seeds, the run ``paper_repro.md`` reports;
    ``minutes`` is its measured time, for scheduling), ``quick`` (a smoke test with ``quick``'s
    overrides) and ``gpu`` (``gpu``'s overrides, 5 seeds)."""
    from ssa_theory.registry import Preset

    return {"default": Preset({}, seeds=seeds,
                              about=f"the run paper_repro.md reports: one model per strategy, {seeds} seeds, about "
                                    f"{minutes:.0f} minutes of one core, spread over every core",
                              minutes=minutes),
            "quick": Preset(quick, seeds=2, about="a smoke test in seconds; numbers are not converged", scratch=True),
            "gpu": Preset(gpu, seeds=max(5, seeds),
                          about="10-100x the default for a GPU: do the CPU verdicts hold at a larger scale?")}


def temperature_arrays(net: Ensemble) -> dict[str, np.ndarray]:
    """The learned temperatures as ``Trained`` arrays: ``temp.NAME`` -> (E, ...), read by ``temperature_table``."""
    return {f"temp.{k}": v.detach().cpu().numpy() for k, v in net.temperatures().items()}


# --- training on next-token tasks scored at some positions ----------------------------------------


def scored(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per member and sequence, over the scored positions: mean cross-entropy (E, B), the number of
    wrong argmax predictions (E, B) and of scored positions (E, B). ``logits`` (E, B, n-1, V) come
    from ``tokens[..., :-1]``; ``mask`` (E, n-1) or (E, B, n-1) marks the positions whose next token is
    scored."""
    target = tokens[..., 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                         reduction="none").reshape(target.shape)
    m = (mask if mask.dim() == 3 else mask[:, None, :]).to(logits.device).expand_as(ce)
    count = m.sum(-1)
    wrong = ((logits.argmax(-1) != target) & m).sum(-1)
    return (ce * m).sum(-1) / count.clamp_min(1), wrong, count


def fit_members(shape: LMShape, members, ctx, *, batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                monitor: tuple[torch.Tensor, torch.Tensor], steps: int, lr: float, log_every: int,
                label: str, token_freq: torch.Tensor | None = None, init: str = "init",
                log_at=None, temp_lr: float | None = None,
                start: Mapping[str, torch.Tensor] | None = None) -> tuple[Ensemble, dict]:
    """Train ``Ensemble(shape, members.seeds)`` on ``batch(step) -> (tokens (E, B, n), mask)``, the loss
    being each member's mean cross-entropy at its scored positions (``scored``); score the fixed
    ``monitor`` set (tokens, mask) every ``log_every`` steps; ``token_freq`` (V,) is each token's
    training frequency (for the ``freq`` strategy); ``init`` the initialisation stream (``member``);
    ``log_at`` the step counts after which the monitor is scored instead of every ``log_every``;
    ``temp_lr`` the temperature parameters' own learning rate (None: ``lr``, as every other weight);
    ``start`` stacked parameters (E, ...) by name to start from (a pretrained model's: the ones this
    model shares are copied, its temperatures keep their initial values).
    Returns the model and the history
    ``{"step", "loss", "error"}`` (``error``: the fraction of the monitor's scored positions wrong)."""
    from ssa_theory.train import fit

    device = ctx.device
    net = Ensemble(shape, list(members.seeds), token_freq, init).to(device)
    if start is not None:
        with torch.no_grad():
            for name, p in net._params().items():
                if name in start:
                    p.copy_(start[name])
    mon_tokens, mon_mask = (t.to(device) for t in monitor)

    def member_loss(step: int) -> torch.Tensor:
        tokens, mask = batch(step)
        tokens = tokens.to(device)
        ce, _, _ = scored(net(tokens[..., :-1]), tokens, mask.to(device))
        return ce.mean(1)

    def evaluate() -> dict[str, torch.Tensor]:
        ce, wrong, count = scored(net(mon_tokens[..., :-1]), mon_tokens, mon_mask)
        return {"loss": ce.mean(1), "error": wrong.sum(1) / count.sum(1).clamp_min(1),
                "exact": (wrong == 0).float().mean(1)}

    hist = fit(parameter_groups(net, lr if temp_lr is None else temp_lr), member_loss, steps=steps, lr=lr,
               log_every=log_every, evaluate=evaluate,
               progress=ctx.progress(label, steps), model=label, members=members.labels, log_at=log_at)
    return net, hist


def parameter_groups(net: Ensemble, temp_lr: float) -> list[dict]:
    """Adam's parameter groups: every weight at the run's rate, the temperature parameters (``Ensemble.temperatures``)
    in a group of their own at ``temp_lr``. The authors' released code trains its temperature scalar at its
    own rate; under one shared rate a scalar that starts near neutral barely moves in a short run
    (400 Adam steps at 3e-3 under cosine decay move it at most about 0.6)."""
    temps = set(net.temperatures())
    rest = [p for k, p in net._params().items() if k not in temps]
    groups = [{"params": rest}]
    if temps:
        groups.append({"params": [p for k, p in net._params().items() if k in temps], "lr": temp_lr})
    return groups


def steps_to(steps, values, target: float, below: bool) -> float:
    """The first logged step at which ``values`` reach ``target`` (at or below it when ``below``); NaN if never."""
    v = np.asarray(values)
    hit = v <= target if below else v >= target
    return float(np.asarray(steps)[np.argmax(hit)]) if hit.any() else math.nan


def time_to_learn(histories: dict, members, *, accuracy_key: str, accuracy_target: float, higher_is_better: bool,
                  cell_name: str, cell_values):
    """Per strategy and grid cell (C8): the steps each member needs to reach vanilla's final monitor
    loss (same seed and cell), over vanilla's own steps to it, as a geometric mean with an interval
    (``stats.ratio_ci``; left empty where every seed has the same ratio) and per seed; and the mean steps to ``accuracy_target`` of ``accuracy_key``.
    A pandas DataFrame, empty without a vanilla run."""
    import pandas as pd

    from ssa_theory.stats import ratio_ci

    if "vanilla" not in histories:
        return pd.DataFrame()
    van = histories["vanilla"]
    rows = []
    for s, h in histories.items():
        for e, (c, seed) in enumerate(zip(members.cells, members.seeds)):
            target = float(van["loss"][-1, e])
            mine = steps_to(h["step"], h["loss"][:, e], target, below=True)
            ref = steps_to(van["step"], van["loss"][:, e], target, below=True)
            acc = h[accuracy_key][:, e]
            rows.append({"strategy": s, cell_name: cell_values[c], "seed": seed,
                         "ratio": mine / ref if ref > 0 else math.nan,
                         "to_accuracy": steps_to(h["step"], acc, accuracy_target, below=not higher_is_better)})
    df = pd.DataFrame(rows)
    out = []
    for (s, c), g in df.groupby(["strategy", cell_name], sort=False):
        m, lo, hi = ratio_ci(g.ratio)
        if not hi > lo:  # identical seeds (or one): a t-interval of no width says nothing; left empty
            lo = hi = math.nan
        out.append({"strategy": s, cell_name: c, "steps_ratio": m, "steps_ratio_lo": lo, "steps_ratio_hi": hi,
                    "reached": int(g.ratio.notna().sum()), "seeds": len(g), "steps_to_accuracy": g.to_accuracy.mean(),
                    "per_seed_ratio": " ".join(f"{r:.3g}" for r in g.ratio)})
    return pd.DataFrame(out)


def temperature_table(trained):
    """The learned temperature scalars per layer and strategy, over members: sigmoid(alpha) of a
    position term, SSMax's s, the released form's beta, a global g (every (E, H) temperature
    parameter of ``Trained.arrays["temp.NAME"]``). A pandas DataFrame."""
    import pandas as pd

    rows = []
    for s, t in trained.items():
        for k, v in t.arrays.items():
            if not k.startswith("temp.") or v.ndim != 2:  # scalars per head only: (E, H)
                continue
            alpha = k.endswith("alpha")
            x = 1 / (1 + np.exp(-v)) if alpha else v
            rows.append({"strategy": s, "parameter": k[len("temp."):],
                         "reads_as": "sigmoid(alpha)" if alpha else k.split(".")[-1],
                         "mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())})
    return pd.DataFrame(rows)
