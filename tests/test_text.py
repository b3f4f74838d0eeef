"""text: the corpus loader, the sliding-window scoring, the n-gram floor against a slow reference, and the
claim rules from both sides. Tests that need the corpus skip where the [text] extra is not installed."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory import lm
from ssa_theory.config import ConfigError
from ssa_theory.experiments import text as tx
from ssa_theory.tasks import text as corpus

try:
    corpus.source_file()
    HAVE_CORPUS = True
except corpus.MissingCorpus:
    HAVE_CORPUS = False
needs_corpus = pytest.mark.skipif(not HAVE_CORPUS, reason=f"the real-text corpus is not installed ({corpus.INSTALL})")


def test_a_missing_corpus_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(corpus.MissingCorpus) as e:
        corpus.source_file()
    assert "\n" not in str(e.value) and corpus.INSTALL in str(e.value) and "[text]" in str(e.value)


def test_cleaning_drops_verse_numbers_and_the_brackets_of_added_words():
    assert corpus.clean("1. In the beginning 2. darkness [was] upon") == "In the beginning darkness was upon"


@needs_corpus
def test_the_corpus_is_the_whole_bible_split_by_books():
    names = corpus.book_names()
    assert len(names) == 66 and names[0] == "Genesis" and names[-1] == "Revelation"
    s = corpus.split(("Judges",), ("Ruth",))
    assert sum(map(len, s.values())) == sum(len(t) for _, t in corpus.books()) + 66 - 3  # joined by newlines
    v = corpus.vocabulary()
    assert "".join(v[i] for i in s["test"][:20]) == dict(corpus.books())["Ruth"][:20]
    assert s["test"].max() < len(v) and not any(c.isdigit() for c in v)  # verse numbers are gone
    with pytest.raises(ConfigError, match="did you mean 'Ruth'"):
        corpus.split((), ("Rut",))
    with pytest.raises(ConfigError, match="both validation and test"):
        corpus.split(("Ruth",), ("Ruth",))


def test_overlap_counts_verbatim_windows_and_survives_hash_collisions():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 5, 500).astype(np.uint8)
    test = np.concatenate([train[100:140], rng.integers(5, 9, 40).astype(np.uint8)])  # 40 copied, 40 new
    windows = len(test) - 8 + 1
    copied = 40 - 8 + 1
    assert corpus.overlap(train, test, width=8) == pytest.approx(copied / windows)


def _ngram_reference(train, test, at, order, vocab):
    """Witten-Bell interpolation written from its definition, with dictionaries."""
    from collections import Counter, defaultdict

    bits = []
    for i in at:
        p = 1.0 / vocab
        for k in range(1, order + 1):
            h = tuple(test[i - k:i])
            counts = Counter(train[j] for j in range(k, len(train)) if tuple(train[j - k:j]) == h)
            total, types = sum(counts.values()), len(counts)
            if total:
                p = (counts[test[i]] + types * p) / (total + types)
        bits.append(-math.log2(p))
    return np.array(bits)


def test_ngram_floor_matches_a_slow_reference():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 4, 300).astype(np.uint8)
    test = np.concatenate([train[:50], rng.integers(0, 4, 50).astype(np.uint8)])
    at = np.arange(5, 100, 7)
    np.testing.assert_allclose(tx.ngram_bits(train, test, at, 3, 4), _ngram_reference(train, test, at, 3, 4),
                               rtol=1e-12)


def test_sliding_window_scores_each_character_from_its_own_context():
    """token_losses against a single model run on each window by hand."""
    vocab = 7
    shape = lm.LMShape(vocab=vocab, d_model=16, n_heads=2, d_mlp=32, conv=2)
    net = lm.Ensemble(shape, [3])
    test = np.random.default_rng(2).integers(0, vocab, 200).astype(np.uint8)
    last = np.array([60, 90, 150])
    got = tx.token_losses(net, test, 40, last, 5, torch.device("cpu"), chunk=2)
    single = lm.member(shape, 3)
    want = []
    t = torch.as_tensor(test.astype(np.int64))
    for e in last:
        logits = single(t[e - 40:e][None])[0, -5:]
        want.append(torch.nn.functional.cross_entropy(logits, t[e - 4:e + 1], reduction="none"))
    torch.testing.assert_close(got[0], torch.cat(want).detach(), rtol=1e-5, atol=1e-6)


def _metrics(tmp_path, van, ssa, glob, twin=None, grow=None):
    """Per-seed bits per character at L and at 16L, (seeds, 2) each."""
    models = {"nope:vanilla": van, "nope:ssa": ssa, "nope:global": glob}
    if twin is not None:
        models["nope:placebo"] = twin
    if grow is not None:
        models["nope:log_n"] = grow
    m = {"arms": ["nope"], "train_length": 128, "mults": [1, 16],
         "models": {k: {"bits": np.asarray(v).tolist()} for k, v in models.items()}}
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(m))
    return d


def _bits(at_l, rise):
    return np.stack([np.asarray(at_l, dtype=float), np.asarray(at_l, dtype=float) + np.asarray(rise, dtype=float)], 1)


def test_c10_and_c11_rules_from_both_sides(tmp_path):
    van = _bits([2.30, 2.32, 2.31, 2.29, 2.30], [0.8, 0.9, 0.85, 0.8, 0.9])
    ssa = _bits([2.25, 2.26, 2.27, 2.24, 2.25], [0.8, 0.9, 0.85, 0.8, 0.9])  # 0.05 lower at L
    glob = _bits([2.26, 2.25, 2.27, 2.25, 2.24], [0.8, 0.9, 0.85, 0.8, 0.9])
    grow = _bits([2.30, 2.32, 2.31, 2.29, 2.30], [0.1, 0.2, 0.15, 0.1, 0.1])  # barely rises
    claims = {c.id: c for c in tx.claims(_metrics(tmp_path, van, ssa, glob, grow=grow))}
    assert claims["C10 (nope)"].verdict == "reproduced"
    assert claims["C10.global (nope)"].verdict == "not reproduced"  # a global temperature does as well
    assert claims["C11 (nope, log_n)"].verdict == "reproduced"
    flat = _bits([2.30, 2.32, 2.31, 2.29, 2.30], [0.01, 0.0, 0.02, 0.01, 0.0])  # vanilla does not degrade
    claims = {c.id: c for c in tx.claims(_metrics(tmp_path, flat, ssa, glob, grow=grow))}
    assert claims["C11 (nope, log_n)"].verdict.startswith("not testable: vanilla's loss rises")
    worse = _bits([2.40, 2.41, 2.42, 2.40, 2.43], [0.8, 0.9, 0.85, 0.8, 0.9])
    claims = {c.id: c for c in tx.claims(_metrics(tmp_path, van, worse, glob))}
    assert claims["C10 (nope)"].verdict == "not reproduced: clearly higher"


def test_the_twin_calibrates_c10_and_reads_as_its_placebo(tmp_path):
    van = _bits([2.30, 2.32, 2.31, 2.29, 2.30], [0.8] * 5)
    ssa = _bits([2.25, 2.26, 2.27, 2.24, 2.25], [0.8] * 5)
    twin = _bits([2.301, 2.318, 2.312, 2.291, 2.299], [0.8] * 5)
    c = {c.id: c for c in tx.claims(_metrics(tmp_path, van, ssa, ssa, twin=twin))}["C10 (nope)"]
    assert c.verdict == "reproduced" and c.placebo == "not reproduced" and "power 100%" in c.calibration
    wide = _bits([2.50, 2.10, 2.45, 2.12, 2.40], [0.8] * 5)
    c = {c.id: c for c in tx.claims(_metrics(tmp_path, van, _bits([2.29, 2.31, 2.30, 2.28, 2.30], [0.8] * 5),
                                             ssa, twin=wide))}["C10 (nope)"]
    assert c.verdict.startswith("not testable (power ")


def test_config_refuses_impossible_settings():
    with pytest.raises(ConfigError, match="eval_mults"):
        tx.TextConfig(eval_mults=(2, 4))
    with pytest.raises(ConfigError, match="multiple of stride"):
        tx.TextConfig(n_scored=100)
    with pytest.raises(ConfigError, match="arms"):
        tx.TextConfig(arms=("alibi",))


@needs_corpus
def test_quick_run_writes_bits_by_length_and_the_claims(quick_run, tmp_path):
    _, path = quick_run("text")
    t = pd.read_csv(path / "tables" / "bits.csv")
    assert set(t.arm) == {"nope", "rope"} and (t.bits > 0).all() and (t.bits_lo <= t.bits).all()
    m = json.loads((path / "metrics.json").read_text())
    assert m["ngram_bits"] > 0 and 0 <= m["test_overlap_32"] <= 1
    claims = tx.claims(path)
    assert {c.id for c in claims} >= {"C10 (nope)", "C10 (rope)", "C10.ft (nope)", "C10.ft.global (rope)"}
    assert all(c.verdict for c in claims)
    assert all(c.scrambled for c in claims if c.id.startswith("C10 (") or c.id.startswith("C11 (") and "ssa)" in c.id)
    assert set(t.strategy) >= {tx.PLACEBO, tx.SSA_SCRAMBLED}  # both twins, in both arms
    spread = pd.read_csv(path / "tables" / "tau_spread.csv")  # tau's spread across tokens, SSA's models only
    assert set(spread.strategy) == {"ssa", tx.SSA_SCRAMBLED} and set(spread.side) == {"q", "v"}
    assert (spread.tau_cv_lo >= 0).all() and (spread.tau_cv > 0).all()
    assert all(c.spread.startswith("CV of tau across tokens") for c in claims if c.id.startswith("C10 ("))
    ft = pd.read_csv(path / "tables" / "finetune.csv")
    for arm in ("nope", "rope"):  # the protocol's pretraining is the arm's own vanilla model, to the last digit
        at_l = t[(t.arm == arm) & (t.strategy == "vanilla") & (t.mult == 1)].bits.item()
        assert np.allclose(ft[ft.arm == arm].bits_before, at_l, rtol=1e-6)
        assert (ft[(ft.arm == arm) & ft.way.isin(["vanilla", tx.PLACEBO])].moved_max == 0).all()  # nothing added
        assert (ft[(ft.arm == arm) & ft.way.isin(["global", "ssa"])].moved_max > 0).all()  # the added ones train


def test_run_and_reproduce_name_the_missing_extra_in_one_line(monkeypatch, capsys, tmp_path):
    from ssa_theory import cli

    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["run", "text", "--quick", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and corpus.INSTALL in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing half-written
    assert cli.main(["reproduce", "--only", "text", "--quick", "--out", str(tmp_path / "runs")]) == 2
    assert corpus.INSTALL in capsys.readouterr().err


def test_c10_in_the_fine_tuning_protocol_from_both_sides(tmp_path):
    base = {"arms": ["nope"], "train_length": 128, "mults": [1, 16], "models": {}}
    def write(ssa, van, glob, twin):
        ft = {"steps": 120, "lr": 1e-3, "alpha": -7.0, "bits_before": [2.5] * 5,
              **{k: {"bits": list(v), "moved": [0.1] * 5} for k, v in
                 (("vanilla", van), ("global", glob), ("ssa", ssa), (tx.PLACEBO, twin))}}
        d = tmp_path / "ft"
        d.mkdir(exist_ok=True)
        (d / "metrics.json").write_text(json.dumps({**base, "finetune": {"nope": ft}}))
        return {c.id: c for c in tx.claims(d)}
    van = [2.40, 2.41, 2.42, 2.40, 2.41]
    twin = [2.401, 2.409, 2.421, 2.399, 2.411]  # another data stream: a little noise
    c = write([2.37, 2.38, 2.385, 2.37, 2.38], van, van, twin)
    assert c["C10.ft (nope)"].verdict == "reproduced" and c["C10.ft (nope)"].placebo == "not reproduced"
    assert c["C10.ft.global (nope)"].verdict == "reproduced"
    c = write([2.37, 2.38, 2.385, 2.37, 2.38], van, [2.37, 2.38, 2.384, 2.371, 2.38], twin)
    assert c["C10.ft.global (nope)"].verdict == "not reproduced"  # a global temperature added does as well
