"""The one temperature budget (paper_repro.md, "One temperature budget"): weight decay prices every
weight matrix and vector and no per-head scalar; every experiment that prices its model applies that
one penalty (``Attention.weight_l2``); where a task prices the logit multiplier, parameter-free factors
pay too."""

import dataclasses
import math

import pytest
import torch

from ssa_theory import registry
from ssa_theory.attention import VARIANTS, Attention
from ssa_theory.experiments import graph_transition
from ssa_theory.rundir import RunContext
from ssa_theory.seeding import Members
from ssa_theory.skeleton import ModelSpec
from ssa_theory.tasks.graphs import GraphTask

# What each experiment prices, by the config field that sets its weight decay; the rest price nothing.
PRICED = {"dilution": "weight_decay", "specificity": "weight_decay", "norm_spikiness": "weight_decay",
          "graph_transition": "dot_l2"}
UNPRICED = {"denoising", "passkey", "flipflop", "critical"}
DECAY_FIELDS = {"weight_decay", "dot_l2", "l2", "decay"}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_weight_l2_prices_matrices_and_vectors_never_scalars(variant):
    attn = Attention(variant, 6, generators=[torch.Generator().manual_seed(s) for s in (0, 1)], d_head=4,
                     value_proj=True, out_proj=True, train_length=8)
    attn.weight_l2().sum().backward()
    priced = {id(p) for p in attn.decayed_parameters()}
    for name, p in attn.named_parameters():
        if id(p) in priced:
            assert p.dim() >= 3, f"{variant}: {name} {tuple(p.shape)} is priced but is a scalar per head"
            assert torch.allclose(p.grad, 2 * p.detach()), name  # d/dp of the sum of squares
        else:
            assert p.dim() <= 2, f"{variant}: the matrix or vector {name} {tuple(p.shape)} is not priced"
            assert p.grad is None or torch.all(p.grad == 0), name


def test_every_experiment_is_classified():
    trained = set(registry.with_ablation())
    assert trained == set(PRICED) | UNPRICED, "classify a new experiment's budget here and in paper_repro.md"
    for name in UNPRICED:
        fields = {f.name for f in dataclasses.fields(registry.get(name).config)}
        assert not fields & DECAY_FIELDS, f"{name} has a weight-decay field but is listed as pricing nothing"


@pytest.mark.parametrize("name", sorted(PRICED | {n: None for n in UNPRICED}))
def test_each_experiment_applies_the_one_penalty(name, tmp_path, monkeypatch):
    """Train one variant with scalars and vectors (``ssa``) for a few steps through the experiment's own
    training code: an experiment that prices its model calls ``Attention.weight_l2`` at every step, one
    that prices nothing never does."""
    calls = []
    real = Attention.weight_l2

    def recording(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(Attention, "weight_l2", recording)
    exp = registry.get(name)
    overrides = {**exp.ablation.overrides, **exp.ablation.quick, "steps": 3, "log_every": 3}
    if name == "graph_transition":
        overrides["score"] = "dot"  # the geometry with a weight budget (softcap bounds the scores instead)
    cfg = exp.config(**overrides)
    if name in PRICED:
        assert getattr(cfg, PRICED[name]) > 0
    exp.ablation.run(cfg, "ssa", RunContext(tmp_path, [0, 1], torch.device("cpu"), quiet=True))
    if name in PRICED:
        assert len(calls) >= 3, f"{name} trained without the budget's penalty"
    else:
        assert calls == []


def test_graph_transition_prices_a_parameter_free_multiplier():
    """``log_n`` has no parameter to pay with, but its multiplier log K pays the same price as a learned
    one: its price is (log K)^2, and the ablation's cell adds it."""
    cfg = graph_transition.GraphTransitionConfig()
    task = GraphTask.build(cfg.n_nodes, cfg.max_degree, cfg.graph_seed, cfg.smoothing)
    members = Members.of([0])
    net = graph_transition.build_model(ModelSpec.of("log_n"), cfg, task, "softcap", members)
    assert torch.allclose(graph_transition.price(net), torch.tensor([math.log(cfg.n_nodes) ** 2]))
    vanilla = graph_transition.build_model(ModelSpec.of("vanilla"), cfg, task, "softcap", members)
    assert torch.allclose(graph_transition.price(vanilla), torch.ones(1))
