"""One shape for every experiment: the shared pieces (ModelSpec, Members, Results, summarise, parameters_of),
and a new experiment added as one module plus one ``register`` call, which then appears in ``list``,
``reproduce --only`` and the ablation without an edit anywhere else."""

import importlib
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from ssa_theory import cli, registry
from ssa_theory.attention import Attention
from ssa_theory.experiments import ablation
from ssa_theory.nn import SelectiveAttention
from ssa_theory.rundir import summarise
from ssa_theory.seeding import Members
from ssa_theory.skeleton import PLACEBO, ModelSpec, twin, with_variant

NEWCOMER = '''
"""newcomer: a new experiment as a researcher adds one (one module, one register call)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssa_theory.attention import get_variant
from ssa_theory.config import TrainingConfig, require
from ssa_theory.registry import Ablation, Experiment, Preset
from ssa_theory.rundir import summarise
from ssa_theory.seeding import numpy_rng
from ssa_theory.skeleton import Results, write_results


@dataclass(frozen=True)
class Config(TrainingConfig):
    n: int = 50
    steps: int = 1

    def __post_init__(self):
        super().__post_init__()
        require(self.n >= 1, "n must be >= 1")


def score(cfg, variant, seeds):
    """The task: a number per seed that depends on the variant's query range (no training needed)."""
    hi = get_variant(variant).query_range()[1]
    return np.array([abs(numpy_rng(s, "data").standard_normal(cfg.n).mean()) / min(hi, 10.0) for s in seeds])


def run(cfg, ctx):
    values = score(cfg, "vanilla", ctx.seeds)
    results = Results()
    results.table("summary", pd.DataFrame([{"model": "vanilla", "variant": "vanilla", "value": values.mean(),
                                            "value_lo": values.min(), "value_hi": values.max()}]), ci=["value"])
    results.metrics = summarise({"value": values})
    write_results(ctx, results)


def ablate(cfg, variant, ctx):
    return score(cfg, variant, ctx.seeds)


def plot(run_dir):
    import matplotlib.pyplot as plt

    from ssa_theory.plotting import save

    fig, ax = plt.subplots(figsize=(2, 1.5))
    save(fig, run_dir, "nothing")


EXPERIMENT = Experiment(
    name="newcomer", version="1", claim="none (a new experiment in a test)", config=Config, run=run, plot=plot,
    headline="summary",
    presets={"default": Preset(seeds=3), "quick": Preset({"n": 10}, seeds=2, scratch=True)},
    ablation=Ablation("|mean| / tau_max", "0", ablate),
)
'''


@pytest.fixture
def newcomer(tmp_path, monkeypatch):
    (tmp_path / "newcomer.py").write_text(textwrap.dedent(NEWCOMER))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("newcomer")
    registry.register(module.EXPERIMENT, ref="newcomer:EXPERIMENT")  # the one line that adds it
    yield module
    registry.unregister("newcomer")


def test_a_new_experiment_appears_in_list_reproduce_and_the_ablation(newcomer, tmp_path, capsys):
    assert cli.main(["list"]) == 0
    assert "newcomer" in capsys.readouterr().out

    to = tmp_path / "to"
    to.mkdir()
    assert cli.main(["reproduce", "--only", "newcomer", "--jobs", "1", "--quiet", "--out", str(tmp_path / "runs"),
                     "--to", str(to)]) == 0
    assert (to / "experiments" / "newcomer" / "summary.csv").is_file()

    # the ablation's default tasks are every registered hook, the newcomer's version enters its hash
    cfg = ablation.AblationConfig()
    assert cfg.tasks[-1] == "newcomer" and ablation.depends(cfg)["experiment:newcomer"] == "1"
    out = tmp_path / "ablation"
    assert cli.main(["run", "ablation", "--quick", "--quiet", "--set", "tasks=newcomer", "--set", "variants=vanilla,ssa",
                     "--out", str(out)]) == 0
    (path,) = (out / "ablation").iterdir()
    table = pd.read_csv(path / "tables" / "ablation.csv")
    assert list(table.variant) == ["vanilla", "ssa"] and "newcomer" in table.columns
    m = json.loads((path / "metrics.json").read_text())
    # the cells are the experiment's own numbers: vanilla's tau_max is 1, SSA's (both terms) is larger
    van = np.asarray(m["tasks"]["newcomer"]["variants"]["vanilla"]["per_seed"])
    np.testing.assert_allclose(van, newcomer.score(newcomer.Config(), "vanilla", [0, 1]))  # its Ablation has no overrides
    assert np.all(np.asarray(m["tasks"]["newcomer"]["variants"]["ssa"]["per_seed"]) < van)


def test_the_ablation_refuses_a_task_without_a_hook_and_an_unknown_one(capsys):
    from ssa_theory.config import ConfigError

    with pytest.raises(ConfigError, match="declares no ablation hook"):
        ablation.AblationConfig(tasks=("ablation",))
    with pytest.raises(ConfigError, match="did you mean"):
        ablation.AblationConfig(tasks=("graph_transitio",))
    assert cli.main(["run", "ablation", "--quick", "--set", "tasks=nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_members_grid_is_cell_outer_and_selects_by_cell():
    m = Members.grid([(0.1, 1.0), (0.5, 2.0)], [3, 4], lambda p: f"p={p[0]:g}")
    assert list(zip(m.cells, m.seeds)) == [(0, 3), (0, 4), (1, 3), (1, 4)]
    assert m.labels[2] == "p=0.5, seed 3"
    one = m.select_cell(1)
    assert one.seeds == (3, 4) and one.cells == (1, 1) and len(one) == 2
    a, b = m.generators("init"), Members.of([3]).generators("init")
    assert torch.equal(torch.randn(3, generator=a[2]), torch.randn(3, generator=b[0]))  # seed 3, same stream


def test_model_spec_resolves_once_and_names_the_layer():
    from ssa_theory.variants import VARIANTS

    spec = ModelSpec.of("ssa", "ssa_q_tok")
    assert spec.resolved is VARIANTS["ssa_q_tok"]  # resolved when made, and kept: the layer gets the object
    assert ModelSpec(spec.label, spec.resolved).resolved is spec.resolved  # a resolved variant is not resolved again
    assert spec.name == "ssa (ssa_q_tok)" and ModelSpec.of("global").name == "global"
    assert ModelSpec.of("freq").scale == "freq" and spec.scale == ""
    with pytest.raises(ValueError, match="did you mean"):
        ModelSpec.of("ssa", "ssa_q_tk")
    df = with_variant(pd.DataFrame({"model": ["vanilla", "ssa", "target"], "x": [1, 2, 3]}), "model",
                      {"vanilla": "vanilla", "ssa": "ssa_q_tok"})
    assert list(df.columns) == ["model", "variant", "x"] and list(df.variant) == ["vanilla", "ssa_q_tok", ""]


@pytest.mark.parametrize("name", ["graph_transition", "norm_spikiness", "specificity"])
def test_the_twin_is_vanilla_drawn_apart_on_the_same_data(name, tmp_path):
    """The placebo of every claim: vanilla attention from the ``init_twin`` stream, so its weights differ
    from vanilla's on the same seeds while its training data (the ``data`` stream, keyed by seed alone) is
    vanilla's; a spec without ``init`` keeps the ``init`` stream (no model moved)."""
    from ssa_theory.rundir import RunContext

    t = twin()
    assert (t.label, t.variant, t.init, ModelSpec.of("vanilla").init) == (PLACEBO, "vanilla", "init_twin", "init")
    exp = registry.get(name)
    cfg = exp.config(**exp.presets["quick"].overrides)
    ctx = RunContext(tmp_path, [0, 1], torch.device("cpu"), quiet=True)
    module = importlib.import_module(f"ssa_theory.experiments.{name}")
    w = {}
    for spec in (ModelSpec.of("vanilla"), ModelSpec.of("vanilla"), t):
        torch.manual_seed(len(w))  # a model must not draw from the global generator
        attn = _first_attention(module, spec, cfg, ctx)
        w.setdefault(spec.label, []).append(attn.w_q.detach().clone())
    assert torch.equal(w["vanilla"][0], w["vanilla"][1])
    assert w[PLACEBO][0].shape == w["vanilla"][0].shape and not torch.allclose(w[PLACEBO][0], w["vanilla"][0])


def _first_attention(module, spec, cfg, ctx):
    """The attention layer ``module`` builds for ``spec`` on seeds 0 and 1, before any training (denoising
    builds its own in ``train``: its quick-run test reads the twin apart from vanilla instead)."""
    name = module.__name__.rpartition(".")[2]
    members = Members.of(ctx.seeds)
    if name == "graph_transition":
        from ssa_theory.tasks.graphs import GraphTask
        task = GraphTask.build(cfg.n_nodes, cfg.max_degree, cfg.graph_seed, cfg.smoothing)
        return module.build_model(spec, cfg, task, cfg.score, members).attn
    if name == "norm_spikiness":
        return module.build_model(spec, cfg, module.Task.build(cfg), members).attn
    return module.build_model(spec, cfg, module.Grid.of(cfg.cells[:1], ctx.seeds)).attn


def test_summarise_is_the_metrics_block():
    m = summarise({"a": np.array([1.0, 2.0, 3.0]), "by": {2: np.array([0.0, 2.0])}})
    assert m["a"] == 2.0 and m["by"] == {2: 1.0}
    assert m["ci95"]["a"][0] < 2.0 < m["ci95"]["a"][1] and len(m["ci95"]["by"][2]) == 2
    assert m["per_seed"]["a"].tolist() == [1.0, 2.0, 3.0]
    one = summarise({"a": np.array([5.0])})
    assert one["a"] == 5.0 and all(np.isnan(one["ci95"]["a"]))  # one seed: no interval


def test_parameters_of_is_the_public_way_to_a_strategy_parameter():
    layer = Attention("ssa", 8, generators=[torch.Generator().manual_seed(0)], n_heads=2)
    named = dict(layer.named_parameters())
    assert layer.parameters_of("ssa_tok", "q")["u"] is named["temp.q_u"]
    assert layer.parameters_of("ssa_pos", "v")["alpha"] is named["temp.v_alpha"]
    with pytest.raises(KeyError, match="pass side="):
        layer.parameters_of("ssa_tok")
    with pytest.raises(KeyError, match="not placed .*placed: ssa_tok on q"):
        layer.parameters_of("ssmax")
    m = SelectiveAttention(8, 2, variant="ssmax")
    assert m.parameters_of("ssmax")["s"].shape == (2,)


@pytest.mark.parametrize("variant", ["ssa_q_tok", "ssa_noshare"])
def test_token_argument_is_the_term_inside_the_tanh(variant):
    """tanh of the public accessor is exactly the token term the layer applies: tau - 1 with the
    position term off."""
    layer = Attention(variant, 8, generators=[torch.Generator().manual_seed(0)], n_heads=2)
    with torch.no_grad():
        layer.parameters_of("ssa_tok" if layer.variant.share else "ssa_tok_own", "q")["u"].normal_(
            0, 1, generator=torch.Generator().manual_seed(1))
        if "pos" in layer.variant.terms("q"):
            layer.parameters_of("ssa_pos", "q")["alpha"].fill_(-float("inf"))  # position term off
    x = torch.randn(1, 3, 5, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(torch.tanh(layer.token_argument("q", x)), layer.temperature("q", x) - 1)
    with pytest.raises(KeyError, match="no token term on side 'k'"):
        layer.token_argument("k", x)
