"""The command line: listing, errors (one line, exit 2, nothing written), run directories, export."""

import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssa_theory import cli, registry, rundir


def run_cli(*args):
    return cli.main([str(a) for a in args])


def test_list_shows_every_experiment(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    for name in registry.names():
        assert name in out
    assert "Table 1" in out


def test_help_has_worked_examples(capsys):
    with pytest.raises(SystemExit) as e:
        run_cli("run", "--help")
    assert e.value.code == 0
    assert "ssa-theory run graph_transition --quick" in capsys.readouterr().out


def test_config_shows_types_and_preset(capsys):
    assert run_cli("config", "graph_transition", "--quick", "--set", "n_nodes=20") == 0
    out = capsys.readouterr().out
    assert "n_nodes = 20    (int: >= 3; > max_degree)" in out and "steps = 300" in out


BAD = {
    "unknown experiment": (["run", "graph_transitoin"], "did you mean graph_transition"),
    "unknown key": (["run", "graph_transition", "--set", "n_node=3"], "valid keys: n_nodes"),
    "ill-typed int": (["run", "graph_transition", "--set", "n_nodes=abc"], "n_nodes must be an integer"),
    "ill-typed float": (["run", "graph_transition", "--set", "lr=fast"], "lr must be a number"),
    "degree above vocabulary": (["run", "graph_transition", "--set", "max_degree=20"], "max_degree=20 must be < n_nodes=16"),
    "negative size": (["run", "graph_transition", "--set", "n_nodes=-4"], "n_nodes must be >= 3"),
    "zero seeds": (["run", "graph_transition", "--seeds", "0"], "--seeds: must be an integer in [1, 1024] (got 0)"),
    "non-integer seeds": (["run", "graph_transition", "--seeds", "two"], "--seeds: must be an integer in [1, 1024]"),
    "unknown geometry": (["run", "graph_transition", "--set", "compare=rownorm,cosin"], "did you mean 'cosine'"),
    "bad set syntax": (["run", "graph_transition", "--set", "steps"], "--set takes key=value"),
    "unknown preset": (["run", "graph_transition", "--preset", "paper"], "no preset 'paper'"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "missing name": (["run"], "required: NAME"),
    "infinite float": (["run", "graph_transition", "--set", "lr=inf"], "lr=inf is out of range"),
    "nan float": (["run", "graph_transition", "--set", "lr=nan"], "lr=nan is out of range"),
    "overflowing float": (["run", "graph_transition", "--set", "lr=1e308"], "lr=1e+308 is out of range"),
    "huge int": (["run", "graph_transition", "--set", "steps=99999999999999999999"], "steps=99999999999999999999 is out of range"),
    "negative seed": (["run", "graph_transition", "--seed", "-1"], "--seed: must be an integer in [0, 4294967295]"),
    "seed past the range": (["run", "graph_transition", "--seed", "4294967295", "--seeds", "2"], "runs past the largest seed"),
    "too many seeds": (["run", "graph_transition", "--seeds", "100000"], "--seeds: must be an integer in [1, 1024]"),
    "zero threads": (["run", "graph_transition", "--threads", "0"], "--threads: must be an integer in [1, 256]"),
    "reproduce unknown experiment": (["reproduce", "--only", "denoisin"], "did you mean denoising"),
    "bench unknown variant": (["bench", "attention", "--variants", "ssa_qq"], "did you mean 'ssa_q'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    args, expected = BAD[case]
    out = tmp_path / "runs"
    rc = run_cli(*args, "--out", out) if args and args[0] in ("run", "reproduce") and len(args) > 1 else run_cli(*args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("ssa-theory: error: "), err
    assert expected in err, err
    assert not out.exists()


def test_unwritable_out_is_refused_and_nothing_is_left(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert run_cli("run", "graph_transition", "--quick", "--out", blocker / "runs") == 2
    err = capsys.readouterr().err
    assert "cannot write run directories" in err and "--out" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    assert run_cli("run", "graph_transition", "--quick", "--device", "cuda", "--out", tmp_path / "r") == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_errors_carry_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ssa_theory", "run", "graph_transition", "--set", "max_degree=99",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


# --- never a traceback ---------------------------------------------------------------------------


class _Reached(Exception):
    """Raised instead of running: validation accepted the input."""


_KEYS = ["lr", "steps", "n_nodes", "max_degree", "smoothing", "compare", "score", "softcap_bound", "d_head",
         "temp_penalty", "log_every", "batch_size", "nonsense", ""]
_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["inf", "-inf", "nan", "1e308", "-1e308", "1e-320", "0", "-0", "1e3", "99999999999999999999",
                     "true", "0x10", "1_000", " 3 ", "", ",", "softcap,dot", "1,2,3"]),
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(_KEYS), _TEXT), max_size=3),
       seed=st.one_of(st.none(), _TEXT), seeds=st.one_of(st.none(), _TEXT), threads=st.one_of(st.none(), _TEXT))
def test_fuzzed_input_never_shows_a_traceback(pairs, seed, seeds, threads, tmp_path_factory):
    """Random --set strings and option values: a one-line usage error (exit 2), or validation passes
    and the run would start (stubbed out here). Never an uncaught exception."""
    args = ["run", "graph_transition", "--quiet", "--out", str(tmp_path_factory.getbasetemp() / "fuzz")]
    for k, v in pairs:
        args += ["--set", f"{k}={v}"]
    for opt, v in (("--seed", seed), ("--seeds", seeds), ("--threads", threads)):
        if v is not None:
            args += [f"{opt}={v}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rundir, "execute", _stub)
        try:
            rc = cli.main(args)
        except _Reached:
            return
    assert rc == 2


def _stub(*args, **kwargs):
    """Stands in for rundir.execute: validation was passed, the run would start."""
    raise _Reached


def test_fuzz_stub_is_reached_by_valid_input(monkeypatch):
    monkeypatch.setattr(rundir, "execute", _stub)
    with pytest.raises(_Reached):
        cli.main(["run", "graph_transition", "--quick", "--quiet", "--set", "lr=0.1", "--seed", "5"])


# --- divergence, stale partial directories ------------------------------------------------------


@pytest.mark.parametrize("name", ["graph_transition", "denoising"])
def test_diverged_run_is_one_line_exit_1_and_saves_nothing(name, tmp_path, capsys):
    rc = cli.main(["run", name, "--quick", "--quiet", "--set", "lr=1e3", "--set", "steps=120", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.count("\n") == 1 and f"error: {name}: model " in err and "member" in err and "seed 0" in err, err
    assert "diverged at step" in err and "nothing was saved" in err
    assert list((tmp_path / name).iterdir()) == []


def test_fit_names_the_member_and_step_of_a_nan_loss():
    from ssa_theory.train import Diverged, fit

    w = torch.nn.Parameter(torch.zeros(3, 2))

    def loss(step):  # member 1 turns NaN at its 7th step (step index 6)
        bad = torch.tensor([0.0, float("nan") if step >= 6 else 0.0, 0.0])
        return (w - 1).pow(2).sum(1) + bad

    with pytest.raises(Diverged) as e:
        fit([w], loss, steps=100, lr=0.1, members=["seed 0", "seed 1", "seed 2"], model="toy")
    assert (e.value.member, e.value.step) == ("seed 1", 7)
    assert "model toy, member seed 1 diverged at step 7 (loss non-finite" in str(e.value)


def test_fit_catches_parameters_that_explode_without_a_bad_loss():
    from ssa_theory.train import PARAM_BOUND, Diverged, fit

    w = torch.nn.Parameter(torch.zeros(2, 1))
    with pytest.raises(Diverged, match="member #1 diverged .* parameter"):
        # member 1's loss is bounded (tanh) but rewards an ever larger weight
        fit([w], lambda step: torch.stack([(w[0, 0] - 1) ** 2, -torch.tanh(w[1, 0] / 1e6)]), steps=200, lr=1e3)
    assert abs(float(w.detach()[1, 0])) > PARAM_BOUND


def test_fit_leaves_a_healthy_run_alone():
    from ssa_theory.train import fit

    w = torch.nn.Parameter(torch.zeros(2, 1))
    hist = fit([w], lambda step: (w - 3).pow(2).sum(1), steps=200, lr=0.1, evaluate=lambda: {"w": w[:, 0]}, log_every=50)
    assert list(hist["step"]) == [0, 50, 100, 150, 200]
    np.testing.assert_allclose(hist["w"][-1], [3.0, 3.0], atol=1e-2)


def test_denoising_with_large_losses_by_construction_trains(tmp_path, capsys):
    """At sigma_noisy=3000 the step-0 loss is about 9e6: the bound is relative to it, so the run trains
    (an absolute bound of 1e6 stopped it at step 1)."""
    rc = cli.main(["run", "denoising", "--quick", "--quiet", "--seeds", "1", "--set", "sigma_noisy=3000",
                   "--set", "steps=60", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err


def test_fit_bound_is_relative_to_each_members_first_loss():
    from ssa_theory.train import LOSS_GROWTH, Diverged, fit

    w = torch.nn.Parameter(torch.zeros(2, 1))
    scale = torch.tensor([1e8, 1.0])  # member 0's loss is huge from the start, and stays so: healthy
    fit([w], lambda step: scale * (1 + (w[:, 0] - 1) ** 2), steps=20, lr=0.1)
    grow = lambda step: scale * (1 + (step >= 5) * LOSS_GROWTH * 2 * torch.ones(2)) + 0 * w[:, 0]  # noqa: E731
    with pytest.raises(Diverged, match=r"member #0 diverged at step 6 \(loss non-finite or above 1e\+06x its first"):
        fit([w], grow, steps=20, lr=0.1)


# --- every registered experiment runs in quick mode -----------------------------------------------


# Each experiment's quick-run tests in the process that makes the run (``xdist_group`` "quick:NAME", as
# the experiment's own test module uses): in another, a test would wait on the run's lock, its core idle.
@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.xdist_group(f"quick:{n}")) for n in registry.names()])
def quick(request, quick_run):
    out, path = quick_run(request.param)
    return request.param, out, path


def test_quick_run_writes_a_complete_run_directory(quick):
    name, _, path = quick
    for f in ("config.json", "env.json", "metrics.json", "done"):
        assert (path / f).is_file(), f
    config = json.loads((path / "config.json").read_text())
    assert config["experiment"] == name and config["preset"] == "quick" and config["run_hash"] == path.name
    assert config["threads"] == 1
    env = json.loads((path / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["torch_threads"] == 1
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["deterministic_algorithms"] is False and env["core_version"] == config["core"]
    tables = list((path / "tables").iterdir())
    assert path / "tables" / f"{registry.get(name).headline}.md" in tables
    assert {p.stem for p in tables if p.suffix == ".csv"} == {p.stem for p in tables if p.suffix == ".md"}
    figures = list((path / "figures").iterdir())
    assert figures and {p.stem for p in figures if p.suffix == ".png"} == {p.stem for p in figures if p.suffix == ".pdf"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "a partial directory was left behind"


def test_every_claim_of_a_quick_run_has_its_placebo_verdict(quick, tmp_path):
    """Each claim's rule is read on its placebo in the same run (the quick presets train the twins too),
    from the run exported as ``reproduce`` exports it."""
    from ssa_theory.reproduce import export_run

    name, _, path = quick
    exp = registry.get(name)
    if exp.claims is None:
        pytest.skip(f"{name} states no claim")
    exported, _ = export_run(path, name, tmp_path)
    claims = exp.claims(exported)
    assert claims and all(c.verdict and c.placebo for c in claims), [(c.id, c.verdict, c.placebo) for c in claims]


def test_finished_run_is_reused(quick, capsys):
    name, out, path = quick
    stamp = (path / "done").stat().st_mtime_ns
    assert cli.main(["run", name, "--quick", "--quiet", "--out", str(out)]) == 0
    assert "reused a finished run" in capsys.readouterr().out
    assert (path / "done").stat().st_mtime_ns == stamp


def test_force_recomputes_a_finished_run(toy, tmp_path, capsys):
    args = ["run", "toy", "--quiet", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    (path,) = (tmp_path / "toy").iterdir()
    (path / "done").write_text("stamp")  # a completed run carries an empty marker: this one is ours
    before = (path / "metrics.json").read_text()
    capsys.readouterr()
    assert cli.main([*args, "--force"]) == 0
    assert "reused" not in capsys.readouterr().out
    assert (path / "done").read_text() == ""  # rewritten by the forced run
    assert (path / "metrics.json").read_text() == before  # same seed, same numbers
    assert [p.name for p in (tmp_path / "toy").iterdir()] == [path.name]  # the old run is gone


def test_incomplete_run_is_recomputed(toy, tmp_path, capsys):
    args = ["run", "toy", "--quiet", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    (path,) = (tmp_path / "toy").iterdir()
    (path / "done").unlink()
    (path / "metrics.json").write_text("half-written")
    assert cli.main(args) == 0
    assert "reused" not in capsys.readouterr().out
    assert json.loads((path / "metrics.json").read_text())["per_seed"]["value"]


def test_interrupted_run_leaves_nothing(toy, tmp_path, monkeypatch, capsys):
    def boom(config, ctx):
        (ctx.path / "tables").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setitem(registry._REGISTRY, "toy", dataclasses.replace(toy, run=boom))
    rc = cli.main(["run", "toy", "--quiet", "--out", str(tmp_path)])
    assert rc == 130
    assert list((tmp_path / "toy").iterdir()) == []


def test_same_seed_same_metrics_and_threads_enter_the_hash(toy, tmp_path):
    args = ["run", "toy", "--quiet", "--seed", "3"]
    for d in ("a", "b"):
        assert cli.main([*args, "--out", str(tmp_path / d)]) == 0
    assert cli.main([*args, "--threads", "2", "--out", str(tmp_path / "c")]) == 0
    (a,), (b,), (c,) = ((tmp_path / d / "toy").iterdir() for d in ("a", "b", "c"))
    assert a.name == b.name != c.name
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()


def test_export_copies_tables_and_figures(toy, tmp_path):
    args = ["export", "toy", "--quiet", "--out", str(tmp_path / "runs"), "--to", str(tmp_path)]
    assert cli.main(args) == 0
    assert (tmp_path / "experiments" / "toy" / "summary.md").is_file()
    assert (tmp_path / "experiments" / "toy" / "metrics.json").is_file()
    assert (tmp_path / "figures" / "toy" / "values.png").is_file()


def test_an_experiment_outside_the_package_runs_by_reference(tmp_path, capsys):
    from ssa_theory.testing import toy as toy_module

    assert cli.main(["run", toy_module.REF, "--quiet", "--out", str(tmp_path)]) == 0
    assert "| mean |" in capsys.readouterr().out
    assert len(list((tmp_path / "toy").iterdir())) == 1
    assert "toy" not in registry.names()  # imported, not registered


# --- benchmarks -----------------------------------------------------------------------------------


def test_bench_attention_covers_every_variant(capsys):
    from ssa_theory.attention import VARIANTS

    assert cli.main(["bench", "attention", "--batch", "1", "--heads", "2", "--length", "16", "--d-head", "4",
                     "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ")[0].strip("| ") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == list(VARIANTS)
    assert rows[0] == "variant" and "| ratio |" in out


def test_bench_attention_ratio_compares_like_with_like():
    """At the neutral init every variant computes vanilla attention; the reference layer is causal SDPA.
    Both must give the same kind of output for the timing to mean anything."""
    from ssa_theory import bench
    from ssa_theory.attention import Attention

    D, H = 8, 2
    ref, (w_q, w_k, w_v, w_o) = bench.reference_layer(D, H, torch.device("cpu"))
    layer = Attention("vanilla", D, generators=[torch.Generator()], n_heads=H)
    with torch.no_grad():
        for mine, theirs in ((layer.w_q, w_q), (layer.w_k, w_k), (layer.w_v, w_v), (layer.w_o, w_o)):
            mine[0].copy_(theirs)
    x = torch.randn(3, 5, D, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(layer(x[None], causal=True)[0], ref(x))


def test_bench_module_reports_ratios_and_parameter_counts(capsys):
    assert cli.main(["bench", "module", "--batch", "1", "--heads", "2", "--length", "16", "--d-head", "4",
                     "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| vanilla |" in out and "| ssa |" in out and "| ratio |" in out
    assert "| variant | new_parameters | layer_parameters | share_percent |" in out
    assert "flash kernel on the plain causal path: " in out


def test_bench_seeds_reports_the_ratio(capsys):
    assert cli.main(["bench", "seeds", "graph_transition", "--quick", "--set", "steps=5", "--set", "compare=",
                     "--seeds", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "ratio 2 seeds / 1 seed:" in out and "| graph_transition | 2 |" in out


@pytest.mark.cuda
@pytest.mark.parametrize("name", registry.names())
def test_quick_run_on_cuda(name, tmp_path):
    """Every experiment end to end on the GPU: the run completes and its numbers are finite."""
    assert cli.main(["run", name, "--quick", "--quiet", "--device", "cuda", "--out", str(tmp_path)]) == 0
    (path,) = (tmp_path / name).iterdir()
    assert json.loads((path / "env.json").read_text())["device"].startswith("cuda")
    metrics = (path / "metrics.json").read_text()
    assert "NaN" not in metrics and "Infinity" not in metrics


# --- every verb fuzzed: a one-line usage error (exit 2, nothing written) or validation passes ------


_VALUE = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["inf", "nan", "-1", "0", "1", "2", "auto", "99999999999999", "1e3", "nope", "quick", "default",
                     "graph_transition", "denoisin", "ssa", "ssa_qq", "local", "dask", "tcp://x:1", "smoothing=0.1",
                     "smoothing=0.1,2", "nope=1", "smoothing", "runs/x", "ssa_theory.testing.toy:EXPERIMENT",
                     "ssa_theory.nope:X", "os:path"]),
    st.integers(-10**12, 10**12).map(str),
)
VERB_OPTIONS = {
    "reproduce": ["--preset", "--only", "--seed", "--threads", "--jobs", "--executor", "--address", "--device"],
    "sweep": ["--preset", "--grid", "--seeds", "--seed", "--threads", "--workers", "--executor", "--address",
              "--device", "--set"],
    "export": ["--preset", "--set", "--seeds", "--seed", "--threads", "--device"],
    "bench attention": ["--batch", "--heads", "--length", "--d-head", "--variants", "--repeats", "--threads"],
    "bench module": ["--batch", "--heads", "--length", "--d-head", "--variants", "--repeats", "--threads"],
    "bench seeds": ["--preset", "--set", "--seeds", "--seed", "--repeats", "--threads"],
    "collect": [],
}
VERB_FLAGS = {"reproduce": ["--quick", "--check", "--force"], "sweep": ["--quick"], "export": ["--quick", "--force"],
              "bench attention": [], "bench module": [], "bench seeds": ["--quick"], "collect": []}
NEEDS_NAME = {"sweep", "export", "bench seeds"}


def _stubbed(mp):
    from ssa_theory import bench, reproduce, sweep

    for module, attr in ((rundir, "execute"), (reproduce, "reproduce"), (sweep, "run_sweep"), (sweep, "collect"),
                         (bench, "attention"), (bench, "module"), (bench, "seeds")):
        mp.setattr(module, attr, _stub)


@settings(max_examples=250, deadline=None)
@given(verb=st.sampled_from(sorted(VERB_OPTIONS)), data=st.data())
def test_every_verb_fuzzed_never_shows_a_traceback(verb, data, tmp_path_factory):
    """Random options and values for reproduce, sweep, collect, export and bench: a one-line usage error
    with exit code 2 and nothing written, or validation passes and the work would start (stubbed)."""
    out = tmp_path_factory.getbasetemp() / "fuzz-verbs" / f"out-{next(_EXAMPLE)}"  # fresh for every example
    args = verb.split()
    if verb in NEEDS_NAME or (verb == "collect"):
        args.append(data.draw(st.one_of(_VALUE, st.sampled_from(["graph_transition", "toy", str(out / "sweeps/x")]))))
    for opt in data.draw(st.lists(st.sampled_from(VERB_OPTIONS[verb]), max_size=4)) if VERB_OPTIONS[verb] else []:
        args += [opt, data.draw(_VALUE)]
    args += data.draw(st.lists(st.sampled_from(VERB_FLAGS[verb]), max_size=2, unique=True)) if VERB_FLAGS[verb] else []
    if verb in ("reproduce", "sweep", "export"):
        args += ["--out", str(out), "--quiet"] if verb != "sweep" else ["--out", str(out)]
    if verb in ("reproduce", "export"):
        args += ["--to", str(out / "to")]
    with pytest.MonkeyPatch.context() as mp:
        _stubbed(mp)
        try:
            rc = cli.main(args)
        except _Reached:
            return
    assert rc == 2, args
    assert not out.exists(), args


_EXAMPLE = itertools.count()


def test_verb_fuzz_reaches_every_verbs_work(monkeypatch, tmp_path):
    """Valid input of each verb gets past validation to the (stubbed) work: the fuzz test can tell."""
    _stubbed(monkeypatch)
    for args in (["reproduce", "--quick", "--jobs", "2"], ["sweep", "graph_transition", "--grid", "steps=3"],
                 ["export", "graph_transition", "--quick", "--to", str(tmp_path)],
                 ["bench", "attention", "--length", "8"], ["bench", "module", "--length", "8"],
                 ["bench", "seeds", "graph_transition"],
                 ["collect", str(tmp_path)]):
        with pytest.raises(_Reached):
            cli.main([*args, "--out", str(tmp_path / "o")] if args[0] in ("reproduce", "sweep", "export") else args)


@pytest.mark.parametrize("args,expected", [
    (["reproduce", "--preset", "nope"], "no preset 'nope' in"),
    (["reproduce", "--jobs", "0"], "--jobs: must be an integer in [1, 256]"),
    (["reproduce", "--jobs", "many"], "--jobs: must be an integer in [1, 256]"),
    (["reproduce", "--only", "ssa_theory.nope:X"], "cannot import 'ssa_theory.nope'"),
    (["reproduce", "--only", "os:path"], "not an ssa_theory.registry.Experiment"),
    (["reproduce", "--address", "tcp://x:1"], "--address is for --executor dask"),
    (["reproduce", "--quick", "--check"], "--check compares with the committed results"),
    (["sweep", "graph_transition", "--grid", "steps=3", "--address", "tcp://x:1"], "--address is for --executor dask"),
    (["collect", "/nonexistent/sweep"], "is not a sweep directory"),
])
def test_bad_input_of_other_verbs_is_one_line_exit_2(args, expected, tmp_path, capsys):
    out = tmp_path / "o"
    if args[0] in ("reproduce", "sweep"):
        args = [*args, "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not out.exists()


def test_config_shows_every_key_s_meaning_written_once_at_its_field(capsys):
    """Every key of every registered experiment has a meaning (its field's comment, or the training fields'
    shared one); ``config`` prints it beside the value."""
    import dataclasses

    from ssa_theory import registry
    from ssa_theory.config import field_notes

    for name in registry.names():
        config = registry.get(name).config
        notes = field_notes(config)
        missing = [f.name for f in dataclasses.fields(config) if not notes.get(f.name)]
        assert not missing, f"{name}: keys without a meaning: {missing}"
    assert cli.main(["config", "graph_transition"]) == 0
    out = capsys.readouterr().out
    assert "smoothing = 0.05    (float: in [0, 1))  # g in P* = (1 - g) D^-1 A + g / K" in out
    assert "lr = 0.03    (float: > 0)  # Adam's learning rate" in out
    assert "score = 'softcap'    (str: one of " in out and "d_head = 0    (int: >= 0; 0: n_nodes)" in out


def _configs():
    """Every config class the CLI builds: each registered experiment's, and the ablation's cell."""
    from ssa_theory import registry
    from ssa_theory.experiments.ablation import CellConfig

    return [(name, registry.get(name).config) for name in registry.names()] + [("ablation cell", CellConfig)]


def test_every_key_that_refuses_a_value_declares_its_allowed_values():
    """A number (or tuple of numbers) field that states no ``Bound`` ("any integer", "any number") must
    accept what that says: -1, 0 and 0.5 where a float; a field whose config refuses one of them declares
    its range, so that ``config`` never shows a range wider than the one enforced."""
    import dataclasses
    import typing

    from ssa_theory.config import ConfigError, allowed, field_types

    undeclared = []
    for name, cls in _configs():
        types = field_types(cls)
        for f in dataclasses.fields(cls):
            if not allowed(cls, f.name).startswith("any"):
                continue
            typ = types[f.name]
            item = typing.get_args(typ)[0] if typing.get_origin(typ) is tuple else typ
            if item not in (int, float) or item is bool:
                continue
            for x in ((-1, 0) if item is int else (-1.0, 0.0, 0.5)):
                value = (x,) if typing.get_origin(typ) is tuple else x
                try:
                    cls(**{f.name: value})
                except ConfigError as e:
                    undeclared.append(f"{name}.{f.name}={value!r}: {e}")
    assert not undeclared, undeclared


def test_every_declared_bound_refuses_a_value_just_outside_it_in_one_line():
    """Each declared lower or upper bound, crossed by one step (or met where it is strict), is refused with
    a ``ConfigError`` that names the key: the check and what ``config`` shows come from one declaration."""
    import dataclasses

    from ssa_theory.config import ConfigError, bound_of

    crossed = 0
    for name, cls in _configs():
        for f in dataclasses.fields(cls):
            b = bound_of(cls, f)
            if b is None or b.choices:
                continue
            default = getattr(cls(), f.name)
            is_tuple = isinstance(default, tuple)
            step = 1 if isinstance(default[0] if is_tuple and default else default, int) else 1e-3
            outside = [v for v in (None if b.ge is None else b.ge - step, b.gt, None if b.le is None else b.le + step, b.lt)
                       if v is not None]
            for v in outside:
                with pytest.raises(ConfigError, match=f"^{f.name} must"):
                    cls(**{f.name: (v,) if is_tuple else v})
                crossed += 1
    assert crossed >= 60


def test_a_text_key_with_choices_refuses_another_with_a_suggestion():
    from ssa_theory.config import ConfigError
    from ssa_theory.experiments.graph_transition import GraphTransitionConfig
    from ssa_theory.experiments.text import TextConfig

    with pytest.raises(ConfigError, match=r"score='softcaps' is not allowed; did you mean 'softcap'\?"):
        GraphTransitionConfig(score="softcaps")
    with pytest.raises(ConfigError, match="arms='ropes' is not allowed"):
        TextConfig(arms=("nope", "ropes"))
    with pytest.raises(ConfigError, match="arms must hold at least one value"):
        TextConfig(arms=())


def test_each_verb_s_help_shows_its_own_examples_only(capsys):
    with pytest.raises(SystemExit):
        cli.main(["config", "--help"])
    out = capsys.readouterr().out
    examples = [ln.split()[1] for ln in out.split("examples:", 1)[1].splitlines() if ln.strip().startswith("ssa-theory ")]
    assert examples and set(examples) == {"config"}


def test_did_you_mean_names_each_candidate_once():
    from ssa_theory.variants import get_variant

    with pytest.raises(ValueError) as e:
        get_variant("gloabl")
    hint = str(e.value).split("did you mean ", 1)[1].split("?", 1)[0]
    names = [n.strip("' ") for n in hint.split(" or ")]
    assert len(names) == len(set(names)) and "global" in names
