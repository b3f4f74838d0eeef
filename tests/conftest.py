import os

import pytest
import torch
from hypothesis import settings

from ssa_theory.threads import use_threads

# Property tests draw the same examples on every run (CI is reproducible); set
# HYPOTHESIS_PROFILE=explore to search new, random examples.
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    # An experiment's test module reads its quick run through a fixture named ``quick``: those tests go to
    # the process that makes the run (xdist_group "quick:NAME", as test_cli's and test_ablation's do), so
    # that no test process idles on another's lock while it is made.
    for item in items:
        name = item.module.__name__.rpartition("test_")[2]
        if "quick" in getattr(item, "fixturenames", ()) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(f"quick:{name}"))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# One thread per test process, and for every process a test starts (use_threads writes the setting to
# the environment children inherit): the suite's models are tiny, and on a shared 2-core machine
# PyTorch's default (a thread per core) made the suite about 15x slower when another process competed;
# a child at another thread count also computes another run hash.
use_threads(1)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name) -> (out, run_dir)``: each experiment's quick run, made once per test session."""
    from ssa_theory import cli

    cache = {}
    # One root for every test process of the session (pytest-xdist gives each worker a folder of its own
    # below a shared one), as `reproduce --quick --out` would use: a run is computed by the first worker
    # that asks for it, and a second one waits on its lock (rundir.run_lock) and reuses it.
    base = tmp_path_factory.getbasetemp()
    out = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "quick-runs"
    out.mkdir(exist_ok=True)

    def get(name):
        from ssa_theory import registry

        why = registry.get(name).lacking()
        if why:  # an optional extra the experiment needs is not installed (the [text] corpus)
            pytest.skip(why)
        if name not in cache:
            assert cli.main(["run", name, "--quick", "--quiet", "--out", str(out)]) == 0
            (path,) = [p for p in (out / name).iterdir() if not p.name.startswith(".")]  # not a partial
            cache[name] = (out, path)
        return cache[name]

    return get


@pytest.fixture
def toy():
    """The toy experiment (``ssa_theory.testing.toy``) registered as ``toy`` for one test; fresh worker
    processes find it by its reference. Yields the experiment."""
    from ssa_theory import registry
    from ssa_theory.testing import toy as toy_module

    registry.register(toy_module.EXPERIMENT, ref=toy_module.REF)
    try:
        yield toy_module.EXPERIMENT
    finally:
        registry.unregister(toy_module.EXPERIMENT.name)
