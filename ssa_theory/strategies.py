"""Temperature strategies: one declared table, the only place each strategy's formula lives.

A *strategy* is one way of changing attention's temperature, declared once as a ``Strategy``:

    side      what it scales: ``q`` (query i's logits), ``k`` (key j's logits), ``v`` (value j),
              ``out`` (query i's output, before the output projection), ``sink`` (an extra logit
              per head whose value is zero)
    combine   ``add``: a term of SSA's temperature ``tau = 1 + sum of terms`` on that side;
              ``mul``: a factor that multiplies the side's temperature
    params    its parameters, their shapes, initial and neutral values (``Param``)
    formula   its value from ``Inputs`` (n, the keys each query sees; positions; the side's inputs
              and projections; the train length; the key frequencies) and its parameters
    needs     what it needs from the caller (``train_length``; an entry of ``extras``, the per-token
              data a caller passes a layer: ``k_freq``), checked once
    reads     which inputs its formula reads (``READS``): declared, so that a caller knows without
              calling it (a temperature law of n reads ``n``, ``positions`` and ``train_length`` only);
              a strategy that declares nothing is taken to read every input
    range     the range of its factor (or of ``1 + term``), which experiments read instead of their
              own copies of a bound
    neutral   ``params``: every parameter at its neutral value makes it the identity;
              ``train_length``: parameter-free and exactly 1 within the training length; ``None``:
              no setting equals vanilla attention (``log_n``, ``ssmax``, ``asentmax``)
    source    where it comes from

The attention layers (``ssa_theory.attention.Attention``, the experiments' ensemble layer, and
``ssa_theory.nn.SelectiveAttention``, its public face) apply every strategy through ``apply``: one
formula each, never a second copy. A *variant* (``variants.VARIANTS``) is a list of strategies
placed on sides; SSA's own terms (``ssa_pos``, ``ssa_tok``, ``ssa_tok_own``) are strategies too.

Strategies from outside the package come in three ways (``register_strategy``, a dotted path
``package.module:attr`` wherever a strategy or variant name is accepted, and the entry-point group
``ssa_theory.strategies``); ``resolve`` finds any of them, and ``ssa_theory.testing.check_strategy``
checks that one behaves.

The formula's contract, in the public layer's terms (``nn.SelectiveAttention``: B batch, H heads, L
the side's tokens, w the side's head width, D the model width). Every tensor may carry leading axes
``*`` before these (the experiments run several seeds as one leading axis): write formulas that
broadcast on the trailing axes, and never index or reshape the leading ones.

- parameters arrive shaped per head: a ``("H",)`` parameter as ``(*, 1, H, 1)``, ``("H", "w")`` as
  ``(*, 1, H, 1, w)``, a scalar ``()`` as ``(*, 1, 1, 1)``: each broadcasts against ``(B, H, L)``
  (and ``(B, H, L, w)``) as it is. A matrix (``("D", "Hw")``) arrives as ``(*, D, H w)``, for
  ``inputs.linear``.
- ``Inputs`` (below): ``positions`` are 0-based token indices ``(B or 1, 1, L)`` (``log_pos()`` is
  log of the 1-based position), ``n`` the keys a token sees, broadcastable to ``(B, H, L)``,
  ``proj`` and ``q`` ``(B, H, L, w)``, ``x`` ``(B, L, D)``, ``k_freq`` ``(B, 1, L)``.
- the value is broadcastable to ``(B, H, L)``: a factor or term per token and head (``out``:
  ``(B, H, Lq, 1)`` per head or ``(B, H, Lq, w)`` per channel; ``sink``: ``(1 or B, H, 1)``, the
  extra logit of each query).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

SIDES = ("q", "k", "v", "out", "sink")
EXTRAS = ("k_freq", "tok_from", "pos_from")  # per-token data a caller may pass a layer for its strategies (``extras=``)
EXTRA_ABOUT = {"k_freq": "each key token's training frequency, (B, Lk)",
               # the scrambled placebo's permutations (ssa_theory.scramble), drawn by the caller at every call
               "tok_from": "for each token slot, the flat index (b * L + l) of the slot whose token the scrambled "
                           "token term reads, (B, L)",
               "pos_from": "for each token slot, the flat index (same row) of the slot whose position the scrambled "
                           "position term reads, (B, L)"}
NEEDS = ("train_length", *EXTRAS)
READS = ("x", "proj", "positions", "n", "q", "train_length", *EXTRAS)  # what a formula may read of ``Inputs``
ENTRY_POINT_GROUP = "ssa_theory.strategies"


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy: ``shape`` in symbols (``H`` heads, ``w`` the side's head width,
    ``d`` the query head width, ``D`` the model width, ``Hw`` = H * w), an initial value (``init``; the
    string ``"normal"`` draws N(0, qk_std^2) from each member's generator) and the value at which the
    strategy is the identity (``neutral``)."""

    shape: tuple[str, ...]
    init: float | str
    neutral: float
    decayed: bool = False  # a vector or matrix (priced by weight decay where a task prices them), not a per-head scalar
    # the strategy is the identity whatever this parameter is once the others are neutral, so a neutral start
    # may leave it at its initial value (SSA's own token projection: at 0 too, u = 0 would be a saddle)
    free_at_neutral: bool = False


@dataclass
class Inputs:
    """What a formula may read, filled by the attention core (``ssa_theory.functional``) from what
    the layer computed and what its caller passed, in the shapes of the module docstring's contract
    (``*``: leading axes a formula broadcasts over). Tensors are on the layer's device and dtype;
    None where not given (a formula reads only what its strategy declares in ``reads``)."""

    x: torch.Tensor  # the side's inputs (*, B, L, D)
    proj: torch.Tensor | None  # the side's projection split into heads (*, B, H, L, w), before RoPE
    positions: torch.Tensor | None  # 0-based token indices of the side's tokens (B or 1, 1, L), integers
    n: torch.Tensor | None  # q side: the visible keys each query sees, broadcastable to (*, B, H, Lq);
    #                         k and v sides: the keys token j sees as a query of the same call (B, 1, Lk)
    q: torch.Tensor | None  # the queries (*, B, H, Lq, d), for query-dependent scales
    train_length: int | None
    heads: Callable[[torch.Tensor], torch.Tensor]  # (*, B, L, H*w) -> (*, B, H, L, w)
    linear: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # x (*, B, L, D) @ W (*, D, k) -> (*, B, L, k)
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)  # per-token data the caller gave (EXTRAS)
    dtype: torch.dtype | None = None  # the layer's dtype (that of x), which a formula computes in

    @property
    def pos(self):
        raise AttributeError("Inputs.pos (1-based) was replaced by Inputs.positions (0-based, as the public layer's "
                             "positions): use inputs.positions + 1, or inputs.log_pos() for log of the 1-based position")

    @property
    def k_freq(self) -> torch.Tensor | None:
        """Each key token's training frequency, ``(*, B, 1, Lk)`` (``extras["k_freq"]``, given as (B, Lk)
        or with leading axes)."""
        f = self.extras.get("k_freq")
        return None if f is None else f[..., None, :]

    def log_pos(self) -> torch.Tensor:
        """log of the 1-based positions, ``(B or 1, 1, L)`` in the layer's dtype: SSA's log n."""
        return torch.log((self.positions + 1).to(self.dtype))


Formula = Callable[[Inputs, Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class Strategy:
    """One temperature strategy (see the module docstring for every field)."""

    name: str
    side: str | None  # None: SSA's terms, placed on q, k or v by the variant
    combine: str
    formula: Formula
    params: Mapping[str, Param] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    range: tuple[float, float] = (-math.inf, math.inf)
    neutral: str | None = "params"
    source: str = ""
    about: str = ""
    origin: str = "built-in"  # built-in, register_strategy, a dotted path, or an entry point
    reads: frozenset[str] | None = None  # None: every input of READS

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", frozenset(READS) if self.reads is None else frozenset(self.reads))
        unread = set(self.reads) - set(READS)
        if unread:
            raise ValueError(f"strategy {self.name!r}: unknown reads {sorted(unread)}; known: {READS}")
        if not set(self.needs) <= set(self.reads):
            raise ValueError(f"strategy {self.name!r} needs {sorted(set(self.needs) - set(self.reads))} but does "
                             "not declare that it reads them")
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"strategy {self.name!r}: side must be one of {SIDES} or None (got {self.side!r})")
        if self.combine not in ("add", "mul"):
            raise ValueError(f"strategy {self.name!r}: combine must be 'add' or 'mul' (got {self.combine!r})")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"strategy {self.name!r}: unknown needs {sorted(unknown)}; known: {NEEDS}")
        if self.neutral not in ("params", "train_length", None):
            raise ValueError(f"strategy {self.name!r}: neutral must be 'params', 'train_length' or None")
        if self.neutral == "params" and not self.params:
            raise ValueError(f"strategy {self.name!r} has no parameters to set neutral; use neutral='train_length' or None")
        if not (self.range[0] <= self.range[1]):
            raise ValueError(f"strategy {self.name!r}: range {self.range} is empty")

    def check_inputs(self, *, train_length: int | None = None, extras: Mapping | None = None, where: str = "") -> None:
        """Raise a ``ValueError`` naming what the caller must give this strategy, once."""
        if "train_length" in self.needs and not (train_length and train_length >= 2):
            raise ValueError(f"strategy {self.name!r} needs train_length >= 2 (got {train_length}){where}")
        for name in EXTRAS:
            if name in self.needs and (extras is None or extras.get(name) is None):
                raise ValueError(f"the {self.name!r} strategy needs extras={{{name!r}: ...}}: {EXTRA_ABOUT[name]}")


# --- the built-in formulas ---------------------------------------------------------------------------------


def _ssa_pos(i: Inputs, p):
    # SSA's position term sigmoid(alpha_h) log n: (*, 1, H, L), the same for every batch row
    return torch.sigmoid(p["alpha"]) * i.log_pos()


class _TokenArgument(torch.autograd.Function):
    """``(GELU(h) * u).sum(-1)`` with a backward that keeps GELU(h) instead of rebuilding the graph's
    temporaries: the same arithmetic as autograd's, in fewer passes over the (*, B, L, H, w) tensor."""

    generate_vmap_rule = True  # the LM runs its members under torch.func.vmap

    @staticmethod
    def forward(h: torch.Tensor, u: torch.Tensor):
        g = F.gelu(h)
        return (g * u).sum(-1), g

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        h, u = inputs
        ctx.save_for_backward(h, u, output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _):
        h, u, g = ctx.saved_tensors
        grad = grad[..., None]
        dh = torch.ops.aten.gelu_backward(grad * u, h) if ctx.needs_input_grad[0] else None
        du = (grad * g).sum_to_size(u.shape) if ctx.needs_input_grad[1] else None
        return dh, du


def token_argument(h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``u . GELU(h)`` (*, B, H, L), the argument of the token term's tanh, from h (*, B, H, L, w) and
    u shaped per head (*, 1, H, 1, w); computed in the projection's own (*, B, L, H, w) layout, where
    h is contiguous (measured faster than a matmul on the head-major view)."""
    return _TokenArgument.apply(h.transpose(-3, -2), u.transpose(-3, -2))[0].transpose(-1, -2)


def _token_term(h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """tanh(u . GELU(h)) (*, B, H, L): SSA's token term."""
    return torch.tanh(token_argument(h, u))


def _ssa_tok(i: Inputs, p):
    return _token_term(i.proj, p["u"])


def _ssa_tok_own(i: Inputs, p):
    return _token_term(i.heads(i.linear(i.x, p["w"])), p["u"])


def per_head(t: torch.Tensor, shape: tuple[str, ...]) -> torch.Tensor:
    """A parameter stored with a leading member axis, (E, *declared shape), as a formula sees it (the
    module docstring's contract): ``("H", ...)`` -> (E, 1, H, 1, ...), ``()`` -> (E, 1, 1, 1), a
    matrix as stored."""
    if not shape:
        return t.reshape(*t.shape, 1, 1, 1)
    if shape[0] == "H":
        return t.unsqueeze(1).unsqueeze(3)
    return t


def _global(i: Inputs, p):
    return (1.0 + torch.tanh(p["g"])) * torch.ones_like(torch.log(i.n))


def _global_v(i: Inputs, p):
    return (1.0 + torch.tanh(p["g"])) * torch.ones_like(i.log_pos())


def _global_free(i: Inputs, p):
    return torch.exp(p["g"]) * torch.ones_like(torch.log(i.n))


def _log_n(i: Inputs, p):
    return torch.log(i.n)


def _ssmax(i: Inputs, p):
    return p["s"] * torch.log(i.n)


def _yarn(i: Inputs, p):
    return (1.0 + 0.1 * torch.log(torch.clamp(i.n / i.train_length, min=1.0))) ** 2


def _qwen(i: Inputs, p):
    return torch.clamp(torch.log(i.n) / math.log(i.train_length), min=1.0)


def _released(i: Inputs, p):
    return 1.0 + torch.exp(-torch.exp(p["beta"])) * torch.log(i.n)


def _asentmax(i: Inputs, p):
    log_n = torch.log(i.n)
    return 1.0 + F.softplus((i.q * p["w"]).sum(-1)) * log_n.clamp_min(1e-6) ** (2.0 * torch.tanh((i.q * p["w2"]).sum(-1)))


def _freq(i: Inputs, p):
    c = p["g"]
    return 1.0 + c * torch.log(1.0 / i.k_freq.to(c.dtype))


LLAMA4_BETA = 0.1  # Llama 4's attn_scale
MINISTRAL_BETA = 0.1  # Ministral 3's llama_4_scaling_beta (its config's default)


def _llama4(i: Inputs, p):
    # transformers' Llama4TextAttention.forward: 1 + attn_scale log1p(floor((p + 1) / floor_scale)), p the
    # 0-based query slot; L0 is the training length (Llama 4's floor_scale, 8192 there)
    return 1.0 + LLAMA4_BETA * torch.log1p(torch.floor((i.positions + 1).to(i.dtype) / i.train_length))


def _ministral(i: Inputs, p):
    # transformers' ministral3 get_llama_4_attn_scale: 1 + beta log(1 + floor(p / L0)), p the 0-based
    # position_ids, L0 its original_max_position_embeddings: one position later than Llama 4's step
    return 1.0 + MINISTRAL_BETA * torch.log1p(torch.floor(i.positions.to(i.dtype) / i.train_length))


def _gate(i: Inputs, p):
    # our output gate 2 sigmoid(x W_g), elementwise (E, B, H, Lq, w): neutral at W_g = 0
    return 2.0 * torch.sigmoid(i.heads(i.linear(i.x, p["w"])))


def _qwen_gate(i: Inputs, p):
    # Gated Attention's head-wise gate sigmoid(x W_g + b), one scalar per head and query: (*, B, H, Lq, 1)
    z = i.linear(i.x, p["w"]).transpose(-1, -2) + p["b"]  # (*, B, H, Lq)
    return torch.sigmoid(z)[..., None]


def _sink(i: Inputs, p):
    return p["s"]  # the sink's logit per head (*, 1, H, 1): the same for every query


_H = ("H",)

BUILTINS: tuple[Strategy, ...] = (
    # SSA's own terms (Zhang et al., NeurIPS 2024, section 3): tau = 1 + sigmoid(alpha) log n + tanh(u . GELU(h))
    Strategy("ssa_pos", None, "add", _ssa_pos, {"alpha": Param(_H, "alpha_init", -math.inf)},
             range=(0.0, math.inf), source="Zhang et al., Selective Attention, NeurIPS 2024 (position term)",
             about="sigmoid(alpha_h) log n: a per-head position temperature", reads={"positions"}),
    Strategy("ssa_tok", None, "add", _ssa_tok, {"u": Param(("H", "w"), 0.0, 0.0, decayed=True)},
             range=(-1.0, 1.0), source="Zhang et al., Selective Attention, NeurIPS 2024 (token term, weight sharing)",
             about="tanh(u . GELU(h)), h the side's own projection: one vector u per head", reads={"proj"}),
    Strategy("ssa_tok_own", None, "add", _ssa_tok_own,
             {"u": Param(("H", "w"), 0.0, 0.0, decayed=True),
              "w": Param(("D", "Hw"), "normal", 0.0, decayed=True, free_at_neutral=True)},
             range=(-1.0, 1.0), source="Zhang et al., Selective Attention, NeurIPS 2024 (token term, no sharing)",
             about="tanh(u . GELU(x W_t)) with its own projection W_t", reads={"x"}),
    # competing strategies: a factor on every query's logits
    Strategy("global", "q", "mul", _global, {"g": Param(_H, 0.0, 0.0)}, range=(0.0, 2.0),
             source="ours: one learned inverse temperature per head, bounded",
             about="1 + tanh(g_h), in (0, 2)", reads={"n"}),
    Strategy("global_free", "q", "mul", _global_free, {"g": Param(_H, 0.0, 0.0)}, range=(0.0, math.inf),
             source="ours: one learned inverse temperature per head, unbounded", about="exp(g_h)", reads={"n"}),
    Strategy("log_n", "q", "mul", _log_n, range=(0.0, math.inf), neutral=None,
             source="Chiang & Cholak, Overcoming a theoretical limitation of self-attention, ACL 2022",
             about="log n, n the keys the query sees", reads={"n"}),
    Strategy("ssmax", "q", "mul", _ssmax, {"s": Param(_H, 1.0, math.nan)}, range=(-math.inf, math.inf), neutral=None,
             source="Nakanishi, Scalable-Softmax is superior for attention, 2025", about="s_h log n, s learned per head", reads={"n"}),
    Strategy("yarn", "q", "mul", _yarn, needs=frozenset({"train_length"}), range=(1.0, math.inf),
             neutral="train_length",
             source="Peng et al., YaRN, ICLR 2024: its attention factor (transformers' yarn_get_mscale, squared as it "
                    "scales both cos and sin), here dynamic: at the scale s = n / L each query reaches, where YaRN "
                    "applies one static factor at every position",
             about="(1 + 0.1 ln max(1, n / L))^2", reads={"n", "train_length"}),
    Strategy("qwen", "q", "mul", _qwen, needs=frozenset({"train_length"}), range=(1.0, math.inf),
             neutral="train_length", source="Qwen (logn attention scaling past the training length)",
             about="max(1, log n / log L)", reads={"n", "train_length"}),
    Strategy("released", "q", "mul", _released, {"beta": Param((), 2.0, math.inf)}, range=(1.0, math.inf),
             source="the SSA authors' released code: one beta per layer", about="1 + exp(-exp(beta)) log n", reads={"n"}),
    Strategy("asentmax", "q", "mul", _asentmax,
             {"w": Param(("H", "d"), 0.0, math.nan, decayed=True), "w2": Param(("H", "d"), 0.0, math.nan, decayed=True)},
             range=(1.0, math.inf), neutral=None,
             source="Vasylenko et al., adaptive-scaled entmax (ASEntmax), 2025; its scale, used with softmax",
             about="1 + softplus(w . q) (log n)^(2 tanh(w' . q))", reads={"n", "q"}),
    Strategy("llama4", "q", "mul", _llama4, needs=frozenset({"train_length"}), range=(1.0, math.inf),
             neutral="train_length",
             source="Meta, Llama 4 attention temperature tuning (attn_scale 0.1, floor_scale the training length)",
             about="1 + 0.1 log(1 + floor((p + 1) / L0)), p the 0-based query position, L0 the training length",
             reads={"positions", "train_length"}),
    Strategy("ministral", "q", "mul", _ministral, needs=frozenset({"train_length"}), range=(1.0, math.inf),
             neutral="train_length",
             source="Mistral AI, Ministral 3 / Mistral 4 (transformers' get_llama_4_attn_scale, beta 0.1, L0 the "
                    "original_max_position_embeddings)",
             about="1 + 0.1 log(1 + floor(p / L0)), p the 0-based query position: llama4's step one position later",
             reads={"positions", "train_length"}),
    # on values
    Strategy("global_v", "v", "mul", _global_v, {"g": Param(_H, 0.0, 0.0)}, range=(0.0, 2.0),
             source="ours: one learned value gain per head, bounded as SSA's value token term",
             about="every value times 1 + tanh(g_h), in (0, 2)", reads={"positions"}),
    # on keys
    Strategy("freq", "k", "mul", _freq, {"g": Param(_H, 0.0, 0.0)}, needs=frozenset({"k_freq"}),
             range=(-math.inf, math.inf), source="frequency-based temperature (the paper's appendix comparison, p16)",
             about="key j's logits times 1 + c_h log(1 / f_j), f_j its token's training frequency", reads={"k_freq"}),
    # on outputs
    Strategy("gate", "out", "mul", _gate, {"w": Param(("D", "Hw"), 0.0, 0.0, decayed=True)}, range=(0.0, 2.0),
             source="ours: the output gate nearest to value selectivity",
             about="each query's output times 2 sigmoid(x W_g), elementwise", reads={"x"}),
    Strategy("qwen_gate", "out", "mul", _qwen_gate,
             {"w": Param(("D", "H"), 0.0, 0.0, decayed=True), "b": Param(_H, 0.0, math.inf)}, range=(0.0, 1.0),
             source="Qiu et al. (Qwen), Gated Attention for Large Language Models, NeurIPS 2025 (head-wise gate)",
             about="each head's output times sigmoid(x W_g + b_h); published without b (here b starts at 0)", reads={"x"}),
    # an extra logit
    Strategy("sink", "sink", "mul", _sink, {"s": Param(_H, 0.0, -math.inf)}, range=(-math.inf, math.inf),
             source="OpenAI gpt-oss: a learned per-head attention sink (a zero key and value with a bias)",
             about="one extra logit s_h per head whose value is zero", reads=set()),
)


# --- the registry ------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Strategy] = {}
_ENTRY_POINTS_LOADED = False
_ENTRY_POINT_ERRORS: dict[str, str] = {}  # an installed plug-in that failed to load: its name -> one line


def register(strategy: Strategy) -> Strategy:
    """Add a strategy to the table; a second one with the same name is refused."""
    if strategy.name in _REGISTRY:
        raise ValueError(f"a strategy named {strategy.name!r} is already registered ({_REGISTRY[strategy.name].origin})")
    if ":" in strategy.name or not strategy.name:
        raise ValueError(f"strategy names are plain words (got {strategy.name!r})")
    _REGISTRY[strategy.name] = strategy
    return strategy


for _s in BUILTINS:
    register(_s)


def register_strategy(name: str, *, side: str, combine: str = "mul", params: Mapping[str, Param] | None = None,
                      needs=(), range: tuple[float, float] = (-math.inf, math.inf), neutral: str | None = "params",
                      source: str = "", about: str = "", reads=None) -> Callable[[Formula], Formula]:
    """Decorator: ``@register_strategy("my_scale", side="q", params={...})`` over its formula
    ``f(inputs, params) -> tensor`` adds a strategy to the table, in this process."""
    def deco(formula: Formula) -> Formula:
        register(Strategy(name, side, combine, formula, dict(params or {}), frozenset(needs), range,
                          neutral if params else (neutral if neutral != "params" else None), source, about,
                          origin=f"register_strategy in {formula.__module__}", reads=reads))
        return formula
    return deco


def unregister(name: str) -> None:
    """Remove a strategy registered at run time (tests do)."""
    if name in {s.name for s in BUILTINS}:
        raise ValueError(f"{name!r} is built in")
    _REGISTRY.pop(name, None)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    from ssa_theory.refs import import_failure

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:  # a broken plug-in is reported when it is asked for, not when another name is
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            _ENTRY_POINT_ERRORS[ep.name] = import_failure(e, f"the plug-in strategy {ep.name!r} ({ep.value}) does not load")
            continue
        if not isinstance(obj, Strategy):
            _ENTRY_POINT_ERRORS[ep.name] = f"entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP} is not a Strategy"
            continue
        register(_with_origin(obj, f"entry point {ep.value}"))


def source_digest(strategy: Strategy) -> str:
    """A short hash of the text of the module that defines the strategy's formula (or of the formula's
    own source where it has no module file): a plug-in's code, which enters the hash of every run that
    places it, so that editing a formula never reuses results made by the old one."""
    import hashlib
    import inspect
    import sys

    module = sys.modules.get(getattr(strategy.formula, "__module__", ""), None)
    path = getattr(module, "__file__", None)
    try:
        text = open(path, "rb").read() if path else inspect.getsource(strategy.formula).encode()
    except (OSError, TypeError):
        text = repr(strategy).encode()  # defined where no source can be read (an interactive session)
    return hashlib.sha256(text).hexdigest()[:16]


def _with_origin(s: Strategy, origin: str) -> Strategy:
    from dataclasses import replace

    return replace(s, origin=origin)


def _import_path(path: str) -> Strategy:
    from ssa_theory.refs import load

    return load(path, Strategy, "strategy")


def resolve(name) -> Strategy:
    """A strategy by name (the table, then plug-ins' entry points), by dotted path ``module:attr``, or
    by the formula ``register_strategy`` decorated; a ``Strategy`` passes through."""
    if isinstance(name, Strategy):
        return name
    if callable(name):
        found = [s for s in table() if s.formula is name]
        if not found:
            raise ValueError(f"{getattr(name, '__qualname__', name)!r} is not the formula of a registered strategy "
                             "(decorate it with register_strategy, or pass a Strategy)")
        return found[0]
    if not isinstance(name, str):
        raise ValueError(f"a strategy is a name, a dotted path module:attr, a Strategy or its decorated formula; "
                         f"got {type(name).__name__}")
    if ":" in name:
        s = _import_path(name)
        return s if s.name in _REGISTRY and _REGISTRY[s.name] is s else _with_origin(s, f"dotted path {name}")
    if name not in _REGISTRY:
        _load_entry_points()
    if name in _ENTRY_POINT_ERRORS:
        raise ValueError(_ENTRY_POINT_ERRORS[name])
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown temperature strategy {name!r}{hint} (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def table() -> list[Strategy]:
    """Every registered strategy (built-ins, then plug-ins), entry points loaded."""
    _load_entry_points()
    return list(_REGISTRY.values())


# --- applying a strategy -----------------------------------------------------------------------------------


def param_shape(p: Param, *, H: int, w: int, d: int, D: int) -> tuple[int, ...]:
    sizes = {"H": H, "w": w, "d": d, "D": D, "Hw": H * w}
    return tuple(sizes[s] for s in p.shape)


def initial_value(p: Param, *, alpha_init: float) -> float | None:
    """A parameter's constant initial value, or None where it is drawn N(0, std^2) (``init="normal"``)."""
    if p.init == "normal":
        return None
    return float(alpha_init if p.init == "alpha_init" else p.init)


def check_placements(placements, train_length: int | None, where: str = "") -> None:
    """At construction: every placed strategy that needs a training length gets one (``ValueError`` otherwise)."""
    for _, strategy, _ in placements:
        if "train_length" in strategy.needs:
            strategy.check_inputs(train_length=train_length, where=where)


def parameters_of(placements, temp: Mapping[str, torch.Tensor], strategy: str,
                  side: str | None = None) -> dict[str, torch.Tensor]:
    """A layer's parameters of one placed strategy, by the names its declaration uses: the public way
    to read or set them (both layers' ``parameters_of``). ``strategy`` is its name in the table;
    ``side`` picks one placement where the strategy sits on several sides (SSA's terms)."""
    found = [(sd, s, prefix) for sd, s, prefix in placements if s.name == strategy and side in (None, sd)]
    if not found and ":" in strategy:  # a dotted path names the strategy it resolves to
        return parameters_of(placements, temp, resolve(strategy).name, side)
    if not found:
        placed = ", ".join(f"{s.name} on {sd}" for sd, s, _ in placements) or "none (vanilla)"
        where = f" on side {side!r}" if side else ""
        raise KeyError(f"strategy {strategy!r} is not placed{where} in this layer; placed: {placed}")
    if len(found) > 1:
        raise KeyError(f"strategy {strategy!r} is placed on sides {[sd for sd, _, _ in found]}; pass side=")
    _, s, prefix = found[0]
    return {pname: temp[prefix + pname] for pname in s.params}


def apply(strategy: Strategy, inputs: Inputs, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The strategy's value at these inputs: its formula, the one place it is computed."""
    return strategy.formula(inputs, params)


Placed = list  # [(Strategy, {name: parameter tensor with a leading member axis})]


def ssa_temperature(terms: Placed, inputs: Inputs) -> torch.Tensor | None:
    """SSA's tau = 1 + its ``add`` terms (the position term first, then the token term), or None if
    there are none: how both layers compose a side's terms."""
    if not terms:
        return None
    tau = 1.0
    for strategy, params in sorted(terms, key=lambda t: not t[0].name.startswith("ssa_pos")):
        if strategy.needs:  # the scrambled placebo's terms need their permutations (ssa_theory.scramble)
            strategy.check_inputs(train_length=inputs.train_length, extras=inputs.extras)
        tau = apply(strategy, inputs, params) + tau
    return tau


def product(factors: Placed, inputs: Inputs) -> torch.Tensor | None:
    """The product of the ``mul`` strategies' values, or None if there are none (each one's needs
    checked first)."""
    out = None
    for strategy, params in factors:
        strategy.check_inputs(train_length=inputs.train_length, extras=inputs.extras)
        f = apply(strategy, inputs, params)
        out = f if out is None else out * f
    return out
