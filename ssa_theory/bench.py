"""Benchmarks as ratios measured side by side in one process (never absolute times in a test).

- ``attention``: every named variant of ``ssa_theory.attention.Attention`` (the temperature
  strategies included; ``yarn`` and ``qwen`` with a training length of a quarter of the benchmark's,
  ``freq`` with random token frequencies) against a reference
  layer built from ``torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)`` with
  the same projections, forward plus backward, causal self-attention. Rounds are interleaved
  (reference, variant, reference, ...) and the first round is a warm-up.
- ``module``: ``ssa_theory.nn.SelectiveAttention`` (the public ``(B, L, D)`` module) of each variant
  against a plain causal attention module of the same shape, as in nanoGPT: a qkv ``nn.Linear``,
  ``F.scaled_dot_product_attention(..., is_causal=True)``, an output ``nn.Linear``; forward plus
  backward, interleaved, median ratio. Target for ``ssa``: at most 1.05x.
- ``hf``: a tiny Hugging Face Llama after ``ssa_theory.hf.apply`` against its own ``sdpa`` path,
  forward plus backward, interleaved, median ratio. Target for ``ssa``: at most 1.10x.
- ``seeds``: an experiment's training with N batched seeds against 1 seed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from ssa_theory.attention import Attention
from ssa_theory.variants import VARIANTS
from ssa_theory.rundir import RunContext
from ssa_theory.seeding import member_seeds, torch_generator, torch_generators

# Targets from the issue that asked for the fast path: SSA's overhead should be negligible.
TARGETS = {"vanilla": 1.02, "ssa": 1.05}
MODULE_TARGETS = {"vanilla": 1.02, "ssa": 1.05}  # the public module against a nanoGPT-style one


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _rounds(reference: Callable[[], None], candidate: Callable[[], None], repeats: int,
            device: torch.device) -> tuple[list[float], list[float]]:
    """Times of ``reference`` and ``candidate``, interleaved, ``repeats`` rounds after a warm-up round."""
    t_ref, t_var = [], []
    for r in range(repeats + 1):
        a, b = _timed(reference, device), _timed(candidate, device)
        if r:
            t_ref.append(a)
            t_var.append(b)
    return t_ref, t_var


def reference_layer(d_model: int, n_heads: int, device: torch.device) -> tuple[Callable, list[torch.Tensor]]:
    """Plain multi-head causal attention on the fused kernel: ``x -> (sdpa(xW_q, xW_k, xW_v) W_o)``."""
    g = torch_generator(0, "init")
    ws = [(torch.randn(d_model, d_model, generator=g) / d_model**0.5).to(device).requires_grad_() for _ in range(4)]
    w_q, w_k, w_v, w_o = ws

    def forward(x: torch.Tensor) -> torch.Tensor:  # x (B, L, D)
        B, L, D = x.shape
        heads = lambda t: t.view(B, L, n_heads, D // n_heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(heads(x @ w_q), heads(x @ w_k), heads(x @ w_v), is_causal=True)
        return out.transpose(1, 2).reshape(B, L, D) @ w_o

    return forward, ws


def attention(*, batch: int = 8, heads: int = 4, length: int = 1024, d_head: int = 64, repeats: int = 5,
              variants: Sequence[str] | None = None, device: torch.device = torch.device("cpu"),
              dtype: torch.dtype = torch.float32, log=None) -> pd.DataFrame:
    """Median forward+backward time of each variant and of the SDPA reference; their ratio."""
    D = heads * d_head
    variants = list(variants or VARIANTS)
    x = torch.randn(batch, length, D, generator=torch_generator(1, "data")).to(device, dtype)
    ref, _ = reference_layer(D, heads, device)
    # yarn and qwen act past a training length: a quarter of the benchmark's length
    layers = {n: Attention(n, D, generators=torch_generators([0], "init"), n_heads=heads,
                           train_length=max(2, length // 4)).to(device, dtype) for n in variants}
    k_freq = torch.rand(batch, length, generator=torch_generator(2, "data")).to(device, dtype) * 0.9 + 0.05

    def step_ref() -> None:
        ref(x.to(dtype)).sum().backward()

    def step(layer: Attention) -> Callable[[], None]:
        return lambda: layer(x[None], causal=True, extras={"k_freq": k_freq}).sum().backward()

    rows = []
    for name, layer in layers.items():
        t_ref, t_var = _rounds(step_ref, step(layer), repeats, device)
        ratios = [b / a for a, b in zip(t_ref, t_var)]
        row = {"variant": name, "ms_variant": 1e3 * statistics.median(t_var), "ms_sdpa": 1e3 * statistics.median(t_ref),
               "ratio": statistics.median(ratios), "target": TARGETS.get(name, float("nan"))}
        row["met"] = "" if name not in TARGETS else ("yes" if row["ratio"] <= row["target"] else "no")
        rows.append(row)
        if log:
            log(f"{name:<20} {row['ratio']:.3f}x")
    return pd.DataFrame(rows)


def seeds(experiment, config, *, n_seeds: int, repeats: int, device: torch.device, seed: int = 0) -> pd.DataFrame:
    """Median wall time of the experiment's run with 1 seed and with ``n_seeds`` batched seeds, interleaved."""
    counts = [1, n_seeds]
    times: dict[int, list[float]] = {c: [] for c in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):  # the first round warms up and is not counted
            for c in counts:
                d = Path(tmp) / f"{r}-{c}"
                d.mkdir()
                t = _timed(lambda: experiment.run(config, RunContext(d, member_seeds(seed, c), device, quiet=True)),
                           device)
                if r:
                    times[c].append(t)
    med = {c: statistics.median(times[c]) for c in counts}
    return pd.DataFrame([{"experiment": experiment.name, "seeds": c, "median_s": med[c],
                          "runs_s": ", ".join(f"{t:.2f}" for t in times[c]), "ratio_to_1": med[c] / med[1]} for c in counts])


class NanoGPTAttention(torch.nn.Module):
    """The reference module: nanoGPT's CausalSelfAttention without dropout (qkv ``nn.Linear``, SDPA
    ``is_causal=True``, output ``nn.Linear``)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.c_attn = torch.nn.Linear(d_model, 3 * d_model, bias=False)
        self.c_proj = torch.nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        B, L, D = x.shape
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in self.c_attn(x).split(D, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, D))


def module(*, batch: int = 8, heads: int = 4, length: int = 1024, d_head: int = 64, repeats: int = 5,
           variants: Sequence[str] = ("vanilla", "ssa"), device: torch.device = torch.device("cpu")) -> pd.DataFrame:
    """Median forward+backward time of ``SelectiveAttention`` per variant against ``NanoGPTAttention``."""
    from ssa_theory.nn import SelectiveAttention

    D = heads * d_head
    torch.manual_seed(0)
    x = torch.randn(batch, length, D, generator=torch_generator(1, "data")).to(device)
    ref = NanoGPTAttention(D, heads).to(device)
    rows = []
    for variant in variants:  # names or resolved Variants
        layer = SelectiveAttention(D, heads, variant=variant, train_length=max(2, length // 4)).to(device)
        name = layer.variant.name
        t_ref, t_var = _rounds(lambda: ref(x).sum().backward(), lambda: layer(x).sum().backward(), repeats, device)
        ratio = statistics.median(b / a for a, b in zip(t_ref, t_var))
        target = MODULE_TARGETS.get(name, float("nan"))
        rows.append({"variant": name, "ms_module": 1e3 * statistics.median(t_var),
                     "ms_nanogpt": 1e3 * statistics.median(t_ref),
                     "ratio": ratio, "target": target,
                     "met": "" if name not in MODULE_TARGETS else ("yes" if ratio <= target else "no")})
    return pd.DataFrame(rows)


LENGTHS = (256, 1024, 4096)


def lengths(*, lengths=LENGTHS, batch: int = 8, heads: int = 4, d_head: int = 64, repeats: int = 3,
            variant: str = "ssa", device: torch.device = torch.device("cpu")) -> pd.DataFrame:
    """``variant``'s forward-plus-backward ratio at each length, side by side: the public module against
    nanoGPT's attention (``module``) and the ensemble layer against the fused SDPA reference
    (``attention``). The temperature costs O(L d) beside attention's O(L^2 d), so the ratios should
    fall toward 1 as L grows."""
    rows = []
    for n in lengths:
        m = module(batch=batch, heads=heads, length=n, d_head=d_head, repeats=repeats, variants=(variant,),
                   device=device).iloc[0]
        a = attention(batch=batch, heads=heads, length=n, d_head=d_head, repeats=repeats, variants=(variant,),
                      device=device).iloc[0]
        rows.append({"length": n, "module_ms": m["ms_module"], "nanogpt_ms": m["ms_nanogpt"], "module_ratio": m["ratio"],
                     "ensemble_ms": a["ms_variant"], "sdpa_ms": a["ms_sdpa"], "ensemble_ratio": a["ratio"],
                     "target": MODULE_TARGETS.get(variant, float("nan"))})
    return pd.DataFrame(rows)


def profile(variant: str = "ssa", *, batch: int = 8, heads: int = 4, length: int = 1024, d_head: int = 64,
            steps: int = 3, top: int = 8) -> pd.DataFrame:
    """Where ``SelectiveAttention(variant)``'s forward plus backward spends the time it takes beyond
    vanilla's, on the CPU: torch.profiler's self time per operator, ms per step, for both, sorted by
    the difference (the ``top`` largest, and the rest summed)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from ssa_theory.nn import SelectiveAttention

    D = heads * d_head
    x = torch.randn(batch, length, D, generator=torch_generator(1, "data"))
    per_op = {}
    for name in ("vanilla", variant):
        torch.manual_seed(0)
        layer = SelectiveAttention(D, heads, variant=name, train_length=max(2, length // 4))
        layer(x).sum().backward()  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                layer(x).sum().backward()
        per_op[name] = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}
    ops = set(per_op["vanilla"]) | set(per_op[variant])
    rows = [{"op": op, f"ms_{variant}": per_op[variant].get(op, 0.0), "ms_vanilla": per_op["vanilla"].get(op, 0.0)}
            for op in ops]
    df = pd.DataFrame(rows)
    df["extra_ms"] = df[f"ms_{variant}"] - df["ms_vanilla"]
    df = df.sort_values("extra_ms", ascending=False, ignore_index=True)
    rest = df.iloc[top:][[f"ms_{variant}", "ms_vanilla", "extra_ms"]].sum()
    head = df.iloc[:top]
    total = pd.DataFrame([{"op": "all other operators", **rest.to_dict()},
                          {"op": "total", f"ms_{variant}": df[f"ms_{variant}"].sum(),
                           "ms_vanilla": df["ms_vanilla"].sum(),
                           "extra_ms": df["extra_ms"].sum()}])
    return pd.concat([head, total], ignore_index=True)


HF_TARGET = 1.10  # ssa_theory.hf.apply(model, "ssa") against the model's own sdpa path


HF_FAMILIES = ("llama", "gpt_neox", "gemma", "gemma2", "phi3")


def _hf_config(family: str, hidden: int, layers: int, heads: int, length: int):
    """A random-weight decoder of ``family`` at this size (no download), and the attention it runs on
    its own: ``sdpa``, or ``eager`` for Gemma 2 (its logit soft-cap has no SDPA path in transformers)."""
    import transformers

    common = dict(vocab_size=1000, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, max_position_embeddings=length, pad_token_id=0)
    make = {"llama": lambda: transformers.LlamaConfig(num_key_value_heads=heads, **common),
            "gpt_neox": lambda: transformers.GPTNeoXConfig(rotary_pct=0.25, **common),
            "gemma": lambda: transformers.GemmaConfig(num_key_value_heads=heads, head_dim=hidden // heads, **common),
            "gemma2": lambda: transformers.Gemma2Config(num_key_value_heads=heads, head_dim=hidden // heads,
                                                        query_pre_attn_scalar=hidden // heads, **common),
            "phi3": lambda: transformers.Phi3Config(num_key_value_heads=heads, **common)}
    return make[family](), ("eager" if family == "gemma2" else "sdpa")


def hf_model(*, hidden: int = 256, layers: int = 4, heads: int = 4, length: int = 512, batch: int = 4, repeats: int = 5,
             variants: Sequence[str] = ("vanilla", "ssa"), device: torch.device = torch.device("cpu"),
             families: Sequence[str] = ("llama",)) -> pd.DataFrame:
    """Median forward+backward time of a tiny Hugging Face decoder of each family after
    ``ssa_theory.hf.apply(model, v)`` against the same model on its own attention (``sdpa``; Gemma 2:
    ``eager``), interleaved (new parameters at their initial values, ``neutral=False``, so that every
    term is computed and trained)."""
    rows = []
    for family in families:
        rows += _hf_family(family, hidden, layers, heads, length, batch, repeats, variants, device)
    return pd.DataFrame(rows)


def _hf_family(family, hidden, layers, heads, length, batch, repeats, variants, device) -> list[dict]:
    import copy

    from transformers import AutoModelForCausalLM

    from ssa_theory import hf

    config, own = _hf_config(family, hidden, layers, heads, length)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = AutoModelForCausalLM.from_config(config, attn_implementation=own).to(device)
    ids = torch.randint(0, 1000, (batch, length), generator=torch_generator(1, "data")).to(device)
    rows = []
    for name in variants:
        model = hf.apply(copy.deepcopy(ref), name, **({} if name == "vanilla" else {"neutral": False}))
        t_ref, t_var = _rounds(lambda: ref(ids, labels=ids).loss.backward(),
                               lambda: model(ids, labels=ids).loss.backward(), repeats, device)
        ratio = statistics.median(b / a for a, b in zip(t_ref, t_var))
        rows.append({"family": family, "own": own, "variant": name, "ms_hf_apply": 1e3 * statistics.median(t_var),
                     "ms_own": 1e3 * statistics.median(t_ref), "ratio": ratio,
                     "target": HF_TARGET if name == "ssa" else float("nan"),
                     "met": ("yes" if ratio <= HF_TARGET else "no") if name == "ssa" else ""})
    return rows


def flash_without_mask(device: torch.device) -> str:
    """On CUDA: whether SelectiveAttention's plain causal path runs on the flash kernel (SDPA with only
    the flash backend enabled must accept it, which it does only without a materialised mask)."""
    from ssa_theory.nn import SelectiveAttention

    if device.type != "cuda":
        return "not measured (no CUDA device)"
    layer = SelectiveAttention(256, 4, variant="ssa").to(device, torch.bfloat16)
    x = torch.randn(2, 512, 256, device=device, dtype=torch.bfloat16)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            layer(x).sum().backward()
        return "yes: it runs with only the flash backend enabled"
    except RuntimeError as e:
        return f"no: {str(e).splitlines()[0]}"
