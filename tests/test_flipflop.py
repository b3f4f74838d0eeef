"""flipflop: reads return the last written bit, the glitch rate counts read errors only, intervals stay
in [0, 1], and the claim rule is tested from both sides; the bounded intervals of the LM experiments."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory import cli
from ssa_theory.experiments import flipflop as ff
from ssa_theory.stats import bootstrap_ci, ratio_ci


def test_a_read_returns_the_last_written_bit():
    tokens, reads = ff.sequences(torch.Generator().manual_seed(0), 40, 30, 0.5)
    assert tokens.shape == (40, 60) and reads.shape == (40, 59)
    for t, r in zip(tokens, reads):
        assert t[0] == ff.W
        last = None
        for j in range(30):
            instr, bit = int(t[2 * j]), int(t[2 * j + 1]) - ff.BIT0
            assert instr in (ff.W, ff.R, ff.I) and bit in (0, 1)
            if instr == ff.W:
                last = bit
            if instr == ff.R:
                assert bit == last
            assert bool(r[2 * j]) == (instr == ff.R)  # the r position predicts the read bit
        assert not r[1::2].any()
    sparse, _ = ff.sequences(torch.Generator().manual_seed(1), 200, 50, 0.98)
    assert (sparse[:, 2::2] == ff.I).float().mean() > 0.95


def test_quick_run_glitch_rates_are_rates_and_the_claim_has_a_verdict(tmp_path):
    assert cli.main(["run", "flipflop", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    (path,) = (tmp_path / "flipflop").iterdir()
    t = pd.read_csv(path / "tables" / "glitches.csv")
    for name in ("in_distribution", "sparse", "dense", "long_64"):
        assert t[name].between(0, 1).all() and (t[f"{name}_lo"].fillna(0) >= 0).all() and (t[f"{name}_hi"].fillna(1) <= 1).all()
    assert (t.read_entropy >= 0).all()
    (claim,) = ff.claims(path)
    assert claim.id == "C9" and claim.verdict


def _metrics(tmp_path, van, ssa):
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "metrics.json").write_text(json.dumps({"strategies": {"vanilla": {"glitch": {"sparse": van}},
                                                               "ssa": {"glitch": {"sparse": ssa}}}}))
    return d


@pytest.mark.parametrize("van,ssa,verdict", [
    ([0.2, 0.3, 0.25], [0.05, 0.1, 0.08], "reproduced"),
    ([0.2, 0.3, 0.25], [0.15, 0.25, 0.3], "not reproduced"),  # lower on average but not on every seed, nor half
    ([0.005, 0.002, 0.0], [0.0, 0.001, 0.0], "no difference: both below 1% glitches"),
])
def test_glitch_rule_from_both_sides(tmp_path, van, ssa, verdict):
    (claim,) = ff.claims(_metrics(tmp_path, van, ssa))
    assert claim.verdict == verdict


def test_bootstrap_interval_stays_in_the_range_of_the_values():
    m, lo, hi = bootstrap_ci([0.0, 1.0, 1.0])  # a bimodal accuracy: a t-interval would leave [0, 1]
    assert 0.0 <= lo <= m <= hi <= 1.0
    assert bootstrap_ci([1.0, 1.0, 1.0])[1:] == (1.0, 1.0)
    assert np.isnan(bootstrap_ci([0.5])[1])
    g, glo, ghi = ratio_ci([0.5, 0.6, 0.55, np.nan])
    assert 0 < glo < g < ghi and np.isclose(g, (0.5 * 0.6 * 0.55) ** (1 / 3))
