"""dilution: the task's construction, seeds as a batch, and the trained models against the closed form."""

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory import cli
from ssa_theory.config import ConfigError
from ssa_theory.experiments import dilution as dl
from ssa_theory.rundir import RunContext, load_frame, read_json
from ssa_theory.seeding import Members, torch_generator
from ssa_theory.skeleton import ModelSpec


def test_items_hold_one_needle_with_its_class():
    cfg = dl.DilutionConfig(n_classes=4)
    needle, classes, noise = dl.draw_items(cfg, torch_generator(0, "data"), (3,), 7)
    x = dl.items(cfg, needle, classes, noise)
    assert x.shape == (3, 7, 6)
    assert (x[..., 0].sum(-1) == 1).all() and (x[..., 0].argmax(-1) == needle).all()
    assert (x[..., 1:5].argmax(-1) == classes).all() and (x[..., 5] == 0).all()


def test_config_refuses_impossible_values():
    with pytest.raises(ConfigError, match="n_min <= n_max"):
        dl.DilutionConfig(n_min=10, n_max=5)
    with pytest.raises(ConfigError, match="did you mean 'log_n'"):
        dl.DilutionConfig(strategies=("vanilla", "logn"))
    assert dl.DilutionConfig(n_min=5, n_max=5).needle_frequency == pytest.approx(0.2)


def test_training_lengths_are_the_tasks_not_the_members():
    cfg = dl.DilutionConfig(steps=50)
    a, b = dl.train_lengths(cfg), dl.train_lengths(cfg)
    assert a == b and min(a) >= cfg.n_min and max(a) <= cfg.n_max and len(set(a)) > 3


@pytest.mark.parametrize("strategy", ["ssa", "freq"])
def test_batched_member_matches_single_run(tmp_path, strategy):
    cfg = dl.DilutionConfig(steps=30, batch_size=16, n_eval=32, log_every=10)
    cpu, spec = torch.device("cpu"), ModelSpec.of(strategy)
    batched = dl.train(spec, cfg, Members.of([3, 4]), RunContext(tmp_path, [3, 4], cpu, quiet=True))
    single = dl.train(spec, cfg, Members.of([4]), RunContext(tmp_path, [4], cpu, quiet=True))
    assert set(batched.arrays) == set(single.arrays) >= {*dl.MEASURES, "mass_pred", "grid_mass_pred"}
    for key, a in batched.arrays.items():  # every measure at every length, and the learned scalars
        np.testing.assert_allclose(a[1], single[key][0], rtol=1e-5, atol=1e-6, err_msg=key)


def test_prediction_with_equal_distractors_is_the_softmax_by_hand():
    """One distractor level: the prediction is the exact mean softmax mass, no expansion left; and
    multiplying every logit by the temperature ratio r is the same as scaling them by hand."""
    z_needle = np.array([[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]])
    z_dist = np.full((2, 20), 0.5)
    for n, r in ((16, 1.0), (300, 1.0), (300, 1.7)):
        mean, _ = dl.predicted_mass(n, np.array([r, r]), z_needle, z_dist)
        by_hand = (1 / (1 + (n - 1) * np.exp(r * (0.5 - z_needle)))).mean(1)
        np.testing.assert_allclose(mean, by_hand, rtol=1e-12)


@pytest.fixture(scope="module")
def quick(quick_run):
    _, path = quick_run("dilution")
    return path


def test_vanilla_mass_follows_the_closed_form_at_every_length(quick):
    """Extrapolated from the training length (logits at n0, the strategy's temperature law, the
    mean-of-exp closed form): within 4 combined standard errors (the measured mean's over contexts and
    the prediction's over the needle logits it averages) at every test length, every seed."""
    d = load_frame(quick, "per_seed")
    for strategy in ("vanilla", "log_n", "ssa_q_pos"):
        v = d[d.strategy == strategy]
        tol = 4 * np.sqrt(v.mass_se ** 2 + v.mass_pred_se ** 2)
        assert np.all(np.abs(v.mass - v.mass_pred) <= tol), v[["n", "seed", "mass", "mass_pred", "mass_se"]]


def test_metrics_nest_every_strategy(quick):
    m = read_json(quick / "metrics.json")
    for s in dl.EXPERIMENT.presets["quick"].overrides["strategies"]:
        for key in ("acc_at_max_len", "mass_at_max_len", "acc_at_train_len", "learned", "c_gap"):
            assert key in m["strategies"][s], (s, key)
    assert "c_pos" in m["strategies"]["ssa_q_pos"]["learned"]


def test_vanilla_dilutes_in_the_quick_run(quick):
    """Even barely trained, vanilla attention's needle mass falls from the training to the longest length."""
    t = pd.read_csv(quick / "tables" / "by_length.csv")
    v = t[t.strategy == "vanilla"].sort_values("n")
    assert v.mass.iloc[-1] < v.mass.iloc[0]


def test_bayes_prediction_is_the_flagged_item_without_noise_and_the_posterior_with_it():
    g = torch.Generator().manual_seed(0)
    clean = dl.DilutionConfig()
    needle, classes, noise = dl.draw_items(clean, g, (2, 64), 32)
    x = dl.items(clean, needle, classes, noise)
    target = classes.gather(-1, needle[..., None])[..., 0]
    assert torch.equal(dl.bayes_prediction(clean, x), target)  # noise-free: the Bayes accuracy is 1
    noisy = dl.DilutionConfig(flag_noise=0.3)
    x = dl.items(noisy, *dl.draw_items(noisy, g, (1, 2000), 8))
    post = torch.softmax(x[..., 0] / 0.09, -1)  # the needle's posterior, a softmax at a fixed temperature
    by_hand = (post[..., None] * x[..., 1:1 + noisy.n_classes]).sum(-2).argmax(-1)
    assert torch.equal(dl.bayes_prediction(noisy, x), by_hand)


def test_noise_row_sits_at_or_below_the_bayes_accuracy(quick):
    """The sensitivity row: each strategy retrained with flag noise. No model beats the Bayes accuracy
    (up to the sampling error of n_eval contexts), and the Bayes accuracy falls with n."""
    t = pd.read_csv(quick / "tables" / "flag_noise.csv")
    assert set(t.strategy) == set(dl.EXPERIMENT.presets["quick"].overrides["noise_strategies"])
    n_eval = dl.EXPERIMENT.presets["quick"].overrides["n_eval"]
    assert (t.acc_max <= t.bayes_acc_max + 4 * np.sqrt(0.25 / n_eval)).all()
    assert (t.bayes_acc_max < t.bayes_acc_train).all() and (t.flag_noise == 0.3).all()
    assert {"decay", "decay_pred", "decay_pred_no_spread"} <= set(t.columns)


def test_committed_default_has_twenty_seeds_the_learned_count_and_the_noise_row():
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments" / "dilution"
    assert len(read_json(root / "metrics.json")["seeds"]) >= 20
    s = pd.read_csv(root / "strategies.csv")
    assert {"acc_train", "learned"} <= set(s.columns) and s.learned.str.endswith("/20").all()
    noise = pd.read_csv(root / "flag_noise.csv")
    assert (noise.flag_noise > 0).all() and set(dl.NOISE_STRATEGIES) == set(noise.strategy)


@pytest.mark.slow
def test_default_run_orders_vanilla_below_the_position_term(tmp_path):
    assert cli.main(["run", "dilution", "--quiet", "--out", str(tmp_path)]) == 0
    (path,) = (tmp_path / "dilution").iterdir()
    (claim,) = dl.claims(path)
    assert claim.verdict == "reproduced"
