"""SSA, and every temperature strategy of the table, inside Hugging Face ``transformers`` models.

    from transformers import LlamaForCausalLM
    from ssa_theory import hf

    model = LlamaForCausalLM.from_pretrained("path/to/checkpoint")
    hf.apply(model, "ssa")          # in place: the logits are unchanged until the new parameters train
    ...                             # fine-tune as usual (a plain loop or transformers.Trainer)
    model.save_pretrained("out")    # the config records the strategy and its options
    model = hf.from_pretrained(LlamaForCausalLM, "out")
    hf.remove(model)                # back to the model's own attention

Supported decoders: Llama, Mistral, Qwen2, Qwen3 and GPT-2 (``FAMILIES``); any other is refused.

How a strategy reaches the model, with no second copy of any formula:

- Every attention layer gets the strategy's parameters (``module.ssa_temp``, by the table's names
  with a side prefix: ``q_u``, ``q_alpha``, ``scale_g`` ...) at their neutral setting, so that the
  model computes what it computed before. A strategy that has no neutral setting (``log_n``,
  ``ssmax``, ``asentmax``) is refused unless ``neutral=False``, which starts every parameter where
  ``nn.SelectiveAttention`` starts it. One caveat, of the table's: SSA's position term is neutral at
  ``alpha = -inf``, where its gradient is 0, so it does not train from there; pass ``neutral=False``
  (``alpha = alpha_init``, default -4: ``sigmoid(-4) = 0.018``, nearly vanilla) to train it.
- Attention runs through one function registered with ``AttentionInterface`` (and the boolean mask
  function registered with ``AttentionMaskInterface`` under the same name, without which the mask
  would arrive as None and the causal mask would be lost). It calls the package's one attention core,
  ``functional.attend``: the query-side temperatures, the sink and the output gate, with n (the keys
  each query sees) from transformers' mask and positions from its ``position_ids``, so that padding and
  the cache are handled as transformers handles them.
- What the strategy table reads is what it reads in ``nn.SelectiveAttention``: the layer's input
  hidden states (captured by a forward pre-hook on the attention module) and each side's projection
  before RoPE, computed by the module's own weights (captured by forward hooks on ``q_proj``,
  ``k_proj``, ``v_proj``, after ``q_norm`` / ``k_norm`` where the model has them; GPT-2's ``c_attn``),
  never the rotated query the attention function is given.
- Key- and value-side temperatures are applied where the module computes its keys and values (those
  hooks), so the cache holds them already scaled, as the package's own ``KVCache`` does. A key or
  value strategy that reads n gets the keys its token sees as a query, ``position + 1`` (positions
  count real tokens in ``generate``). Strategies that need per-token data a model does not pass
  (``freq``'s key frequencies) are refused.

Attention dropout is not part of the core: a training step with attention dropout above 0 stops with
one line (set the config's ``attention_dropout`` / ``attn_pdrop`` to 0). ``output_attentions`` gives
no weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ssa_theory import functional as core
from ssa_theory.plan import LayerPlan
from ssa_theory.variants import Variant, get_variant

NAME = "ssa_theory"  # the attn_implementation registered with transformers
CONFIG_KEY = "ssa_theory"  # the config attribute that records the strategy and its options
FAMILIES = {"llama": "LlamaAttention", "mistral": "MistralAttention", "qwen2": "Qwen2Attention",
            "qwen3": "Qwen3Attention", "gpt2": "GPT2Attention"}  # model_type -> its attention module's class
OPTIONS = ("neutral", "train_length", "alpha_init")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("ssa_theory.hf needs transformers: pip install 'ssa_theory[hf]'") from None
    return transformers


# --- one attention layer -------------------------------------------------------------------------------------


class _Layer:
    """What ``apply`` attaches to one attention module (as ``module.ssa_state``; its parameters are
    ``module.ssa_temp``): the placements, the hooks, and what the hooks captured for the call in flight."""

    def __init__(self, module: nn.Module, plan: LayerPlan, *, gpt2: bool) -> None:
        self.module, self.plan, self.gpt2 = module, plan, gpt2
        self.n_heads, self.n_kv_heads, self.head_dim = plan.n_heads, plan.n_kv_heads, plan.d_head
        self.sides = {p.side for p in plan.placements}
        self.handles: list = []
        self.x = self.pos = self.q_pre = None

    def params(self) -> dict[str, torch.Tensor]:
        """The layer's strategy parameters, each with a member axis of 1."""
        return {k: p[None] for k, p in self.module.ssa_temp.items()}

    def strategies(self, sides) -> core.Strategies:
        """The placements on ``sides`` as the core takes them."""
        return self.plan.strategies(self.params(), sides)

    # the hooks --------------------------------------------------------------------------------------------

    def capture_inputs(self, module, args, kwargs) -> None:
        """Forward pre-hook of the attention module: its input hidden states (B, L, D) and positions."""
        x = args[0] if args else kwargs["hidden_states"]
        pos = kwargs.get("position_ids")
        if pos is None:
            pos = kwargs.get("cache_position")
        if pos is None:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            start = 0 if cache is None else int(cache.get_seq_length(getattr(module, "layer_idx", 0) or 0))
            pos = torch.arange(start, start + x.shape[1], device=x.device)
        self.x, self.pos = x, pos.reshape(-1, x.shape[1]).to(x.device)  # (B, L) or (1, L), 0-based

    def _heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """(B, L, n d) or (B, L, n, d) -> (B, n, L, d)."""
        return t.reshape(t.shape[0], t.shape[1], n, self.head_dim).transpose(1, 2)

    def _scaled(self, side: str, t: torch.Tensor) -> torch.Tensor:
        """A key or value projection (B, L, n d) or (B, L, n, d) times its side's temperature, same shape."""
        pos = self.pos[:, None]  # (B|1, 1, L), 0-based
        proj = self._heads(t, self.n_kv_heads)[None]
        tau = self.plan.readout(self.params(), side, self.x[None], proj=proj, positions=pos, n=(pos + 1).to(t.dtype))
        if tau is None:
            return t
        tau = tau.expand(1, t.shape[0], self.n_kv_heads, t.shape[1])[0].transpose(1, 2)  # (B, L, n)
        return (t.reshape(*t.shape[:2], self.n_kv_heads, self.head_dim) * tau[..., None].to(t.dtype)).reshape(t.shape)

    def on_query(self, module, args, out):
        self.q_pre = self._heads(out, self.n_heads)
        return out

    def on_key(self, module, args, out):
        return self._scaled("k", out)

    def on_value(self, module, args, out):
        return self._scaled("v", out)

    def on_qkv(self, module, args, out):
        """GPT-2's fused projection (B, L, 3 D): the query captured, the key and value scaled."""
        q, k, v = out.split(out.shape[-1] // 3, dim=-1)
        self.q_pre = self._heads(q, self.n_heads)
        if "k" in self.sides:
            k = self._scaled("k", k)
        if "v" in self.sides:
            v = self._scaled("v", v)
        return torch.cat([q, k, v], -1)

    def attach(self) -> None:
        m = self.module
        self.handles.append(m.register_forward_pre_hook(self.capture_inputs, with_kwargs=True))
        if self.gpt2:
            self.handles.append(m.c_attn.register_forward_hook(self.on_qkv))
            return
        self.handles.append((getattr(m, "q_norm", None) or m.q_proj).register_forward_hook(self.on_query))
        if "k" in self.sides:
            self.handles.append((getattr(m, "k_norm", None) or m.k_proj).register_forward_hook(self.on_key))
        if "v" in self.sides:
            self.handles.append(m.v_proj.register_forward_hook(self.on_value))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


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
    function or None (causal, or one query over every key); returns (B, Lq, H, d) and no weights."""
    layer: _Layer = module.ssa_state
    if dropout:
        raise ValueError(f"ssa_theory.hf: attention dropout ({dropout:g}) is not supported; set the config's "
                         "attention_dropout (GPT-2: attn_pdrop) to 0")
    B, H, Lq, d = query.shape
    if scaling is not None and not math.isclose(scaling * math.sqrt(d), 1.0, rel_tol=1e-7):
        query = query * (scaling * math.sqrt(d))  # the core's kernel scales by 1/sqrt(d); the model's own scale
    x, pos, q_pre = layer.x, layer.pos, layer.q_pre
    layer.x = layer.q_pre = None
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
    q_pre = q_pre[None]
    out, _ = core.attend(layer.strategies(("q", "out", "sink")), q_pre, key[None], value[None], x=x[None],
                         q_pos=pos, causal=causal, attn_mask=mask, rotate=_ModelRotation(q_pre, query[None]))
    return out[0].transpose(1, 2).contiguous(), None


def _register() -> None:
    transformers = _transformers()
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    transformers.AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # boolean (B, 1, Lq, Lk), True = may attend, or None


# --- the public functions ------------------------------------------------------------------------------------


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    config = getattr(model, "config", None)
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise ValueError(f"ssa_theory.hf supports the decoders {', '.join(FAMILIES)}; this model is "
                         f"{family or type(model).__name__!r}")
    found = [m for m in model.modules() if type(m).__name__ == FAMILIES[family]
             and not getattr(m, "is_cross_attention", False)]
    if not found:
        raise ValueError(f"no {FAMILIES[family]} module in this {family} model")
    return found


def _shape(module: nn.Module, config) -> tuple[int, int, int]:
    """(query heads, key/value heads, head width) of one attention module."""
    if hasattr(module, "c_attn"):  # GPT-2
        return module.num_heads, module.num_heads, module.head_dim
    H = config.num_attention_heads
    return H, H // module.num_key_value_groups, module.head_dim


def _check_options(variant: Variant, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} of ssa_theory.hf.apply; options: {', '.join(OPTIONS)}")
    placed = [s for _, s, _ in variant.placements()]
    if "alpha_init" in options and not any(s.name == "ssa_pos" for s in placed):
        raise ValueError(f"alpha_init is SSA's position term's start; {variant.name} places no position term")
    if "train_length" in options and not any("train_length" in s.needs for s in placed):
        raise ValueError(f"train_length is read by yarn, qwen and llama4; {variant.name} reads none")
    if options.get("neutral", True) is True and "alpha_init" in options:
        raise ValueError("alpha_init sets where SSA's position term starts when neutral=False; at neutral=True the "
                         "term starts at its neutral alpha = -inf")
    neutral = options.get("neutral", True)
    if not isinstance(neutral, bool):
        raise ValueError(f"neutral must be True or False (got {neutral!r})")
    return options


def _check_strategies(variant: Variant, neutral: bool) -> None:
    for _, s, _ in variant.placements():
        needs = sorted(n for n in s.needs if n != "train_length")
        if needs:
            raise ValueError(f"strategy {s.name!r} needs {', '.join(needs)} per token, which a transformers model "
                             "does not pass; choose another strategy")
        if neutral and s.neutral is None:
            raise ValueError(f"strategy {s.name!r} has no neutral setting (no parameter value makes it vanilla "
                             "attention), so applying it changes the model's outputs; pass neutral=False to accept that")


def _plan(variant: Variant, module: nn.Module, config, train_length: int | None) -> LayerPlan:
    """The plan of one attention module: its heads, head width and the model's width."""
    H, Hk, d = _shape(module, config)
    return LayerPlan.of(variant, d_model=config.hidden_size, n_heads=H, n_kv_heads=Hk, d_head=d, d_value=d,
                        train_length=train_length, where=" (pass train_length=...)")


def apply(model: nn.Module, variant: str | Variant = "ssa", **options: Any) -> nn.Module:
    """Put ``variant`` (a name of ``variants.VARIANTS``, a strategy's name or ``package.module:attr``)
    into every attention layer of ``model``, in place; returns the model.

    Options: ``neutral`` (default True: every new parameter at its neutral value, so the logits do
    not change; False: where ``nn.SelectiveAttention`` starts them, for strategies without a neutral
    setting or to train SSA's position term), ``train_length`` (the training length that ``yarn``,
    ``qwen`` and ``llama4`` read; default the config's ``max_position_embeddings`` / ``n_positions``),
    ``alpha_init`` (with ``neutral=False``: SSA's position-term start, default -4)."""
    variant = get_variant(variant)  # the name resolved once; every layer's plan takes the object
    options = _check_options(variant, dict(options))
    neutral = options.get("neutral", True)
    modules = _attention_modules(model)
    if any(hasattr(m, "ssa_state") for m in modules):
        raise ValueError("this model already has a strategy applied; call ssa_theory.hf.remove(model) first")
    config = model.config
    _check_strategies(variant, neutral)
    train_length = options.get("train_length")
    if train_length is None and any("train_length" in s.needs for _, s, _ in variant.placements()):
        train_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    plans = [_plan(variant, m, config, train_length) for m in modules]
    alpha_init = float(options.get("alpha_init", -4.0))
    _register()
    draw = lambda shape: torch.randn(shape) / math.sqrt(config.hidden_size)  # noqa: E731  (torch's global generator)
    for module, plan in zip(modules, plans):
        weight = next(module.parameters())
        values = plan.new_parameters(draw, neutral=neutral, alpha_init=alpha_init)
        module.ssa_temp = plan.parameter_dict({k: v.to(weight.device, weight.dtype) for k, v in values.items()})
        module.ssa_state = _Layer(module, plan, gpt2=hasattr(module, "c_attn"))
        module.ssa_state.attach()
    setattr(config, CONFIG_KEY, {"variant": variant.name, "neutral": neutral, "train_length": train_length,
                                 "alpha_init": alpha_init, "previous_attn_implementation": config._attn_implementation})
    model.set_attn_implementation(NAME)
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo ``apply``: the strategy's parameters and hooks removed, the model's own attention back."""
    spec = getattr(model.config, CONFIG_KEY, None)
    modules = [m for m in _attention_modules(model) if hasattr(m, "ssa_state")]
    if spec is None or not modules:
        raise ValueError("this model has no strategy applied by ssa_theory.hf.apply")
    for m in modules:
        m.ssa_state.detach()
        del m.ssa_state, m.ssa_temp
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
