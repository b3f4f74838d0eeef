"""The experiment registry: an explicit name -> ``Experiment`` table, loaded on demand.

The built-in experiments are listed in ``BUILTINS`` by name and ``module:ATTR``, in the order
``list`` shows; the registry imports none of them itself (lm-evaluation-harness keeps its registry
this way): ``get(name)`` imports the one it is asked for, and ``load()`` imports them all (what
``list``, ``reproduce`` and the ablation's default tasks need). Experiments defined elsewhere are
added by ``register``; a second experiment with the same name is refused, and an unknown name is
answered with the closest registered ones.

Wherever an experiment name is accepted, a reference ``package.module:ATTR`` to an ``Experiment``
defined outside the package works too (``run``, ``sweep``, ``reproduce --only``): it is imported, not
registered. Worker processes of sweeps and of ``reproduce --jobs`` are fresh processes, so they find
an experiment by such a reference or by a built-in name, never by a registration made at run time
(``ref`` gives the string that reaches an experiment from a fresh process).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ssa_theory.config import UsageError

# name -> where its Experiment is, in the order ``list`` shows (adding an experiment: one module, one line here)
BUILTINS: dict[str, str] = {name: f"ssa_theory.experiments.{name}:EXPERIMENT" for name in (
    "graph_transition", "denoising", "norm_spikiness", "dilution", "critical", "specificity", "passkey", "flipflop",
    "text", "ablation")}

if TYPE_CHECKING:
    from ssa_theory.claims import Claim
    from ssa_theory.rundir import RunContext


@dataclass(frozen=True)
class Preset:
    """Config overrides and the default number of seeds of a named preset.

    A ``scratch`` preset (``quick``) is a smoke test: ``reproduce`` never lets it write the
    committed results. ``minutes`` is its wall time as measured on a 2-core machine at one thread
    (``benchmarks/RESULTS.md``); ``reproduce --jobs`` only uses it to start the longest runs first.
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    seeds: int = 5
    about: str = ""
    scratch: bool = False
    minutes: float = 0.0


@dataclass(frozen=True)
class Ablation:
    """How the ``ablation`` experiment trains any attention variant on this experiment's task.

    ``run(config, variant, ctx)`` trains ``variant`` (a ``variants.Variant``, resolved once by the
    ablation's cell; a name works too) for every member seed of ``ctx`` on the task as ``config`` sets
    it, and returns the task's headline measure
    per seed, (S,), relative to its floor (``measure`` says what it is, ``floor`` what the best
    possible value is and why; ``floor_value`` is that value, from which the ablation's figure reads
    the share of vanilla's gap to the floor a variant closes). It may instead return a mapping with
    that array under ``"value"`` and further per-seed measures beside it (dilution's accuracy), shown
    next to the cell. ``overrides`` give the moderate version the ablation trains; ``quick`` the
    smoke-test version. ``bounded``: the measure is a fraction in [0, 1] (a mass, an error rate),
    whose interval over seeds must stay inside it (``stats.bootstrap_ci``, not a t-interval).
    """

    measure: str
    floor: str
    run: Callable[[Any, str, "RunContext"], Any]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)
    bounded: bool = False
    floor_value: float = 0.0
    minutes: float = 0.3  # one cell's measured wall time at the moderate size, one thread (for scheduling only)


@dataclass(frozen=True)
class Models:
    """An experiment whose run trains independent models and then measures them together.

    ``keys(config)`` names the models in the order ``run`` measures them; ``train(config, key, ctx)``
    trains one of them for every member seed of ``ctx`` and returns its ``skeleton.Trained`` record.
    Each model must draw only from its own generators (``seeding.Members``), so that training it alone
    gives the numbers it gives beside the others. Each model is then a run directory of its own
    (``ssa_theory.cells``): ``reproduce`` spreads them over its workers, a finished one is reused, and
    the experiment's ``run`` collects them with ``cells.trained``. ``weight(config, key)`` is a model's
    share of the experiment's time, relative to the others (for scheduling only; default: equal).
    """

    keys: Callable[[Any], list[str]]
    train: Callable[[Any, str, "RunContext"], Any]
    weight: Callable[[Any, str], float] | None = None


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    ``run(config, ctx)`` trains and evaluates, writing tables, arrays and metrics through ``ctx``;
    ``plot(run_dir)`` draws every figure from what ``run`` saved. ``version`` changes whenever the
    meaning of the results changes (it is part of the run-directory hash). ``headline`` names the
    table printed after a run. ``presets`` must hold ``default`` and ``quick`` (a scratch preset).
    ``claims(exported_dir)`` turns the exported results (``experiments/NAME/``) into the paper
    claims this experiment checks (``ssa_theory.claims``). ``tasks`` names the shared task modules
    (``ssa_theory.tasks``) it uses, with their versions, so that editing shared task code invalidates
    every cached run that depends on it. ``ablation`` (optional) lets the ``ablation`` experiment
    train every attention variant on this experiment's task. ``depends(config)`` (optional) adds
    entries to ``tasks`` that depend on the config (the ablation: the versions of the experiments it
    trains), so that they enter the run hash too. ``cells`` or ``models`` (optional, not both) say that
    the run is collected from runs of its own, which ``reproduce`` schedules as tasks (``split``).
    """

    name: str
    version: str
    claim: str
    config: type
    run: Callable[[Any, "RunContext"], None]
    plot: Callable[[Path], None]
    headline: str
    presets: Mapping[str, Preset]
    claims: Callable[[Path], list["Claim"]] | None = None
    tasks: Mapping[str, str] = field(default_factory=dict)  # shared task module -> its VERSION (enters the run hash)
    ablation: Ablation | None = None  # how the ``ablation`` experiment trains any variant on this task
    # what else the results depend on, given the config (the ablation: the experiments it trains); enters the run hash
    depends: Callable[[Any], Mapping[str, str]] | None = None
    # the independent runs this one is collected from, given the config: (experiment reference
    # "module:ATTR", config overrides, minutes) each; ``reproduce`` schedules them as tasks of their own
    # before this one, which then reuses them (the ablation: one cell per variant and task)
    cells: Callable[[Any], list[tuple[str, Mapping[str, Any], float]]] | None = None
    # the independent models its run trains, each a run directory of its own (``Models``)
    models: Models | None = None
    # what the experiment needs that an optional extra provides: returns None when it is there, else one line
    # naming the extra and the install command (``reproduce`` skips it with that line unless named with --only)
    missing: Callable[[], str | None] | None = None

    def lacking(self) -> str | None:
        """None where everything the experiment needs is installed, else ``missing``'s one line."""
        return self.missing() if self.missing is not None else None

    def __post_init__(self) -> None:
        if self.cells is not None and self.models is not None:
            raise ValueError(f"experiment {self.name!r}: declare cells or models, not both")
        missing = {"default", "quick"} - set(self.presets)
        if missing:
            raise ValueError(f"experiment {self.name!r} lacks presets {sorted(missing)}")
        if not self.presets["quick"].scratch or self.presets["default"].scratch:
            raise ValueError(f"experiment {self.name!r}: the quick preset must be scratch and the default must not")



_REGISTRY: dict[str, Experiment] = {}
_REFS: dict[str, str] = {}  # name -> "module:attr" for experiments registered from outside the package


def register(experiment: Experiment, *, ref: str | None = None) -> Experiment:
    """Add an experiment; a duplicate name (a built-in's included) is a programming error.

    ``ref`` (``"module:attr"``) is how a fresh worker process finds an experiment registered from
    outside ``ssa_theory.experiments`` (a test, a notebook); without one, such an experiment runs in
    this process only (``reproduce --jobs 1``).
    """
    if experiment.name in _REGISTRY or experiment.name in BUILTINS:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    if ref is not None:
        _REFS[experiment.name] = ref
    return experiment


def unregister(name: str) -> None:
    """Remove an experiment registered at run time (tests do, to leave the registry as they found it)."""
    _REGISTRY.pop(name, None)
    _REFS.pop(name, None)


_BUILT: dict[str, Experiment] = {}  # the built-ins imported so far


def _builtin(name: str) -> Experiment:
    if name not in _BUILT:
        from ssa_theory.refs import load as load_ref

        experiment = load_ref(BUILTINS[name], Experiment, "experiment")
        if experiment.name != name:
            raise RuntimeError(f"{BUILTINS[name]} is named {experiment.name!r}, not {name!r}")
        _BUILT[name] = experiment
    return _BUILT[name]


def load() -> list[Experiment]:
    """Import every built-in experiment (once) and return every registered one, in ``names()`` order."""
    return [get(n) for n in names()]


def names() -> list[str]:
    """Every experiment name, the built-ins first, in the order ``list`` shows (nothing is imported)."""
    return [*BUILTINS, *(n for n in _REGISTRY if n not in BUILTINS)]


def _import_ref(ref: str) -> Experiment:
    from ssa_theory.refs import load

    try:
        return load(ref, Experiment, "experiment")
    except ValueError as e:
        raise UsageError(str(e)) from None


def get(name: str) -> Experiment:
    """The experiment called ``name`` (or at the reference ``module:attr``); a ``UsageError`` naming
    the closest ones otherwise."""
    if ":" in name:  # imported, not registered (and the registry is not loaded for it)
        experiment = _import_ref(name)
        if experiment.name not in _REGISTRY and experiment.name not in BUILTINS:  # how a fresh process reaches it
            _REFS.setdefault(experiment.name, name)
        return experiment
    if name in BUILTINS:
        return _builtin(name)
    if name not in _REGISTRY:
        known = names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UsageError(f"unknown experiment {name!r}; {hint}registered: {', '.join(sorted(known))} (see 'ssa-theory list')")
    return _REGISTRY[name]


def with_ablation() -> list[str]:
    """Names of the registered experiments that declare an ablation hook, in registration order: the
    tasks the ``ablation`` experiment trains by default."""
    return [e.name for e in load() if e.ablation is not None]


def ref(name: str) -> str:
    """The string that reaches the experiment ``name`` from a fresh process: its reference if it was
    registered with one or imported by one (``get("module:ATTR")``), else its name (built-ins register
    on import)."""
    return _REFS.get(name, name)
