"""The scrambled mechanism (``ssa_theory.scramble``): the placebo reads what it should, and nothing more."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from ssa_theory import scramble
from ssa_theory.attention import Attention
from ssa_theory.seeding import torch_generators
from ssa_theory.variants import get_variant, scrambled


def _slow_gather(t, index):
    """The reference, one slot at a time: slot (b, l) of every member and head takes slot index[b, l]."""
    out = torch.empty_like(t)
    E, B, H, L, w = t.shape
    for e in range(E):
        idx = index[e] if index.dim() == 3 else index
        for b in range(B):
            for l in range(L):
                src = int(idx[b, l])
                out[e, b, :, l] = t[e, src // L, :, src % L]
    return out


@settings(max_examples=30, deadline=None)
@given(E=hs.integers(1, 3), B=hs.integers(1, 4), H=hs.integers(1, 3), L=hs.integers(1, 5), per_member=hs.booleans(),
       seed=hs.integers(0, 2**16))
def test_gather_slots_matches_a_slot_by_slot_reference(E, B, H, L, per_member, seed):
    """Including the coincidences (B == L, B == H) where a transposed axis would go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(E, B, H, L, 2, generator=g)
    index = scramble.draw({scramble.TOKEN}, B, L, torch_generators(range(E if per_member else 1), "placebo"))["tok_from"]
    index = index if per_member else index[0]
    torch.testing.assert_close(scramble.gather_slots(t, index), _slow_gather(t, index), rtol=0, atol=0)


def _pair(base: str, E=2, D=6, **kw):
    """The real variant and its scrambled twin, built from the same draw (the same parameters)."""
    make = lambda v: Attention(get_variant(v), D, generators=torch_generators(range(E), "init"), d_head=3,  # noqa: E731
                               n_heads=2, **kw)
    real, twin = make(base), make(base + "_scrambled")
    for (n1, p1), (n2, p2) in zip(real.named_parameters(), twin.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    with torch.no_grad():  # move the temperatures off their neutral start so that they vary by token
        for name, p in real.named_parameters():
            if "u" in name.split("_")[-1] or name.endswith("alpha"):
                p.normal_(0, 1, generator=torch.Generator().manual_seed(1))
        twin.load_state_dict(real.state_dict())
    return real, twin


@pytest.mark.parametrize("base", ["ssa_q_tok", "ssa_q", "ssa_v_tok_noshare", "ssa_q_pos"])
def test_where_the_input_carries_nothing_real_and_scrambled_read_alike(base):
    """Every slot the same token (and, for a position term, one position): the permutation moves
    nothing, so the twin is the real layer exactly."""
    real, twin = _pair(base)
    E, B, L = 2, 3, 4
    x = torch.randn(E, 1, 1, 6, generator=torch.Generator().manual_seed(2)).expand(E, B, L, 6).contiguous()
    pos = torch.full((L,), 5)
    extras = scramble.draw(scramble.needs(twin.variant), B, L, torch_generators(range(E), "placebo"))
    a = real(x, q_pos=pos, k_pos=pos)
    b = twin(x, q_pos=pos, k_pos=pos, extras=extras)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("base", ["ssa_q_tok", "ssa_v_tok_noshare", "ssa_q_pos"])
def test_the_scramble_moves_the_information(base):
    """With distinct tokens the twin's temperature at each slot is the real one of the slot it was
    handed, and (for a permutation that moves something) not its own: the input, not the formula, moved."""
    real, twin = _pair(base)
    E, B, L = 2, 3, 4
    x = torch.randn(E, B, L, 6, generator=torch.Generator().manual_seed(3))
    extras = scramble.draw(scramble.needs(twin.variant), B, L, torch_generators(range(E), "placebo"))
    side = "v" if "_v" in base else "q"
    plan_real, plan_twin = real.plan, twin.plan
    proj = real._side_proj(side, x) if base != "ssa_v_tok_noshare" else None
    tau_real = plan_real.readout(real.temp, side, x, which="ssa", proj=proj)
    tau_twin = plan_twin.readout(twin.temp, side, x, which="ssa", proj=proj, extras=extras)
    index = next(iter(extras.values()))
    tau_real = tau_real.expand(E, B, 2, L)
    moved = scramble.gather_slots(tau_real[..., None], index)[..., 0]
    torch.testing.assert_close(tau_twin.expand(E, B, 2, L), moved)
    assert not torch.allclose(tau_twin.expand(E, B, 2, L), tau_real)


def test_the_position_scramble_keeps_each_row_s_positions():
    """Within a row: the same set of positions (so the same length), in another order."""
    idx = scramble.draw({scramble.POSITION}, 4, 6, torch_generators(range(3), "placebo"))["pos_from"]
    for e in range(3):
        for b in range(4):
            assert sorted(idx[e, b].tolist()) == list(range(b * 6, b * 6 + 6))


def test_a_scrambled_layer_without_its_permutation_is_a_one_line_error():
    _, twin = _pair("ssa_q_tok")
    with pytest.raises(ValueError, match="tok_from"):
        twin(torch.randn(2, 1, 4, 6))


def test_only_ssa_s_own_variants_have_a_scrambled_twin():
    assert scrambled("ssa").scrambled and scrambled("ssa").name == "ssa_scrambled"
    with pytest.raises(ValueError, match="no SSA term"):
        scrambled("global")
    assert not scramble.needs(get_variant("ssa"))
    assert scramble.needs(get_variant("ssa_scrambled")) == {"tok_from", "pos_from"}
