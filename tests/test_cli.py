"""The command line: listing, errors (one line, exit 2, nothing written), run directories, export."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from ssa_theory import cli, registry


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
    assert "n_nodes = 20    (int)" in out and "steps = 300" in out


BAD = {
    "unknown experiment": (["run", "graph_transitoin"], "did you mean graph_transition"),
    "unknown key": (["run", "graph_transition", "--set", "n_node=3"], "valid keys: n_nodes"),
    "ill-typed int": (["run", "graph_transition", "--set", "n_nodes=abc"], "n_nodes must be an integer"),
    "ill-typed float": (["run", "graph_transition", "--set", "lr=fast"], "lr must be a number"),
    "degree above vocabulary": (["run", "graph_transition", "--set", "max_degree=20"], "max_degree=20 must be < n_nodes=16"),
    "negative size": (["run", "graph_transition", "--set", "n_nodes=-4"], "n_nodes must be >= 3"),
    "zero seeds": (["run", "graph_transition", "--seeds", "0"], "--seeds: must be a positive integer"),
    "non-integer seeds": (["run", "graph_transition", "--seeds", "two"], "--seeds: must be a positive integer"),
    "unknown geometry": (["run", "graph_transition", "--set", "compare=rownorm,cosin"], "did you mean 'cosine'"),
    "bad set syntax": (["run", "graph_transition", "--set", "steps"], "--set takes key=value"),
    "unknown preset": (["run", "graph_transition", "--preset", "paper"], "no preset 'paper'"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "missing name": (["run"], "required: NAME"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    args, expected = BAD[case]
    out = tmp_path / "runs"
    rc = run_cli(*args, "--out", out) if args and args[0] == "run" and len(args) > 1 else run_cli(*args)
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


# --- every registered experiment runs in quick mode -----------------------------------------------


@pytest.fixture(scope="module", params=registry.names())
def quick_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert cli.main(["run", request.param, "--quick", "--quiet", "--out", str(out)]) == 0
    (path,) = (out / request.param).iterdir()
    return request.param, out, path


def test_quick_run_writes_a_complete_run_directory(quick_run):
    name, _, path = quick_run
    for f in ("config.json", "env.json", "metrics.json", "done"):
        assert (path / f).is_file(), f
    config = json.loads((path / "config.json").read_text())
    assert config["experiment"] == name and config["preset"] == "quick" and config["run_hash"] == path.name
    env = json.loads((path / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    tables = list((path / "tables").iterdir())
    assert path / "tables" / f"{registry.get(name).headline}.md" in tables
    assert {p.stem for p in tables if p.suffix == ".csv"} == {p.stem for p in tables if p.suffix == ".md"}
    figures = list((path / "figures").iterdir())
    assert figures and {p.stem for p in figures if p.suffix == ".png"} == {p.stem for p in figures if p.suffix == ".pdf"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "a partial directory was left behind"


def test_finished_run_is_reused_unless_forced(quick_run, capsys):
    name, out, path = quick_run
    stamp = (path / "done").stat().st_mtime_ns
    assert cli.main(["run", name, "--quick", "--quiet", "--out", str(out)]) == 0
    assert "reused a finished run" in capsys.readouterr().out
    assert (path / "done").stat().st_mtime_ns == stamp


def test_incomplete_run_is_recomputed(tmp_path, capsys):
    args = ["run", "graph_transition", "--quick", "--quiet", "--set", "steps=20", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    (path,) = (tmp_path / "graph_transition").iterdir()
    (path / "done").unlink()
    (path / "metrics.json").write_text("half-written")
    assert cli.main(args) == 0
    assert "reused" not in capsys.readouterr().out
    assert json.loads((path / "metrics.json").read_text())["score"] == "softcap"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch, capsys):
    exp = registry.get("graph_transition")

    def boom(config, ctx):
        (ctx.path / "tables").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setitem(registry._REGISTRY, "graph_transition", dataclasses.replace(exp, run=boom))
    rc = cli.main(["run", "graph_transition", "--quick", "--quiet", "--out", str(tmp_path)])
    assert rc == 130
    assert list((tmp_path / "graph_transition").iterdir()) == []


def test_same_seed_same_metrics(tmp_path):
    args = ["run", "graph_transition", "--quick", "--quiet", "--set", "steps=40", "--seed", "3"]
    for d in ("a", "b"):
        assert cli.main([*args, "--out", str(tmp_path / d)]) == 0
    (a,), (b,) = ((tmp_path / d / "graph_transition").iterdir() for d in ("a", "b"))
    assert a.name == b.name
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()


def test_export_copies_tables_and_figures(tmp_path):
    args = ["export", "graph_transition", "--quick", "--quiet", "--set", "steps=20", "--out", str(tmp_path / "runs"),
            "--to", str(tmp_path)]
    assert cli.main(args) == 0
    assert (tmp_path / "experiments" / "graph_transition" / "ce_l1.md").is_file()
    assert (tmp_path / "experiments" / "graph_transition" / "metrics.json").is_file()
    assert (tmp_path / "figures" / "graph_transition" / "panels.png").is_file()
