"""Seeds as a batch dimension: member i of a batched run is a single run with seed i; same seed, same numbers."""

import numpy as np
import pytest
import torch

from ssa_theory import seeding
from ssa_theory.experiments import graph_transition as gt
from ssa_theory.rundir import RunContext
from ssa_theory.skeleton import ModelSpec
from ssa_theory.tasks.graphs import GraphTask

CFG = gt.GraphTransitionConfig(steps=60, batch_size=64, log_every=20)


@pytest.fixture(scope="module")
def P():
    return GraphTask.build(CFG.n_nodes, CFG.max_degree, CFG.graph_seed, CFG.smoothing)


def train(task, seeds, model, score, tmp_path):
    ctx = RunContext(tmp_path, list(seeds), torch.device("cpu"), quiet=True)
    return gt.train(ModelSpec.of(model, gt.MODELS[model]), CFG, seeding.Members.of(seeds), ctx, task=task, score=score)


@pytest.mark.parametrize("model,score", [("ssa", "softcap"), ("ssa", "dot"), ("vanilla", "rownorm")])
def test_batched_member_matches_single_run(P, model, score, tmp_path):
    batched = train(P, [3, 4, 5], model, score, tmp_path)
    single = train(P, [4], model, score, tmp_path)
    for key in ("ce", "l1", "temperature", "qk_norm", "probs"):
        np.testing.assert_allclose(batched[key][1], single[key][0], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(batched.history["ce"][:, 1], single.history["ce"][:, 0], rtol=1e-5, atol=1e-6)


def test_members_differ(P, tmp_path):
    r = train(P, [0, 1], "ssa", "softcap", tmp_path)
    assert not np.allclose(r["probs"][0], r["probs"][1])


def test_same_seed_same_numbers(P, tmp_path):
    a = train(P, [7, 8], "ssa", "softcap", tmp_path)
    b = train(P, [7, 8], "ssa", "softcap", tmp_path)
    for key in ("ce", "temperature", "probs"):
        np.testing.assert_array_equal(a[key], b[key])


def test_global_torch_seed_is_not_used(P, tmp_path):
    torch.manual_seed(1)
    a = train(P, [2], "ssa", "softcap", tmp_path)
    torch.manual_seed(999)
    b = train(P, [2], "ssa", "softcap", tmp_path)
    np.testing.assert_array_equal(a["probs"], b["probs"])


def test_streams_are_distinct_and_stable():
    assert seeding.derive_seed(0, "init") != seeding.derive_seed(0, "data")
    assert seeding.derive_seed(0, "init") != seeding.derive_seed(1, "init")
    # Pinned literals: a change in how seeds are derived would shift every committed number.
    assert seeding.derive_seed(5, "data") == 2080082186671054586
    assert seeding.derive_seed(0, "init") == 2918264622725855778
    assert 0 <= seeding.derive_seed(123, "task") < 2**63
    with pytest.raises(KeyError):
        seeding.derive_seed(0, "nope")
    assert seeding.member_seeds(3, 4) == [3, 4, 5, 6]


def test_sub_streams_are_distinct_from_their_stream_and_each_other():
    """Keys name independent sub-streams; SeedSequence pads its entropy with zeros, so a key of 0 must not
    give the stream itself, nor (a,) and (a, 0) one sub-stream."""
    from ssa_theory.seeding import derive_seed

    seeds = {derive_seed(3, "eval"), derive_seed(3, "eval", 0), derive_seed(3, "eval", 0, 0), derive_seed(3, "eval", 1),
             derive_seed(3, "eval", 1, 0), derive_seed(3, "eval", 0, 1), derive_seed(4, "eval", 0), derive_seed(3, "init_twin")}
    assert len(seeds) == 8
    assert derive_seed(3, "eval", 2) == derive_seed(3, "eval", 2)
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(3, "eval", -1)


def test_a_placebo_twin_is_initialised_apart_and_trained_on_the_same_data():
    from ssa_theory import lm

    shape = lm.LMShape(vocab=5, variant="vanilla", d_model=8, n_layers=1, n_heads=1, d_mlp=16, conv=2, train_length=8)
    a, b, again = lm.member(shape, 0), lm.member(shape, 0, "init_twin"), lm.member(shape, 0)
    pa, pb, pg = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, again))
    assert torch.equal(pa, pg) and not torch.equal(pa, pb)
