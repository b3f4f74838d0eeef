"""The layer plan (``ssa_theory.plan``): one resolution of a variant serves every shell and readout."""

import dataclasses

import pytest
import torch

from ssa_theory import config as cfgmod
from ssa_theory import strategies as st
from ssa_theory.attention import Attention
from ssa_theory.functional import split_heads
from ssa_theory.ensemble import linear
from ssa_theory.nn import SelectiveAttention
from ssa_theory.plan import ALL, FACTORS, LAW, SSA, LayerPlan
from ssa_theory import variants
from ssa_theory.variants import all_variants, get_variant

E, B, H, L, D, W = 2, 3, 2, 5, 6, 3


def _inputs(strategy: st.Strategy) -> st.Inputs:
    """Inputs holding only what ``strategy`` declares it reads; everything else None."""
    g = torch.Generator().manual_seed(0)
    full = {"x": torch.randn(E, B, L, D, generator=g), "proj": torch.randn(E, B, H, L, W, generator=g),
            "positions": torch.arange(L)[None, None], "n": torch.arange(1, L + 1).float(),
            "q": torch.randn(E, B, H, L, W, generator=g), "train_length": 2}
    keep = set(strategy.reads)
    extras = {"k_freq": torch.rand(B, L, generator=g) + 0.1} if "k_freq" in strategy.reads else {}
    return st.Inputs(**{k: (v if k in keep else None) for k, v in full.items()}, heads=split_heads(H), linear=linear,
                     extras=extras, dtype=torch.float32)


@pytest.mark.parametrize("strategy", st.BUILTINS, ids=lambda s: s.name)
def test_every_builtin_formula_runs_on_what_it_declares_it_reads(strategy):
    """A declaration that leaves out an input the formula touches fails here (the formula meets None)."""
    shapes = {"H": H, "w": W, "d": W, "D": D, "Hw": H * W}
    params = {name: st.per_head(torch.randn(E, *[shapes[s] for s in p.shape]) * 0.3, p.shape)
              for name, p in strategy.params.items()}
    value = strategy.formula(_inputs(strategy), params)
    assert torch.isfinite(value).all()


def test_an_undeclared_read_is_caught():
    """The check above can fail: a formula that reads n while declaring only the positions meets None."""
    liar = dataclasses.replace(st.resolve("log_n"), reads={"positions"})
    with pytest.raises(TypeError):
        liar.formula(_inputs(liar), {})


def test_a_plugin_without_a_declaration_reads_everything():
    s = st.Strategy("undeclared", "q", "mul", lambda i, p: torch.log(i.n), neutral=None)
    assert s.reads == frozenset(st.READS)
    with pytest.raises(ValueError, match="unknown reads"):
        st.Strategy("bad", "q", "mul", lambda i, p: i.n, neutral=None, reads={"tokens"})
    with pytest.raises(ValueError, match="does not declare that it reads"):
        st.Strategy("bad", "q", "mul", lambda i, p: i.n, neutral=None, needs={"train_length"}, reads={"n"})


@pytest.mark.parametrize("variant, law", [("vanilla", []), ("ssa", ["ssa_pos"]), ("ssa_q_tok", []),
                                          ("asentmax", []), ("llama4", ["llama4"]), ("ssmax", ["ssmax"]),
                                          ("freq", [])])
def test_the_law_of_n_is_what_the_strategies_declare(variant, law):
    plan = LayerPlan.of(variant, d_model=D, n_heads=H, d_head=W, train_length=4)
    assert [p.strategy.name for p in plan.law("q")] == law


def test_the_readouts_split_a_side_into_terms_and_factors():
    """ALL = SSA x FACTORS on a variant with both; LAW leaves the token term out."""
    variant = dataclasses.replace(get_variant("ssa_q"), name="ssa_q+ssmax", scale="ssmax")
    attn = Attention(variant, D, generators=[torch.Generator().manual_seed(e) for e in range(E)], n_heads=H,
                     d_head=W)
    with torch.no_grad():
        for p in attn.temp.values():
            p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(3))
    x = torch.randn(E, B, L, D, generator=torch.Generator().manual_seed(4))
    q = attn._side_proj("q", x)
    kw = dict(proj=q, positions=torch.arange(L)[None, None], n=torch.arange(1, L + 1).float(), q=q)
    read = {w: attn.plan.readout(attn.temp, "q", x, which=w, **kw) for w in (ALL, SSA, FACTORS, LAW)}
    torch.testing.assert_close(read[ALL], read[SSA] * read[FACTORS])
    law = attn.plan.readout(attn.temp, "q", x, which=LAW, positions=kw["positions"], n=kw["n"])  # no projection
    alpha, s = attn.parameters_of("ssa_pos", "q")["alpha"], attn.parameters_of("ssmax")["s"]
    expected = (1 + torch.sigmoid(alpha)[:, None, :, None] * torch.log(kw["n"])) * s[:, None, :, None] * torch.log(kw["n"])
    torch.testing.assert_close(law, expected)
    with pytest.raises(ValueError, match="which must be one of"):
        attn.plan.readout(attn.temp, "q", x, which="everything")


@pytest.mark.parametrize("variant", all_variants())
def test_parameters_keep_the_placement_order_in_both_layers(variant):
    plan = LayerPlan.of(variant, d_model=D, n_heads=H, d_head=W, train_length=4)
    order = list(plan.shapes())
    m = SelectiveAttention(D, H, variant=variant, train_length=4)
    a = Attention(variant, D, generators=[torch.Generator()], n_heads=H, d_head=W, train_length=4)
    assert list(m.temp) == order and list(a.temp) == order
    assert {k: tuple(v.shape) for k, v in m.temp.items()} == plan.shapes()


def test_a_variant_field_names_itself_on_a_bad_name_and_resolves_once():
    from ssa_theory.experiments.dilution import DilutionConfig

    with pytest.raises(cfgmod.ConfigError, match="^noise_strategies: unknown attention variant 'ssa_qq'"):
        DilutionConfig(noise_strategies=("ssa_qq",))
    cfg = DilutionConfig()
    fields = cfgmod.variant_names(cfg)
    assert set(fields) == {"strategies", "noise_strategies"}
    names = {n for ns in fields.values() for n in ns}
    assert set(cfg._variants) == names  # every name either field holds, each resolved once
    assert all(variants.variant_of(cfg, n) == get_variant(n) for n in names)


def test_the_cli_checks_plugins_in_variant_fields_only(monkeypatch):
    """A string field that is not a variant field is never tried as a variant (no import of what it names)."""
    from ssa_theory.cli import _common

    @dataclasses.dataclass(frozen=True)
    class Config:
        note: str = "not_a_module.anywhere:NOTHING"  # would fail to import if tried as a variant
        variant: str = cfgmod.variant_field("ssa")

        def __post_init__(self):
            variants.resolve_variants(self)

    seen = []
    monkeypatch.setattr(_common, "plugin_strategies", lambda resolved: seen.append(dict(resolved)) or [])
    _common.check_plugins(Config())
    assert list(seen[0]) == ["ssa"]


def test_the_conformance_kit_catches_an_undeclared_read():
    """A plug-in whose formula reads n while declaring only the positions fails the kit's 'declared reads'."""
    from ssa_theory.testing import check_strategy

    liar = st.Strategy("liar_reads_n", "q", "mul", lambda i, p: 1.0 + 0.1 * torch.log(i.n), neutral=None,
                       reads={"positions"})
    report = check_strategy(liar, fast=True)
    assert any(f.startswith("declared reads:") for f in report.failures), str(report)
    honest = dataclasses.replace(liar, name="honest_reads_n", reads={"n"})
    assert check_strategy(honest, fast=True).ok
