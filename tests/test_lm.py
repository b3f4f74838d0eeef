"""The model room: a small causal LM from the public layer, E seeds on one ensemble axis."""

import pytest
import torch

from ssa_theory import lm


@pytest.mark.parametrize("variant", ["vanilla", "ssa", "ssmax"])
def test_member_e_of_the_ensemble_is_the_single_model_with_seed_e(variant):
    shape = lm.LMShape(vocab=20, variant=variant, d_model=16, d_mlp=32, train_length=16)
    ens = lm.Ensemble(shape, [3, 4])
    tokens = torch.randint(20, (2, 3, 10), generator=torch.Generator().manual_seed(0))
    single = lm.member(shape, 4)
    torch.testing.assert_close(ens(tokens)[1], single(tokens[1]), rtol=0, atol=1e-6)
    torch.manual_seed(1)
    a = lm.member(shape, 4).head.weight
    torch.manual_seed(999)
    torch.testing.assert_close(lm.member(shape, 4).head.weight, a)  # the global seed is not used
    assert not torch.equal(lm.member(shape, 3).head.weight, a)


def test_the_model_is_causal_and_nope_by_default():
    shape = lm.LMShape(vocab=20, d_model=16, d_mlp=32)
    m = lm.member(shape, 0)
    t = torch.randint(20, (2, 12), generator=torch.Generator().manual_seed(1))
    u = t.clone()
    u[:, 8:] = (u[:, 8:] + 1) % 20
    torch.testing.assert_close(m(t)[:, :8], m(u)[:, :8])  # later tokens never reach earlier logits
    assert not any("pos" in n for n, _ in m.named_parameters())  # no position embedding


def test_read_weights_are_the_attention_at_the_read_row():
    shape = lm.LMShape(vocab=20, variant="ssa", d_model=16, d_mlp=32)
    ens = lm.Ensemble(shape, [0, 1])
    t = torch.randint(20, (2, 3, 9), generator=torch.Generator().manual_seed(2))
    logits, w = ens(t, read=torch.tensor([8, 4]))
    assert w.shape == (2, 2, 3, 2, 2, 9)  # (E, layers, B, H, rows, keys)
    torch.testing.assert_close(logits, ens(t))
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert torch.all(w[..., 1, 5:] == 0)  # row 4 sees keys 0..4 only
    assert set(ens.temperatures()) >= {"blocks.0.attn.temp.q_alpha", "blocks.1.attn.temp.v_u"}


def test_the_ensemble_s_token_temperatures_are_each_member_s_alone():
    """Through vmap, member e's per-token temperatures are those of ``member(shape, seeds[e])`` run alone."""
    shape = lm.LMShape(vocab=12, variant="ssa", d_model=16, n_layers=2, n_heads=2)
    tokens = torch.randint(0, 12, (2, 3, 10), generator=torch.Generator().manual_seed(0))
    net = lm.Ensemble(shape, [4, 5])
    with torch.no_grad():  # the temperatures off their start, where every member's are alike
        for name, p in zip(net.names, net.stacked):
            if ".temp." in name:
                p.normal_(generator=torch.Generator().manual_seed(1))
    taus = net.token_temperatures(tokens)
    assert taus.shape == (2, 2, 2, 3, 2, 10) and not torch.allclose(taus[0], taus[1])
    alone = lm.member(shape, 5)
    with torch.no_grad():
        for name, p in alone.named_parameters():
            p.copy_(dict(zip(net.names, net.stacked))[name][1])
    torch.testing.assert_close(taus[1], alone.token_temperatures(tokens[1]))
