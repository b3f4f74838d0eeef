"""A conformance kit for temperature strategies: ``check_strategy(strategy)``.

Every built-in strategy passes it (the default test suite runs it over all of them), and so must a
plug-in. It checks, on small float32 layers with fixed generators:

    neutral        at its declared neutral setting it equals vanilla attention (to 1e-6)
    causal         changing a future token changes no earlier output
    n per query    under a causal mask, query i's output equals the last output of the prefix
                   0..i (so the strategy reads the keys each query sees, not the row length)
    padding        a row padded with junk tokens on the left or on the right (``attention_mask``) gives
                   the unpadded row's outputs at its real tokens, its positions counted from its
                   first real token (so the strategy reads n and positions of real tokens only)
    cache          cached decoding, one token at a time, equals the full forward pass at every step;
                   and a left-padded batch decoded with the cache equals each row decoded alone
    fused          the fused path (SDPA) equals the explicit one (softmax of the logits)
    declared reads the formula gives the same outputs when it is handed only the inputs its strategy
                   declares (``Strategy.reads``; a strategy that declares none reads every input)
    independent    batch rows do not mix, and neither do ensemble members (the formula broadcasts
                   over leading axes, as the contract in ``ssa_theory.strategies`` asks)
    gradients      finite at initialisation and after a few steps of training

A failed property is one line naming it. ``check_strategy`` returns a ``Report``; ``assert_conforms``
raises ``StrategyError`` with those lines. Both take a strategy's name, its dotted path
``module:attr``, the ``Strategy`` object, or the function ``register_strategy`` decorated.
``FAST`` is the subset that guards a plug-in where it enters (``run``, ``card``): causality, padding,
its declared reads, finite values and gradients.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ssa_theory import strategies as st
from ssa_theory.attention import Attention
from ssa_theory.variants import Variant

D, H, L, B = 8, 2, 6, 3
PAD = 3  # junk tokens added by the padding property
TOL = 1e-6  # float32: outputs are O(1), so 1e-6 is a few ulps of accumulated rounding, far below any real change
TOL_PATH = 2e-5  # two computation orders (cache vs full, fused vs explicit, prefix vs full) in float32


class StrategyError(AssertionError):
    """A strategy failed the conformance kit; the message has one line per failed property."""


@dataclass
class Report:
    strategy: str
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"{self.strategy}: {'conforms' if self.ok else 'FAILS'} ({len(self.passed)} passed, "
                 f"{len(self.failures)} failed, {len(self.skipped)} skipped)"]
        lines += [f"  failed: {f}" for f in self.failures] + [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def _variants(strategy: st.Strategy, ref: str) -> list[Variant]:
    """How to place the strategy (``ref``: its name or dotted path): on its own side, or for SSA's terms
    on each of q, k and v."""
    if strategy.side is not None:
        return [Variant(strategy.name, scale=ref)]
    term = {"ssa_pos": "pos", "ssa_tok": "tok", "ssa_tok_own": "tok"}.get(strategy.name)
    if term is None:
        raise ValueError(f"strategy {strategy.name!r} has no side; place it with a Variant to check it")
    share = strategy.name != "ssa_tok_own"
    return [Variant(f"{strategy.name}@{side}", **{side: frozenset({term})}, share=share) for side in ("q", "k", "v")]


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every strategy parameter off its initial value (non-trivial temperatures)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.temp.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (0.5 if p.dim() <= 2 else 0.0))


def _neutralise(module: torch.nn.Module, placements) -> None:
    with torch.no_grad():
        for _, strategy, prefix in placements:
            for pname, spec in strategy.params.items():
                module.temp[prefix + pname].fill_(spec.neutral)


def _freq(batch: int, length: int) -> torch.Tensor:
    return torch.rand(batch, length, generator=torch.Generator().manual_seed(7)) * 0.9 + 0.05


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> tuple[bool, float]:
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False, math.inf
    a, b = a.detach(), b.detach()
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    return diff <= tol * max(1.0, float(b.abs().max()) if b.numel() else 1.0), diff


@dataclass
class _Case:
    """One placement of the strategy under check: its variant, the layer factory and the inputs."""

    strategy: st.Strategy
    variant: Variant
    train_length: int
    x: torch.Tensor  # (B, L, D)
    kf: torch.Tensor | None  # (B, L) key frequencies, where a placement reads them

    def extras(self, kf: torch.Tensor | None = None) -> dict:
        kf = self.kf if kf is None else kf
        return {} if kf is None else {"k_freq": kf}

    def make(self, v=None, seed: int = 0):
        from ssa_theory.nn import SelectiveAttention

        torch.manual_seed(seed)
        return SelectiveAttention(D, H, variant=self.variant if v is None else v, train_length=self.train_length)


def _neutral(c: _Case) -> str | None:
    if c.strategy.neutral is None:
        return "skip: declares no neutral setting"
    vanilla, m = c.make("vanilla"), c.make()
    m.load_state_dict({**m.state_dict(), **{k: v for k, v in vanilla.state_dict().items()}}, strict=False)
    if c.strategy.neutral == "params":
        _neutralise(m, m.placements)
    ok, diff = _close(m(c.x, extras=c.extras()), vanilla(c.x), TOL)
    return None if ok else f"differs from vanilla attention by {diff:.2e} at its neutral setting (tolerance {TOL:g})"


def _causal(c: _Case) -> str | None:
    m = c.make()
    _perturb(m, 3)
    y = c.x.clone()
    y[:, -1] += 3.0
    kf2 = None if c.kf is None else c.kf.clone()
    if kf2 is not None:
        kf2[:, -1] = 0.5
    a, b = m(c.x, extras=c.extras()), m(y, extras=c.extras(kf2))
    ok, diff = _close(a[:, :-1], b[:, :-1], TOL)
    return None if ok else f"changing the last token changed earlier outputs by {diff:.2e}"


def _per_query(c: _Case) -> str | None:
    m = c.make()
    _perturb(m, 4)
    full = m(c.x, extras=c.extras())
    for i in range(L):
        part = m(c.x[:, :i + 1], extras={k: f[:, :i + 1] for k, f in c.extras().items()})[:, -1]
        ok, diff = _close(full[:, i], part, TOL_PATH)
        if not ok:
            return (f"query {i}'s output under the causal mask differs from the prefix's by {diff:.2e}: it does "
                    "not read n, the keys each query sees (a full row length, say)")
    return None


def _padding(c: _Case) -> str | None:
    m = c.make()
    _perturb(m, 5)
    alone = m(c.x, extras=c.extras())
    junk = torch.randn(B, PAD, D, generator=torch.Generator().manual_seed(9)) * 5
    for side in ("left", "right"):
        xp = torch.cat([junk, c.x] if side == "left" else [c.x, junk], 1)
        real = torch.ones(B, L + PAD, dtype=torch.bool)
        real[:, slice(0, PAD) if side == "left" else slice(L, None)] = False
        kfp = None if c.kf is None else (torch.cat([torch.full((B, PAD), 0.5), c.kf], 1) if side == "left"
                                         else torch.cat([c.kf, torch.full((B, PAD), 0.5)], 1))
        out = m(xp, attention_mask=real, extras=c.extras(kfp))
        a = out[:, PAD:] if side == "left" else out[:, :L]
        ok, diff = _close(a, alone, TOL_PATH)
        if not ok:
            return (f"a row {side}-padded (attention_mask) differs from the unpadded row at its real tokens by "
                    f"{diff:.2e}: it reads the padding, or positions and n that count it")
    return None


def _cache(c: _Case) -> str | None:
    m = c.make()
    _perturb(m, 6)
    full = m(c.x, extras=c.extras())
    cache = m.new_cache(B, L)
    steps = [m(c.x[:, t:t + 1], cache=cache,
               extras={k: f[:, t:t + 1] for k, f in c.extras().items()}) for t in range(L)]
    ok, diff = _close(torch.cat(steps, 1), full, TOL_PATH)
    if not ok:
        return f"cached decoding differs from the full forward pass by {diff:.2e}"
    # a batch of prompts of different lengths, left-padded, then decoded one token at a time
    lengths = [L - 2 - (b % 3) for b in range(B)]
    start = max(lengths)
    xp = torch.zeros(B, start, D)
    real = torch.zeros(B, start, dtype=torch.bool)
    for b, n in enumerate(lengths):
        xp[b, start - n:], real[b, start - n:] = c.x[b, :n], True
    kf = None if c.kf is None else torch.full((B, start), 0.5)
    if kf is not None:
        for b, n in enumerate(lengths):
            kf[b, start - n:] = c.kf[b, :n]
    cache = m.new_cache(B, start + 2)
    first = m(xp, attention_mask=real, cache=cache, extras=c.extras(kf))[:, -1]
    nxt = torch.stack([c.x[b, n] for b, n in enumerate(lengths)])[:, None]  # each row's next real token
    kf_next = None if c.kf is None else torch.stack([c.kf[b, n] for b, n in enumerate(lengths)])[:, None]
    second = m(nxt, cache=cache, extras=c.extras(kf_next))[:, -1]
    for b, n in enumerate(lengths):
        ref = m(c.x[b:b + 1, :n + 1], extras={k: f[b:b + 1, :n + 1] for k, f in c.extras().items()})[0]
        for got, want, what in ((first[b], ref[n - 1], "prompt"), (second[b], ref[n], "next token")):
            ok, diff = _close(got, want, TOL_PATH)
            if not ok:
                return (f"batched left-padded cached decoding differs from the row decoded alone by {diff:.2e} "
                        f"(row {b}, its {what})")
    return None


def _fused(c: _Case) -> str | None:
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    layer = Attention(c.variant, D, generators=gens, n_heads=H, train_length=c.train_length)
    _perturb(layer, 7)
    xe = c.x[None].expand(2, B, L, D)
    a = layer(xe, causal=True, extras=c.extras())
    b, _ = layer(xe, causal=True, return_probs=True, extras=c.extras())
    ok, diff = _close(a, b, TOL_PATH)
    return None if ok else f"the fused path differs from the explicit one by {diff:.2e}"


def _only_declared(strategy: st.Strategy) -> st.Strategy:
    """The strategy with a formula that sees only the inputs the strategy declares it reads."""
    reads = strategy.reads

    def formula(inputs: st.Inputs, params):
        hidden = {f: None for f in ("x", "proj", "positions", "n", "q") if f not in reads}
        if "train_length" not in reads:
            hidden["train_length"] = None
        extras = {k: v for k, v in inputs.extras.items() if k in reads}
        return strategy.formula(dataclasses.replace(inputs, **hidden, extras=extras), params)

    return dataclasses.replace(strategy, formula=formula)


def _declared(c: _Case) -> str | None:
    from ssa_theory.plan import Placement

    m = c.make()
    _perturb(m, 13)
    full = m(c.x, extras=c.extras())
    m.plan = dataclasses.replace(m.plan, placements=tuple(
        Placement(p.side, _only_declared(p.strategy) if p.strategy.name == c.strategy.name else p.strategy, p.prefix)
        for p in m.plan.placements))
    try:
        limited = m(c.x, extras=c.extras())
    except (TypeError, AttributeError) as e:
        return f"reads an input it does not declare in reads={sorted(c.strategy.reads)} ({type(e).__name__}: {e})"
    ok, diff = _close(limited, full, 0.0)
    return None if ok else f"differs by {diff:.2e} when it sees only what it declares in reads={sorted(c.strategy.reads)}"


def _independent(c: _Case) -> str | None:
    m = c.make()
    _perturb(m, 8)
    y = c.x.clone()
    y[1:] += torch.randn(B - 1, L, D, generator=torch.Generator().manual_seed(10))
    ok, diff = _close(m(c.x, extras=c.extras())[0], m(y, extras=c.extras())[0], TOL)
    if not ok:
        return f"changing other batch rows changed row 0 by {diff:.2e}"
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    layer = Attention(c.variant, D, generators=gens, n_heads=H, train_length=c.train_length)
    _perturb(layer, 11)
    xe = c.x[None].expand(2, B, L, D).contiguous()
    before = layer(xe, causal=True, extras=c.extras())[0]
    with torch.no_grad():
        for p in layer.temp.values():
            p[1].add_(0.7)
        layer.w_q[1].mul_(2.0)
    ok, diff = _close(layer(xe, causal=True, extras=c.extras())[0], before, TOL)
    return None if ok else f"changing ensemble member 1 changed member 0 by {diff:.2e}"


def _gradients(c: _Case) -> str | None:
    m = c.make()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    target = torch.randn(B, L, D, generator=torch.Generator().manual_seed(12))
    for step in range(6):
        loss = (m(c.x, extras=c.extras()) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        bad = [n for n, p in m.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if bad or not torch.isfinite(loss):
            return f"non-finite {'loss' if not bad else 'gradients of ' + ', '.join(bad)} at step {step}"
        opt.step()
    return None


PROPERTIES = (("neutral", _neutral), ("causal", _causal), ("n per query", _per_query), ("padding", _padding),
              ("cache", _cache), ("fused", _fused), ("declared reads", _declared), ("independent", _independent),
              ("gradients", _gradients))


def _run(report: Report, name: str, fn, case: _Case) -> None:
    """One property: passed, skipped (``"skip: why"``) or failed (its message; a crash is one line)."""
    try:
        failure = fn(case)
    except Exception as e:  # noqa: BLE001  a crash is a failed property, reported as one line
        failure = f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if failure is None:
        report.passed.append(name)
    elif failure.startswith("skip: "):
        report.skipped.append(f"{name}: {failure[6:]}")
    else:
        report.failures.append(f"{name}: {failure}")


# the subset that guards a plug-in where it enters: causality, padding, finite values
FAST = ("causal", "padding", "declared reads", "gradients")


def check_strategy(strategy, *, fast: bool = False) -> Report:
    """Run every property (``fast``: those of ``FAST``) on ``strategy``: its name, a dotted path
    ``module:attr``, a ``Strategy``, or the function ``register_strategy`` decorated. A ``Strategy``
    that is not registered is registered for the check and removed after it."""
    if isinstance(strategy, st.Strategy) and strategy.name not in st._REGISTRY:
        st.register(strategy)
        try:
            return check_strategy(strategy, fast=fast)
        finally:
            st.unregister(strategy.name)
    resolved = st.resolve(strategy)
    if isinstance(strategy, str) and ":" in strategy:
        ref = strategy
    else:
        ref = resolved.name
        if st._REGISTRY.get(ref) is not resolved:
            raise ValueError(f"another strategy named {ref!r} is registered; pass this one's dotted path module:attr")
    report = Report(ref)
    for variant in _variants(resolved, ref):
        where = f" [{variant.name}]" if resolved.side is None else ""
        needs_freq = any("k_freq" in s.needs for _, s, _ in variant.placements())
        case = _Case(resolved, variant, L + 1 if resolved.neutral == "train_length" else 3,
                     torch.randn(B, L, D, generator=torch.Generator().manual_seed(1)), _freq(B, L) if needs_freq else None)
        for prop, fn in PROPERTIES:
            if not fast or prop in FAST:
                _run(report, f"{prop}{where}", fn, case)
    return report


def assert_conforms(strategy, *, fast: bool = False) -> Report:
    """``check_strategy``, raising ``StrategyError`` (one line per failed property) if any fails."""
    report = check_strategy(strategy, fast=fast)
    if not report.ok:
        raise StrategyError("\n".join([f"strategy {report.strategy!r} fails the conformance kit:",
                                       *(f"  {f}" for f in report.failures)]))
    return report
