"""SSA, and every temperature strategy of the table, inside Hugging Face ``transformers`` models.

    from transformers import LlamaForCausalLM
    from ssa_theory import hf

    model = LlamaForCausalLM.from_pretrained("path/to/checkpoint")
    hf.apply(model, "ssa")          # in place: the logits are unchanged until the new parameters train
    ...                             # fine-tune as usual (a plain loop or transformers.Trainer)
    model.save_pretrained("out")    # the config records the strategy and its options
    model = hf.from_pretrained(LlamaForCausalLM, "out")
    hf.remove(model)                # back to the model's own attention

Supported decoders (``FAMILIES``): Llama, Mistral, Qwen2, Qwen3, GPT-2, GPT-NeoX (Pythia), Gemma 1 to 3
(Gemma 2's logit soft-cap and Gemma 3's sliding and global layers included) and Phi-3; any other is
refused, naming what its layout lacks.

How a strategy reaches the model, with no second copy of any formula:

- Every attention layer gets a ``plan.LayerPlan`` and the strategy's parameters (``module.ssa_temp``,
  by the table's names with a side prefix: ``q_u``, ``q_alpha``, ``scale_g`` ...) at their neutral
  setting, so that the model computes what it computed before. A neutral start must be able to train:
  a parameter that is neutral whatever its value once the others are (SSA's own token projection)
  starts at its random draw, not at a saddle; a variant all of whose parameters are neutral only at
  an infinity, where no gradient flows (``ssa_q_pos``, ``ssa_released``, ``sink``, ``qwen_gate``), is
  refused at ``neutral=True`` with the fix (``neutral=False``). SSA's position term inside ``ssa``
  still starts at ``alpha = -inf`` and does not train from there (its token term does): pass
  ``neutral=False`` (``alpha = alpha_init``, default -4: ``sigmoid(-4) = 0.018``) to train it. A
  strategy with no neutral setting (``log_n``, ``ssmax``, ``asentmax``) is refused unless
  ``neutral=False``, which starts every parameter where ``nn.SelectiveAttention`` starts it.
- Attention runs through one function registered with ``AttentionInterface`` (and the boolean mask
  function registered with ``AttentionMaskInterface`` under the same name, without which the mask
  would arrive as None and the causal mask would be lost). It calls the package's one attention core,
  ``functional.attend``: the query-side temperatures, the sink and the output gate, with n (the keys
  each query sees) from transformers' mask (sliding windows included).
- Positions follow the padding, as in ``nn.SelectiveAttention``: a forward pre-hook on the model's
  backbone keeps the caller's ``attention_mask`` and whether it passed ``position_ids``; given
  ``position_ids`` win, and otherwise each row's real tokens are counted from its first (transformers'
  default ``position_ids`` count the pad slots of a left-padded row).
- What the strategy table reads is what it reads in ``nn.SelectiveAttention``: the layer's input
  hidden states (captured by a forward pre-hook on the attention module) and each side's projection
  before RoPE, computed by the module's own weights (forward hooks on ``q_proj``, ``k_proj``,
  ``v_proj``, after ``q_norm`` / ``k_norm`` where the model has them; GPT-2's ``c_attn``, GPT-NeoX's
  ``query_key_value``, Phi-3's ``qkv_proj``), never the rotated query the attention function is given.
  The hooks follow the module: a projection that PEFT wraps in a LoRA layer (before or after
  ``apply``), or unwraps when merging, is hooked where it is at each call, so the temperatures read
  the LoRA-updated projection.
- Key- and value-side temperatures are applied where the module computes its keys and values (those
  hooks), so the cache holds them already scaled, as the package's own ``KVCache`` does. A key or
  value strategy that reads n gets the keys its token sees as a query, ``position + 1``. Strategies
  that need per-token data a model does not pass (``freq``'s key frequencies) are refused.
- What a call captures travels with the calling thread (``threading.local``): threads that share one
  patched model get the outputs each gets alone.

PEFT: LoRA in either order with ``apply`` gives the model its own ``merge_and_unload()`` gives. PEFT
freezes every parameter it did not add, the temperatures too: ``temperature_parameters(model)`` are
the ones to unfreeze, and ``save_temperatures`` / ``load_temperatures`` keep them beside an adapter.

Attention dropout is not part of the core: a training step with attention dropout above 0 stops with
one line (set the config's ``attention_dropout`` / ``attn_pdrop`` to 0). ``output_attentions`` gives
no weights.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssa_theory import functional as core
from ssa_theory.plan import LayerPlan
from ssa_theory.variants import Variant, get_variant

NAME = "ssa_theory"  # the attn_implementation registered with transformers
CONFIG_KEY = "ssa_theory"  # the config attribute that records the strategy and its options
TEMPERATURES = "ssa_temperatures.safetensors"  # save_temperatures' file, beside an adapter


@dataclass(frozen=True)
class Family:
    """A decoder family: its attention module's class and where it computes q, k and v (``layout``):
    ``separate`` (``q_proj``, ``k_proj``, ``v_proj``, each after its ``q_norm`` / ``k_norm`` where it
    has one), ``gpt2`` (``c_attn``: q | k | v), ``neox`` (``query_key_value``: per head q | k | v) or
    ``phi3`` (``qkv_proj``: all heads' q | k | v). ``head_major_norms``: its ``q_norm`` / ``k_norm`` run
    on the head-major (B, H, L, d) tensor (Gemma 3), not on (B, L, H, d) (Qwen3)."""

    attention: str
    layout: str
    head_major_norms: bool = False


FAMILIES = {  # model_type -> Family
    "llama": Family("LlamaAttention", "separate"), "mistral": Family("MistralAttention", "separate"),
    "qwen2": Family("Qwen2Attention", "separate"), "qwen3": Family("Qwen3Attention", "separate"),
    "gpt2": Family("GPT2Attention", "gpt2"), "gpt_neox": Family("GPTNeoXAttention", "neox"),
    "gemma": Family("GemmaAttention", "separate"), "gemma2": Family("Gemma2Attention", "separate"),
    "gemma3_text": Family("Gemma3Attention", "separate", head_major_norms=True), "phi3": Family("Phi3Attention", "phi3"),
}
OPTIONS = ("neutral", "train_length", "alpha_init")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("ssa_theory.hf needs transformers: pip install 'ssa_theory[hf]'") from None
    return transformers


PLAIN_LOAD = ("ssa_theory.hf: this checkpoint was saved after hf.apply, and the plain model class left its trained "
              "temperatures out (its 'UNEXPECTED' ssa_temp keys): load it with ssa_theory.hf.from_pretrained(ModelClass, path)")


class _PlainLoadWarning(logging.Handler):
    """Listens to transformers' load report: an SSA checkpoint loaded by the plain model class (its
    strategy's weights reported as unexpected) gets one line naming ``from_pretrained``."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if ".ssa_temp." in message and "UNEXPECTED" in message:
            logging.getLogger("ssa_theory.hf").warning(PLAIN_LOAD)


def _listen_to_loads() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    if not any(isinstance(h, _PlainLoadWarning) for h in hf_logging.get_logger().handlers):
        hf_logging.add_handler(_PlainLoadWarning())


_listen_to_loads()  # a process that imported this module hears of an SSA checkpoint loaded without it


# --- what one call carries -----------------------------------------------------------------------------------


class _ModelCall(threading.local):
    """Per thread, what the model's backbone was called with: its 2-D padding mask (or None) and whether
    the caller passed ``position_ids``."""

    mask: torch.Tensor | None = None
    positions_given: bool = False


class _Captured(threading.local):
    """Per thread, what one attention layer's hooks captured for the call in flight."""

    x: torch.Tensor | None = None
    pos: torch.Tensor | None = None
    q_pre: torch.Tensor | None = None


def _backbone(model: nn.Module) -> nn.Module:
    """The module a causal LM hands ``attention_mask`` and ``position_ids`` to (a PEFT model unwrapped)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, "base_model", model)


def _on_backbone(call: _ModelCall):
    """A forward pre-hook of the backbone: the caller's padding mask and whether it gave positions."""
    def hook(module, args, kwargs):
        try:
            bound = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = kwargs
        mask = bound.get("attention_mask")
        call.mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        call.positions_given = bound.get("position_ids") is not None
    return hook


# --- one attention layer -------------------------------------------------------------------------------------


class _Layer:
    """What ``apply`` attaches to one attention module (as ``module.ssa_state``; its parameters are
    ``module.ssa_temp``): its plan, its hooks, and (per thread) what they captured for the call in flight."""

    def __init__(self, module: nn.Module, plan: LayerPlan, family: Family, call: _ModelCall) -> None:
        self.module, self.plan, self.layout, self.call = module, plan, family.layout, call
        self.head_major_norms = family.head_major_norms
        self.n_heads, self.n_kv_heads, self.head_dim = plan.n_heads, plan.n_kv_heads, plan.d_head
        self.sides = {p.side for p in plan.placements}
        self.captured = _Captured()
        self.handles: list = []
        self.hooked: dict[str, tuple[nn.Module, Any]] = {}  # role -> (module, handle)

    def params(self) -> dict[str, torch.Tensor]:
        """The layer's strategy parameters, each with a member axis of 1."""
        return {k: p[None] for k, p in self.module.ssa_temp.items()}

    def strategies(self, sides) -> core.Strategies:
        """The placements on ``sides`` as the core takes them."""
        return self.plan.strategies(self.params(), sides)

    # the hooks --------------------------------------------------------------------------------------------

    def capture_inputs(self, module, args, kwargs) -> None:
        """Forward pre-hook of the attention module: follow the projections, keep the input hidden states
        (B, L, D) and the 0-based positions (B|1, L): the caller's, else counted over the padding."""
        self.refresh()
        x = args[0] if args else kwargs["hidden_states"]
        L = x.shape[1]
        pos = kwargs.get("position_ids")
        cache = kwargs.get("cache", kwargs.get("past_key_values", kwargs.get("layer_past")))
        start = 0 if cache is None else int(cache.get_seq_length(getattr(module, "layer_idx", 0) or 0))
        mask = self.call.mask
        if not self.call.positions_given and mask is not None and mask.shape[-1] == start + L:
            pos = core.positions_from_padding(mask.to(x.device) != 0)[:, -L:]  # each row's real tokens, from 0
        elif pos is None:
            pos = kwargs.get("cache_position")
            if pos is None:
                pos = torch.arange(start, start + L, device=x.device)
        self.captured.x, self.captured.pos = x, pos.reshape(-1, L).to(x.device)

    def _heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """(B, L, n d) or (B, L, n, d) -> (B, n, L, d)."""
        return t.reshape(t.shape[0], t.shape[1], n, self.head_dim).transpose(1, 2)

    def _scaled(self, side: str, t: torch.Tensor) -> torch.Tensor:
        """A key or value projection (B, L, n d) or (B, L, n, d) times its side's temperature, same shape."""
        if side not in self.sides:
            return t
        pos = self.captured.pos[:, None]  # (B|1, 1, L), 0-based
        proj = self._heads(t, self.n_kv_heads)[None]
        tau = self.plan.readout(self.params(), side, self.captured.x[None], proj=proj, positions=pos,
                                n=(pos + 1).to(t.dtype))
        if tau is None:
            return t
        tau = tau.expand(1, t.shape[0], self.n_kv_heads, t.shape[1])[0].transpose(1, 2)  # (B, L, n)
        return (t.reshape(*t.shape[:2], self.n_kv_heads, self.head_dim) * tau[..., None].to(t.dtype)).reshape(t.shape)

    def on_query(self, module, args, out):
        self.captured.q_pre = self._heads(out, self.n_heads)
        return out

    def on_key(self, module, args, out):
        return self._scaled("k", out)

    def on_query_head_major(self, module, args, out):
        """A ``q_norm`` that runs on the head-major (B, H, L, d) query (Gemma 3)."""
        self.captured.q_pre = out
        return out

    def on_key_head_major(self, module, args, out):
        return self._scaled("k", out.transpose(1, 2)).transpose(1, 2)

    def on_value(self, module, args, out):
        return self._scaled("v", out)

    def on_fused(self, module, args, out):
        """A fused projection: the query captured, the key and value scaled, in the layout's own order."""
        B, L = out.shape[:2]
        H, Hk, d = self.n_heads, self.n_kv_heads, self.head_dim
        if self.layout == "neox":  # per head: q | k | v
            t = out.view(B, L, H, 3 * d)
            q, k, v = t[..., :d], t[..., d:2 * d], t[..., 2 * d:]
            self.captured.q_pre = self._heads(q, H)
            return torch.cat([q, self._scaled("k", k), self._scaled("v", v)], -1).reshape(out.shape)
        q, k, v = out.split([H * d, Hk * d, Hk * d], dim=-1)  # gpt2 and phi3: all heads' q | k | v
        self.captured.q_pre = self._heads(q, H)
        return torch.cat([q, self._scaled("k", k), self._scaled("v", v)], -1)

    def projections(self) -> dict[str, tuple[nn.Module, Any]]:
        """Role -> (the submodule the layout computes it in now, its hook)."""
        m = self.module
        if self.layout == "gpt2":
            return {"qkv": (m.c_attn, self.on_fused)}
        if self.layout == "neox":
            return {"qkv": (m.query_key_value, self.on_fused)}
        if self.layout == "phi3":
            return {"qkv": (m.qkv_proj, self.on_fused)}
        q_norm, k_norm = getattr(m, "q_norm", None), getattr(m, "k_norm", None)
        on_q = self.on_query_head_major if q_norm is not None and self.head_major_norms else self.on_query
        on_k = self.on_key_head_major if k_norm is not None and self.head_major_norms else self.on_key
        roles = {"q": (q_norm or m.q_proj, on_q)}
        if "k" in self.sides:
            roles["k"] = (k_norm or m.k_proj, on_k)
        if "v" in self.sides:
            roles["v"] = (m.v_proj, self.on_value)
        return roles

    def refresh(self) -> None:
        """Hook each projection where it is now (a LoRA wrapper added or merged away since the last call)."""
        for role, (target, fn) in self.projections().items():
            old = self.hooked.get(role)
            if old is not None and old[0] is target:
                continue
            if old is not None:
                old[1].remove()
            self.hooked[role] = (target, target.register_forward_hook(fn))

    def attach(self) -> None:
        self.handles.append(self.module.register_forward_pre_hook(self.capture_inputs, with_kwargs=True))
        self.refresh()

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        for _, handle in self.hooked.values():
            handle.remove()
        self.handles.clear()
        self.hooked.clear()


class _ModelRotation:
    """The core's ``rotate`` hook when the model rotated the queries itself: the core reads the
    projection before RoPE (``q_pre``) for the temperatures, then takes the model's rotated queries;
    the keys arrive rotated and cached."""

    def __init__(self, q_pre: torch.Tensor, q_rotated: torch.Tensor) -> None:
        self.q_pre, self.q_rotated = q_pre, q_rotated

    def __call__(self, t: torch.Tensor, pos) -> torch.Tensor:
        return self.q_rotated if t is self.q_pre else t


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
              **kwargs) -> tuple[torch.Tensor, None]:
    """The attention function registered as ``NAME``: query (B, H, Lq, d) after RoPE, key and value
    (B, H_kv, Lk, d) after the cache update, the boolean mask (B, 1, Lq, Lk) of the registered mask
    function or None (causal, or one query over every key); ``softcap`` (Gemma 2) caps the logits as
    ``softcap tanh(s / softcap)``. Returns (B, Lq, H, d) and no weights."""
    layer: _Layer = module.ssa_state
    if dropout:
        raise ValueError(f"ssa_theory.hf: attention dropout ({dropout:g}) is not supported; set the config's "
                         "attention_dropout (GPT-2: attn_pdrop) to 0")
    B, H, Lq, d = query.shape
    if scaling is not None and not math.isclose(scaling * math.sqrt(d), 1.0, rel_tol=1e-7):
        query = query * (scaling * math.sqrt(d))  # the core's kernel scales by 1/sqrt(d); the model's own scale
    got = layer.captured
    x, pos, q_pre = got.x, got.pos, got.q_pre
    got.x = got.q_pre = None
    if q_pre is None or x is None or q_pre.shape != (B, H, Lq, d):
        raise RuntimeError("ssa_theory.hf: the attention function was called without its layer's hooks having "
                           "run (call the attention module itself, not the function)")
    mask, causal = None, False
    if attention_mask is None:
        causal = Lq > 1 and kwargs.get("is_causal", getattr(module, "is_causal", True))
        if causal and key.shape[2] > Lq:  # a static cache's prefill: the keys past the queries are empty
            key, value = key[:, :, :Lq], value[:, :, :Lq]
    else:
        if attention_mask.dtype != torch.bool:
            raise ValueError("ssa_theory.hf: expected a boolean attention mask (the registered mask function's)")
        mask = core.mask5(attention_mask, 1, B, H, Lq, key.shape[2])
    softcap = kwargs.get("softcap")
    geometry = {"score": "softcap", "bound": float(softcap)} if softcap else {}
    q_pre = q_pre[None]
    out, _ = core.attend(layer.strategies(("q", "out", "sink")), q_pre, key[None], value[None], x=x[None],
                         q_pos=pos, causal=causal, attn_mask=mask, rotate=_ModelRotation(q_pre, query[None]),
                         **geometry)
    return out[0].transpose(1, 2).contiguous(), None


def _register() -> None:
    transformers = _transformers()
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    transformers.AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # boolean (B, 1, Lq, Lk), True = may attend, or None


# --- the public functions ------------------------------------------------------------------------------------


def _family(model: nn.Module) -> tuple[str, Family]:
    config = getattr(model, "config", None)
    name = getattr(config, "model_type", None)
    if name not in FAMILIES:
        raise ValueError(f"ssa_theory.hf supports the decoders {', '.join(FAMILIES)}; this model is "
                         f"{name or type(model).__name__!r}, whose attention layout it has not been checked against")
    return name, FAMILIES[name]


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    name, family = _family(model)
    found = [m for m in model.modules() if type(m).__name__ == family.attention
             and not getattr(m, "is_cross_attention", False)]
    if not found:
        raise ValueError(f"no {family.attention} module in this {name} model")
    return found


def _shape(module: nn.Module, config, layout: str) -> tuple[int, int, int]:
    """(query heads, key/value heads, head width) of one attention module."""
    if layout == "gpt2":
        return module.num_heads, module.num_heads, module.head_dim
    H = config.num_attention_heads
    if layout == "neox":
        return H, H, module.head_size
    if layout == "phi3":
        return H, config.num_key_value_heads, module.head_dim
    return H, H // module.num_key_value_groups, module.head_dim


def _real(name: str, value, *, integer: bool = False, low: float | None = None) -> float | int:
    """A finite real (or integer) option, else one line naming it and what it takes."""
    kind = "an integer" if integer else "a finite number"
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
        or (integer and float(value) != int(value)) or (low is not None and value < low)
    if bad:
        bound = f" >= {low:g}" if low is not None else ""
        raise ValueError(f"ssa_theory.hf.apply: {name} must be {kind}{bound} (got {value!r})")
    return int(value) if integer else float(value)


def _check_options(variant: Variant, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} of ssa_theory.hf.apply; options: {', '.join(OPTIONS)}")
    placed = [s for _, s, _ in variant.placements()]
    if "alpha_init" in options:
        options["alpha_init"] = _real("alpha_init", options["alpha_init"])
    if "train_length" in options and options["train_length"] is not None:
        options["train_length"] = _real("train_length", options["train_length"], integer=True, low=2)
    if "alpha_init" in options and not any(s.name == "ssa_pos" for s in placed):
        raise ValueError(f"alpha_init is SSA's position term's start; {variant.name} places no position term")
    if "train_length" in options and not any("train_length" in s.needs for s in placed):
        raise ValueError(f"train_length is read by yarn, qwen, llama4 and ministral; {variant.name} reads none")
    if options.get("neutral", True) is True and "alpha_init" in options:
        raise ValueError("alpha_init sets where SSA's position term starts when neutral=False; at neutral=True the "
                         "term starts at its neutral alpha = -inf")
    neutral = options.get("neutral", True)
    if not isinstance(neutral, bool):
        raise ValueError(f"ssa_theory.hf.apply: neutral must be True or False (got {neutral!r})")
    return options


def _check_strategies(variant: Variant, neutral: bool) -> None:
    placed = [s for _, s, _ in variant.placements()]
    for s in placed:
        needs = sorted(n for n in s.needs if n != "train_length")
        if needs:
            raise ValueError(f"strategy {s.name!r} needs {', '.join(needs)} per token, which a transformers model "
                             "does not pass; choose another strategy")
        if neutral and s.neutral is None:
            raise ValueError(f"strategy {s.name!r} has no neutral setting (no parameter value makes it vanilla "
                             "attention), so applying it changes the model's outputs; pass neutral=False to accept that")
    if not neutral:
        return
    # a neutral value at an infinity passes no gradient: a variant with nothing else to train never leaves it
    stuck = [s.name for s in placed if s.params and any(not math.isfinite(p.neutral) for p in s.params.values())]
    free = [s.name for s in placed if s.params and all(math.isfinite(p.neutral) for p in s.params.values())]
    if stuck and not free:
        raise ValueError(f"{variant.name} cannot train from its neutral start: {', '.join(stuck)} is neutral only at an "
                         "infinite parameter, where no gradient flows; pass neutral=False to start where "
                         "nn.SelectiveAttention does (the outputs then change a little)")


def _train_length(config) -> int | None:
    """The length a length law is relative to: the original context of a rescaled model (its
    ``original_max_position_embeddings``, at the top or in ``rope_scaling``), Llama 4's ``floor_scale``,
    else the context it takes (``max_position_embeddings`` / ``n_positions``)."""
    rope = getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None) or {}
    for value in (getattr(config, "original_max_position_embeddings", None),
                  rope.get("original_max_position_embeddings") if isinstance(rope, dict) else None,
                  getattr(config, "floor_scale", None), getattr(config, "max_position_embeddings", None),
                  getattr(config, "n_positions", None)):
        if value:
            return int(value)
    return None


def apply(model: nn.Module, variant: str | Variant = "ssa", **options: Any) -> nn.Module:
    """Put ``variant`` (a name of ``variants.VARIANTS``, a strategy's name or ``package.module:attr``)
    into every attention layer of ``model``, in place; returns the model.

    Options: ``neutral`` (default True: every new parameter at its neutral value, so the logits do
    not change; False: where ``nn.SelectiveAttention`` starts them, for strategies without a neutral
    setting, or whose neutral setting cannot train, or to train SSA's position term), ``train_length``
    (the length that ``yarn``, ``qwen``, ``llama4`` and ``ministral`` read; default ``_train_length``:
    the config's ``original_max_position_embeddings`` where it is rescaled, else its
    ``max_position_embeddings`` / ``n_positions``), ``alpha_init`` (with ``neutral=False``: SSA's
    position-term start, default -4)."""
    if not isinstance(variant, (str, Variant)):
        raise ValueError(f"ssa_theory.hf.apply: variant must be a name (a str, e.g. 'ssa') or a Variant "
                         f"(got {type(variant).__name__} {variant!r})")
    variant = get_variant(variant)  # the name resolved once; every layer's plan takes the object
    options = _check_options(variant, dict(options))
    neutral = options.get("neutral", True)
    modules = _attention_modules(model)
    if any(hasattr(m, "ssa_state") for m in modules):
        raise ValueError("this model already has a strategy applied; call ssa_theory.hf.remove(model) first")
    config = model.config
    if getattr(config, CONFIG_KEY, None) is not None:
        raise ValueError("this model's config records a strategy saved by ssa_theory.hf, whose trained temperatures "
                         "this load left out: load the checkpoint with ssa_theory.hf.from_pretrained(ModelClass, path)")
    _check_strategies(variant, neutral)
    train_length = options.get("train_length")
    if train_length is None and any("train_length" in s.needs for _, s, _ in variant.placements()):
        train_length = _train_length(config)
    _, family = _family(model)
    plans = [LayerPlan.of(variant, d_model=config.hidden_size, n_heads=H, n_kv_heads=Hk, d_head=d, d_value=d,
                          train_length=train_length, where=" (pass train_length=...)")
             for H, Hk, d in (_shape(m, config, family.layout) for m in modules)]
    alpha_init = float(options.get("alpha_init", -4.0))
    _register()
    call = _ModelCall()
    draw = lambda shape: torch.randn(shape) / math.sqrt(config.hidden_size)  # noqa: E731  (torch's global generator)
    for module, plan in zip(modules, plans):
        weight = next(module.parameters())
        values = plan.new_parameters(draw, neutral=neutral, alpha_init=alpha_init)
        module.ssa_temp = plan.parameter_dict({k: v.to(weight.device, weight.dtype) for k, v in values.items()})
        module.ssa_state = _Layer(module, plan, family, call)
        module.ssa_state.attach()
    model._ssa_call_hook = _backbone(model).register_forward_pre_hook(_on_backbone(call), with_kwargs=True)
    setattr(config, CONFIG_KEY, {"variant": variant.name, "neutral": neutral, "train_length": train_length,
                                 "alpha_init": alpha_init, "previous_attn_implementation": config._attn_implementation})
    model.set_attn_implementation(NAME)
    return model


def temperature_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter ``apply`` added (each layer's ``ssa_temp``): what to unfreeze after PEFT freezes
    everything it did not add, ``for p in hf.temperature_parameters(model): p.requires_grad_(True)``."""
    return [p for name, p in model.named_parameters() if ".ssa_temp." in name]


def save_temperatures(model: nn.Module, path) -> None:
    """The temperatures (``temperature_parameters``, by name) and the strategy's options, into the folder
    ``path`` (beside a PEFT adapter: ``peft_model.save_pretrained(path)`` saves only the adapter)."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    spec = getattr(_config(model), CONFIG_KEY, None)
    if spec is None:
        raise ValueError("this model has no strategy applied by ssa_theory.hf.apply")
    Path(path).mkdir(parents=True, exist_ok=True)
    save_file({_plain(n): p.detach().contiguous() for n, p in model.named_parameters() if ".ssa_temp." in n},
              str(Path(path) / TEMPERATURES))
    (Path(path) / "ssa_theory.json").write_text(json.dumps(spec, indent=1))


def load_temperatures(model: nn.Module, path) -> nn.Module:
    """The temperatures ``save_temperatures`` wrote, into a model that the same strategy was applied to
    (a PEFT model too); a ``ValueError`` naming what does not match."""
    from pathlib import Path

    from safetensors.torch import load_file

    saved = load_file(str(Path(path) / TEMPERATURES))
    params = {_plain(n): p for n, p in model.named_parameters() if ".ssa_temp." in n}
    if set(saved) != set(params):
        raise ValueError(f"{path}: the saved temperatures do not match this model's (missing "
                         f"{sorted(set(params) - set(saved))[:3]}, unexpected {sorted(set(saved) - set(params))[:3]}); "
                         "apply the same strategy first")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    return model


def _plain(name: str) -> str:
    """A parameter's name without PEFT's wrapping prefix, from the first ``model.`` / ``transformer.`` level."""
    marker = ".ssa_temp."
    head, tail = name.split(marker, 1)
    parts = head.split(".")
    for i, part in enumerate(parts):  # from the layers' container on: the same in a plain and a PEFT model
        if part in ("layers", "h", "layer"):
            return ".".join(parts[i:]) + marker + tail
    return name


def _config(model: nn.Module):
    return model.config if hasattr(model, "config") else model.get_base_model().config


def remove(model: nn.Module) -> nn.Module:
    """Undo ``apply``: the strategy's parameters and hooks removed, the model's own attention back."""
    spec = getattr(model.config, CONFIG_KEY, None)
    modules = [m for m in _attention_modules(model) if hasattr(m, "ssa_state")]
    if spec is None or not modules:
        raise ValueError("this model has no strategy applied by ssa_theory.hf.apply")
    for m in modules:
        m.ssa_state.detach()
        del m.ssa_state, m.ssa_temp
    hook = getattr(model, "_ssa_call_hook", None)
    if hook is not None:
        hook.remove()
        del model._ssa_call_hook
    delattr(model.config, CONFIG_KEY)
    model.set_attn_implementation(spec.get("previous_attn_implementation") or "sdpa")
    return model


def from_pretrained(model_class, path, **kwargs: Any) -> nn.Module:
    """A model saved after ``apply`` (``save_pretrained``): the base weights by ``model_class``'s own
    ``from_pretrained(path, **kwargs)``, the strategy and its options from the saved config, and the
    strategy's parameters from the saved weights, exactly."""
    transformers = _transformers()
    config = transformers.AutoConfig.from_pretrained(path)
    spec = getattr(config, CONFIG_KEY, None)
    if not isinstance(spec, dict) or "variant" not in spec:
        raise ValueError(f"{path} was saved without a strategy of ssa_theory.hf (its config has no {CONFIG_KEY!r}); "
                         f"load it with {model_class.__name__}.from_pretrained and call ssa_theory.hf.apply")
    _register()
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()  # the base class reports the strategy's weights as unused: they are loaded below
    try:
        model = model_class.from_pretrained(path, **kwargs)
    finally:
        logging.set_verbosity(level)
    if hasattr(model.config, CONFIG_KEY):
        delattr(model.config, CONFIG_KEY)
    options = {"neutral": spec.get("neutral", True)}
    if spec.get("train_length") is not None:
        options["train_length"] = spec["train_length"]
    if not options["neutral"] and any(s.name == "ssa_pos" for _, s, _ in get_variant(spec["variant"]).placements()):
        options["alpha_init"] = spec.get("alpha_init", -4.0)
    apply(model, spec["variant"], **options)
    state = _saved_tensors(path, ".ssa_temp.")
    expected = {k for k in model.state_dict() if ".ssa_temp." in k}
    if set(state) != expected:
        raise ValueError(f"{path}: the saved strategy weights do not match {spec['variant']}'s "
                         f"(missing {sorted(expected - set(state))[:3]}, unexpected {sorted(set(state) - expected)[:3]})")
    model.load_state_dict(state, strict=False)
    return model


def _saved_tensors(path, marker: str) -> dict[str, torch.Tensor]:
    """Every tensor of a saved checkpoint (one safetensors file or a sharded index) whose name holds ``marker``."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    path = Path(path)
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    out = {}
    for f in files:
        out.update({k: v for k, v in load_file(str(path / f)).items() if marker in k})
    return out
