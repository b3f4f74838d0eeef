"""Golden outputs: the fixed computations whose numbers ``core.VERSION`` stands for.

The core version enters every run hash (``ssa_theory.rundir``). It must move when, and only when,
the core's *numbers* move, so it is pinned to the outputs of a fixed set of small computations
rather than to the text of the code (a rename or a reflow then keeps every run hash):

- every variant (``variants.all_variants``) through the experiments' ensemble layer (two members,
  every score geometry for a few of them, a causal and a masked call with an empty row, the
  probabilities, every temperature readout) and through the public layer (left padding, grouped
  heads, RoPE, a cache split, the attention weights), forward and backward, in float64 and float32,
  with every strategy parameter away from its neutral value so that each formula is exercised;
- ``selective_sdpa`` and ``sdpa_weights`` with every scale;
- a few steps of the training loop (``train.fit``: Adam, its cosine schedule) on two variants;
- the statistics (``stats``), the closed forms (``theory``), the measures (``measures``), seeding and
  the member streams, on fixed inputs.

``compute()`` returns them by name. ``core.check`` compares them with ``core_golden.json`` two ways:

- *within tolerance*, on any machine: each output's summary (its L1 norm and two fixed random
  projections) within its own tolerance times its L1 norm. The tolerance is ``MARGIN`` times the
  output's own sensitivity to rounding, measured when it is recorded by recomputing it with other
  kernels (``ALTERNATIVES``: torch's scalar kernels and MKL's AVX2 path, a different summation order
  everywhere), and at least ``FLOOR[dtype]``. Most float64 outputs move by about 1e-16 there and are
  held to 1e-12, which a change of one float32 ulp (6e-8) in a strategy's constant exceeds; a few are
  ill-conditioned (gradients of per-head scalars, where large terms cancel; ASEntmax's factor, which
  reaches 1e10 at n = 1) and get the looser tolerance they need;
- *bit for bit*, on a machine kind that recorded its digest (the CPU capability torch dispatches to,
  and the torch, numpy and scipy versions): a SHA-256 of every output's bytes, which a reordered
  operation that is not exact changes.
"""

from __future__ import annotations

import hashlib
import math
import numpy as np
import torch

FLOOR = {"float64": 1e-12, "float32": 1e-6}
MARGIN = 100.0
# environments in which the outputs are recomputed to measure their sensitivity to rounding
_AVX2_LIBRARIES = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
ALTERNATIVES = ({"ATEN_CPU_CAPABILITY": "default", **_AVX2_LIBRARIES},
                {"ATEN_CPU_CAPABILITY": "avx2", **_AVX2_LIBRARIES})

# sizes: E members, B batch, H heads, L tokens, D width; L > TRAIN_LENGTH so that yarn, qwen and llama4 act
E, B, H, L, D, D_HEAD = 2, 2, 2, 5, 6, 3
TRAIN_LENGTH = 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape, seed: int, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=_gen(seed), dtype=torch.float64) * scale).to(dtype)


def _k_freq(shape, seed: int, dtype) -> torch.Tensor:
    return torch.rand(shape, generator=_gen(seed), dtype=torch.float64).mul(0.9).add(0.05).to(dtype)


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Every parameter set to a fixed float64 draw: strategy parameters away
    from their neutral values, so that every formula and its gradient is exercised, and inputs that do
    not depend on the CPU's sampler (torch's float32 normal sampler has a vectorised path whose values
    differ from its scalar path's in the last bits; the layer's own draws are outputs of their own)."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(_randn(p.shape, seed * 1000 + i, p.dtype, 0.5))


def _backward(outputs: dict, prefix: str, module: torch.nn.Module, y: torch.Tensor, seed: int) -> None:
    """The gradient of a fixed random projection of y with respect to every parameter of ``module``."""
    module.zero_grad(set_to_none=True)
    (y * _randn(y.shape, seed, y.dtype)).sum().backward()
    for name, p in module.named_parameters():
        if p.grad is not None:
            outputs[f"{prefix}/grad/{name}"] = p.grad


def _ensemble_layer(outputs: dict, variant: str, dtype: torch.dtype, score: str = "dot") -> None:
    from ssa_theory.attention import Attention

    tag = f"ensemble/{variant}/{score}/{str(dtype)[6:]}"
    bound = None if score == "dot" else 2.0
    attn = Attention(variant, D, generators=[_gen(10 + e) for e in range(E)], n_heads=H, d_head=D_HEAD, score=score,
                     score_bound=bound, train_length=TRAIN_LENGTH)
    if dtype == torch.float32 and score == "dot":  # the layer's own draws, from each member's generator
        for name, p in attn.named_parameters():
            outputs[f"init/{variant}/{name}"] = p.detach().clone()
    attn = attn.to(dtype)
    _perturb(attn, 1)
    x = _randn((E, B, L, D), 2, dtype)
    extras = {"k_freq": _k_freq((B, L), 3, dtype)}
    pos = torch.arange(1, L + 1)
    y = attn(x, causal=True, q_pos=pos, k_pos=pos, extras=extras)
    outputs[f"{tag}/causal"] = y
    _backward(outputs, f"{tag}/causal", attn, y, 4)
    mask = torch.rand((B, L, L), generator=_gen(5)) < 0.6
    mask[0, 1] = False  # a query that sees no key
    y, probs = attn(x, mask=mask, causal=False, extras=extras, return_probs=True)
    outputs[f"{tag}/masked"], outputs[f"{tag}/masked/probs"] = y, probs
    outputs[f"{tag}/logits"] = attn.logits(x, causal=True, extras=extras)
    if score != "dot":
        return
    with torch.no_grad():
        outputs[f"{tag}/tau_q"] = attn.query_inverse_temperature(x, 4.0, pos=pos)
        tau_k = attn.key_inverse_temperature(x, pos, extras)
        if tau_k is not None:
            outputs[f"{tag}/tau_k"] = tau_k
        for side in ("q", "k", "v"):
            tau = attn.temperature(side, x, pos=pos)
            if tau is not None:
                outputs[f"{tag}/temperature_{side}"] = tau


def _public_layer(outputs: dict, variant: str, dtype: torch.dtype) -> None:
    from ssa_theory.nn import SelectiveAttention

    tag = f"public/{variant}/{str(dtype)[6:]}"
    with torch.random.fork_rng(devices=[]):
        m = SelectiveAttention(8, 4, n_kv_heads=2, variant=variant, rope_base=100.0,
                               train_length=TRAIN_LENGTH).to(dtype)
    _perturb(m, 6)
    Lp = 6
    x = _randn((B, Lp, 8), 7, dtype)
    padding = torch.ones(B, Lp, dtype=torch.bool)
    padding[0, :2] = False  # row 0 is left-padded
    freq = _k_freq((B, Lp), 8, dtype)
    y = m(x, attention_mask=padding, extras={"k_freq": freq})
    outputs[f"{tag}/padded"] = y
    _backward(outputs, f"{tag}/padded", m, y, 9)
    with torch.no_grad():
        outputs[f"{tag}/weights"] = m.attention_weights(x, attention_mask=padding, extras={"k_freq": freq})
        cache = m.new_cache(B, Lp)
        steps = [m(x[:, :4], attention_mask=padding[:, :4], cache=cache, extras={"k_freq": freq[:, :4]})]
        steps += [m(x[:, t:t + 1], cache=cache, extras={"k_freq": freq[:, t:t + 1]}) for t in (4, 5)]
        outputs[f"{tag}/cached"] = torch.cat(steps, 1)


def _sdpa(outputs: dict, dtype: torch.dtype) -> None:
    from ssa_theory.nn import sdpa_weights, selective_sdpa

    q, k, v = _randn((B, 4, L, 3), 11, dtype), _randn((B, 2, L, 3), 12, dtype), _randn((B, 2, L, 3), 13, dtype)
    scales = {"q_scale": _randn((B, 4, L), 14, dtype).exp(), "k_scale": _randn((B, 2, L), 15, dtype).exp()}
    mask = torch.rand((B, 1, L, L), generator=_gen(16)) < 0.7
    tag = f"sdpa/{str(dtype)[6:]}"
    outputs[f"{tag}/causal"] = selective_sdpa(q, k, v, **scales, v_scale=_randn((B, 2, L), 17, dtype).exp(),
                                              is_causal=True)
    outputs[f"{tag}/masked"] = selective_sdpa(q, k, v, **scales, attn_mask=mask)
    outputs[f"{tag}/weights"] = sdpa_weights(q, k, **scales, attn_mask=mask, is_causal=True)


def _training(outputs: dict, variant: str) -> None:
    """Six steps of ``train.fit`` (Adam, cosine schedule) on a two-member layer, in float64."""
    from ssa_theory.attention import Attention
    from ssa_theory.train import fit

    attn = Attention(variant, D, generators=[_gen(20 + e) for e in range(E)], n_heads=H, d_head=D_HEAD).double()
    _perturb(attn, 19)
    x, target = _randn((E, B, L, D), 21, torch.float64), _randn((E, B, L, D), 22, torch.float64)

    def loss(step: int) -> torch.Tensor:
        y = attn(x, causal=True)
        return (y - target).pow(2).mean((1, 2, 3)) + 1e-3 * attn.weight_l2()

    history = fit(list(attn.parameters()), loss, steps=6, lr=0.05, evaluate=lambda: {"loss": loss(0)}, log_every=2)
    outputs[f"train/{variant}/loss"] = torch.as_tensor(history["loss"])
    for name, p in attn.named_parameters():
        outputs[f"train/{variant}/{name}"] = p.detach()


def _statistics(outputs: dict) -> None:
    from ssa_theory import stats

    x = np.random.default_rng(30).normal(1.0, 0.3, 7)
    frac = np.random.default_rng(31).uniform(0.0, 1.0, 6)
    rows = [stats.mean_ci(x), stats.bootstrap_ci(frac), stats.ratio_ci(np.exp(x)), stats.binomial_ci(3, 120),
            stats.binomial_ci(0, 40), stats.interval("acc", frac), stats.interval("ce", x)]
    s = stats.survival([100, 250, 300, 400, 500, 500], [True, True, True, False, True, False])
    rows.append((s["median"], s["lo"] if math.isfinite(s["lo"]) else -1.0, s["hi"] if math.isfinite(s["hi"]) else -1.0))
    outputs["stats"] = torch.tensor(rows, dtype=torch.float64)


def _closed_forms(outputs: dict) -> None:
    from ssa_theory import theory as t

    n = np.array([2.0, 16.0, 256.0, 4096.0])
    values = [
        t.logit_gap(16, 3, 0.05), t.min_logit_norm(16, 3, 2.5), t.best_ce_under_norm(16, 3, 4.0),
        *t.smoothed_row(16, 3, 0.05), t.optimal_gap(16, 3, 0.05), t.row_ce_at_gap(16, 3, 0.05, 2.0),
        t.row_entropy(16, 3, 0.05), t.max_gap(16, 3, "softcap", 2.0), t.max_gap(16, 3, "rownorm", 2.0),
        t.best_ce_under_bound(16, 3, 0.05, "softcap", 2.0, 1.3),
        t.predicted_inverse_temperature(16, 3, 0.05, "softcap", 2.0, 1e-3),
        t.predicted_inverse_temperature(16, 5, 0.05, "rownorm", 3.0, 1e-3),
        t.denoising_mse_naive([1.0, 3.0, 0.5]), t.denoising_mse_convex([1.0, 3.0, 0.5]),
        t.denoising_mse_bayes([1.0, 3.0, 0.5]), *t.value_selective_bayes_parameters(8, [1.0, 10.0])[0],
        *t.noisy_count_pmf(6, 0.3), *[float(v) for v in vars(t.expected_denoising_mse(16, 0.9, 1.0, 10.0)).values()
                                      if isinstance(v, (float, int))],
        t.gap_for_accuracy(16, 3, 0.05, 0.1), t.min_norm_for_accuracy(16, 3, 0.05, 0.1),
        t.query_norm_lower_bound(16, 3, 0.05, 0.1, 2.0, 1.5), *t.position_scale(n, 0.5), *t.dilution_mass(n, 2.0, 0.5),
        *t.critical_mass(n, 0.7, 1.5), *t.critical_log_odds(n, 0.7, 1.5), *t.gap_needed(n, 0.1),
        *t.effective_gap(np.array([0.9, 0.5, 0.2, 0.1]), n),
        *t.best_global_inverse_temperature(16, [1, 2, 3, 4, 5], 0.05, "softcap", 2.0, 1e-3, 2.0),
        t.specificity_min_norm_sq(3.0, 4.0, 0.5, 0.9), t.specificity_min_norm(3.0, 4.0, 0.5, 0.9, "global"),
        t.specificity_min_norm(3.0, 4.0, 0.5, 0.9, "vanilla"), t.token_swing_min_gain(1.5, 0.9),
        *np.ravel(t.specificity_frontier(np.linspace(-1.0, 1.0, 8), 4.0, 0.5, 0.9, 0.05)),
    ]
    outputs["theory"] = torch.tensor([float(v) for v in values], dtype=torch.float64)


def _measures_and_seeds(outputs: dict) -> None:
    from ssa_theory import measures, seeding
    from ssa_theory.sampling import MemberStream

    w_q, w_k = _randn((E, D, 4), 40, torch.float64), _randn((E, D, 4), 41, torch.float64)
    W = measures.qk_matrix(w_q, w_k, 4)
    probs = torch.softmax(_randn((3, 5), 42, torch.float64), -1)
    outputs["measures"] = torch.cat([W.ravel(), measures.token_norms(W, _randn((5, D), 43, torch.float64)).ravel(),
                                     measures.spikiness(probs), measures.max_prob(probs)])
    seeds = [seeding.derive_seed(s, stream, *keys) for s in (0, 7) for stream, keys in
             (("init", ()), ("data", ()), ("eval", (3,)), ("init_twin", ()), ("placebo", (1, 2)))]
    seeds += seeding.step_lengths(5, 4, 16, 8)
    outputs["seeds"] = torch.tensor(seeds, dtype=torch.float64)
    stream = MemberStream(seeding.torch_generators([0, 1], "data"), lambda g, k: (torch.randn(k, 3, generator=g),),
                          torch.device("cpu"))
    outputs["stream"] = torch.cat([stream()[0] for _ in range(3)])


def compute(variants: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Every golden output by name, computed on one CPU thread (the thread count moves the last bits).
    ``variants``: only those variants' layer outputs (a quick subset, for tests); default all of them
    and everything else."""
    from ssa_theory.variants import all_variants

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    outputs: dict[str, torch.Tensor] = {}
    try:
        for dtype in (torch.float64, torch.float32):
            for variant in variants or all_variants():
                _ensemble_layer(outputs, variant, dtype)
                _public_layer(outputs, variant, dtype)
            if variants is not None:
                continue
            for score in ("cosine", "softcap", "rownorm"):
                for variant in ("vanilla", "ssa", "global", "ssa_q_pos"):
                    _ensemble_layer(outputs, variant, dtype, score)
            _sdpa(outputs, dtype)
        if variants is None:
            for variant in ("ssa", "global"):
                _training(outputs, variant)
            _statistics(outputs)
            _closed_forms(outputs)
            _measures_and_seeds(outputs)
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in outputs.items()}


def compute_elsewhere(env: dict[str, str]) -> dict[str, np.ndarray]:
    """``compute()`` in a fresh process with ``env`` added (other kernels: ``ALTERNATIVES``)."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "golden.npz")
        code = ("import sys, numpy as np; from ssa_theory import golden; "
                "np.savez(sys.argv[1], **{k.replace('/', '|'): v for k, v in golden.compute().items()})")
        subprocess.run([sys.executable, "-c", code, out], env={**os.environ, **env}, check=True)
        with np.load(out) as f:
            return {k.replace("|", "/"): f[k] for k in f.files}


def tolerance(name: str, value: np.ndarray, others: list[dict[str, np.ndarray]]) -> float:
    """An output's relative tolerance: ``MARGIN`` times its largest relative move under ``others``
    (the outputs recomputed with other kernels), at least ``FLOOR`` of its dtype."""
    base = summary(name, value)
    moves = [0.0]
    for other in others:
        alt = summary(name, other[name])
        moves.append(math.inf if alt[3] != base[3] else
                     max(abs(a - b) for a, b in zip(alt[:3], base[:3])) / max(abs(base[0]), 1e-300))
    return max(FLOOR[dtype_of(value)], MARGIN * max(moves))


def summary(name: str, value: np.ndarray) -> list[float]:
    """What the tolerance compares, in float64: [L1 norm, two fixed random projections] of the finite
    entries, and a code for where the others are (-inf in a masked logit), compared exactly."""
    x = np.asarray(value, dtype=np.float64).ravel()
    finite = np.isfinite(x)
    kind = np.where(np.isnan(x), 3.0, np.where(x > 0, 2.0, 1.0))
    code = float(((np.arange(x.size) + 1.0) * kind)[~finite].sum())
    x = np.where(finite, x, 0.0)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    r = np.random.default_rng(seed).standard_normal((2, x.size))
    return [float(np.abs(x).sum()), float(r[0] @ x), float(r[1] @ x), code]


def digest(outputs: dict[str, np.ndarray]) -> str:
    """SHA-256 over every output's name, dtype, shape and bytes: the bit-for-bit fingerprint."""
    h = hashlib.sha256()
    for name in sorted(outputs):
        v = np.ascontiguousarray(outputs[name])
        h.update(f"{name}\0{v.dtype.str}\0{v.shape}\0".encode() + v.tobytes())
    return h.hexdigest()[:16]


def _processor() -> str:
    """The processor's model name and a short hash of its feature flags (Linux's /proc/cpuinfo; the
    platform's processor string elsewhere): math libraries pick their kernels by both."""
    import platform

    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    field = lambda key: next((line.split(":", 1)[1].strip() for line in info.splitlines()  # noqa: E731
                              if line.startswith(key)), "")
    flags = " ".join(sorted(set(field("flags").split())))
    return f"{field('model name') or platform.machine()} {hashlib.sha256(flags.encode()).hexdigest()[:8]}"


def machine_kind() -> str:
    """What bit-for-bit agreement is keyed by: the processor (its model and feature flags), the CPU
    capability torch dispatches its kernels to, and the versions of the libraries the outputs run
    through. Another kind is held to the tolerance only."""
    import scipy

    return (f"{_processor()} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__} "
            f"numpy {np.__version__} scipy {scipy.__version__}")


def dtype_of(value: np.ndarray) -> str:
    return "float32" if np.asarray(value).dtype == np.float32 else "float64"
