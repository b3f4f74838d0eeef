"""Experiment configs: frozen dataclasses, overridden from the command line with type checking.

Each experiment has one ``@dataclass(frozen=True)`` config whose defaults are the default preset.
``--set key=value`` overrides are parsed by the field's annotated type (int, float, bool, str, or a
tuple of those written comma-separated) and then checked by the config's ``__post_init__``, which
raises ``ConfigError`` naming the key and the fix. Both errors end the CLI with exit code 2.

Before any config sees it, every number must be finite and of a sane size: floats within
``FLOAT_LIMIT`` in magnitude (``inf``, ``nan``, ``1e308`` are refused: nothing in these experiments
is meaningful beyond it, and float32 training overflows well before ``1e308``) and integers within
``INT_LIMIT`` (sizes and step counts beyond it would not fit a tensor index or finish).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from typing import Any, Mapping, Sequence


class UsageError(Exception):
    """A mistake in what the user asked for: reported as one line, exit code 2, no traceback."""


class ConfigError(UsageError):
    """A config value that is unknown, ill-typed or impossible."""


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``; for configs' ``__post_init__``."""
    if not condition:
        raise ConfigError(message)


def choice(name: str, value: str, options: Sequence[str]) -> None:
    """Check that a string field is one of ``options``."""
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{name}={value!r} is not allowed; {hint}choose from {', '.join(options)}")


@dataclasses.dataclass(frozen=True)
class Bound:
    """A config field's allowed values, declared once in its metadata (``ranged``): checked by
    ``check_ranges`` (every ``TrainingConfig`` on creation) and shown by ``ssa-theory config``. The bounds
    apply to a number, or to every item of a tuple; ``nonempty`` asks a tuple for at least one item;
    ``also`` states in words what the config's ``__post_init__`` checks against other fields."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    nonempty: bool = False
    also: str = ""
    choices: tuple[str, ...] = ()  # a text field (or each item of a tuple): one of these

    def interval(self) -> str:
        """The numeric bounds in words: ">= 1", "< 8", "in [0, 1)"; "" where there are none."""
        lo = ("[", ">=", self.ge) if self.ge is not None else ("(", ">", self.gt) if self.gt is not None else None
        hi = ("]", "<=", self.le) if self.le is not None else (")", "<", self.lt) if self.lt is not None else None
        if lo and hi:
            return f"in {lo[0]}{lo[2]:g}, {hi[2]:g}{hi[0]}"
        return f"{lo[1]} {lo[2]:g}" if lo else f"{hi[1]} {hi[2]:g}" if hi else ""

    def words(self) -> str:
        """Everything the bound allows, for ``ssa-theory config``."""
        first = "one of " + ", ".join(self.choices) if self.choices else \
            ("each " if self.nonempty and self.interval() else "") + self.interval()
        return "; ".join(p for p in (first, "at least one" if self.nonempty else "", self.also) if p)

    def holds(self, x: float) -> bool:
        return ((self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt))


RANGE = "range"  # field metadata: the field's ``Bound``


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, nonempty: bool = False, also: str = "", choices: Sequence[str] = (),
           variants: bool = False) -> Any:
    """A config field with its allowed values (``Bound``), e.g. ``steps: int = ranged(400, ge=1)``;
    ``variants``: the field holds strategy names, as ``variant_field``."""
    metadata: dict[str, Any] = {RANGE: Bound(ge, gt, le, lt, nonempty, also, tuple(choices))}
    if variants:
        metadata["holds"] = HOLDS_VARIANTS
    return dataclasses.field(default=default, metadata=metadata)


def bound_of(cls: type, f: dataclasses.Field) -> Bound | None:
    """A field's ``Bound``: its own, else for a training config the shared one of ``SHARED_BOUNDS``."""
    if RANGE in f.metadata:
        return f.metadata[RANGE]
    return SHARED_BOUNDS.get(f.name) if issubclass(cls, TrainingConfig) else None


def check_ranges(config: Any) -> None:
    """Raise ``ConfigError`` for the first field of ``config`` outside its ``Bound`` (``bound_of``)."""
    for f in dataclasses.fields(config):
        bound = bound_of(type(config), f)
        if bound is None:
            continue
        value = getattr(config, f.name)
        items = value if isinstance(value, tuple) else (value,)
        if bound.nonempty and not items:
            raise ConfigError(f"{f.name} must hold at least one value (got {value!r})")
        for x in items:
            if bound.choices and x not in bound.choices:
                choice(f.name, x, bound.choices)
        bad = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool) and not bound.holds(x)]
        if bad:
            interval = bound.interval()
            raise ConfigError(f"{f.name} must {'lie' if interval.startswith('in ') else 'be'} {interval} (got {value!r})")


def allowed(cls: type, name: str) -> str:
    """The allowed values of one field of config class ``cls`` in words: its ``Bound``, else what its
    type allows (a variant field: strategy names)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    bound = bound_of(cls, f)
    if bound is not None:
        return bound.words()
    if f.metadata.get("holds") == HOLDS_VARIANTS:
        return "strategy names (ssa-theory strategies)"
    typ = field_types(cls)[name]
    return {bool: "true or false", str: "text", int: "any integer", float: "any number"}.get(typ, "any")


class TrainingConfig:
    """Base of every experiment config that trains: the checks of the training fields it has (and their
    meaning, ``FIELD_NOTES``, which ``ssa-theory config`` shows where a config does not say more).

    Every field's declared ``Bound`` is checked (``check_ranges``); the training fields' bounds are
    ``SHARED_BOUNDS`` unless a field declares its own; a config without one of these fields (full-batch
    training has no ``batch_size``) is not asked for it. A subclass's ``__post_init__`` calls this one first.
    """

    def __post_init__(self) -> None:
        check_ranges(self)


HOLDS_VARIANTS = "variants"  # field metadata: the field holds attention variant names (a str or a tuple of them)


def variant_field(default: Any) -> Any:
    """A config field that holds attention variant names (a name, or a tuple of names): resolved once
    when the config is made (``variants.resolve_variants``), and the fields the command line reads for
    plug-in strategies to check."""
    return dataclasses.field(default=default, metadata={"holds": HOLDS_VARIANTS})


def variant_names(config: Any) -> dict[str, list[str]]:
    """Field -> the variant names it holds, for every ``variant_field`` of ``config``."""
    out = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("holds") == HOLDS_VARIANTS:
            value = getattr(config, f.name)
            out[f.name] = [value] if isinstance(value, str) else list(value)
    return out


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> annotated type of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
FLOAT_LIMIT = 1e6
INT_LIMIT = 2**31 - 1


def check_number(name: str, value: float | int, hint: str = "") -> None:
    """Refuse non-finite or absurdly large numbers with a ``ConfigError`` naming ``name``."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > INT_LIMIT:
            raise ConfigError(f"{name}={value} is out of range: integers must lie within +-{INT_LIMIT}{hint}")
        return
    if not math.isfinite(value) or abs(value) > FLOAT_LIMIT:
        raise ConfigError(f"{name}={value!r} is out of range: numbers must be finite and within +-{FLOAT_LIMIT:g}{hint}")


def _parse_scalar(key: str, text: str, typ: type) -> Any:
    text = text.strip()
    try:
        if typ is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if typ is int:
            value = int(text)
            check_number(key, value, f"; e.g. --set {key}={_example(typ)}")
            return value
        if typ is float:
            value = float(text)
            check_number(key, value, f"; e.g. --set {key}={_example(typ)}")
            return value
        if typ is str:
            if not text:
                raise ValueError
            return text
    except ValueError:
        pass
    else:
        raise ConfigError(f"config key {key!r} has unsupported type {typ}")
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a non-empty string"}[typ]
    raise ConfigError(f"{key} must be {kind} (got {text!r}); e.g. --set {key}={_example(typ)}")


def _example(typ: type) -> str:
    return {bool: "true", int: "3", float: "0.5", str: "name"}.get(typ, "value")


def parse_value(key: str, text: str, typ: Any) -> Any:
    """Parse the command-line text of one field by its annotated type."""
    if typing.get_origin(typ) is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        parts = [p for p in text.split(",") if p.strip()]
        return tuple(_parse_scalar(key, p, item) for p in parts)
    return _parse_scalar(key, text, typ)


def parse_overrides(cls: type, pairs: Sequence[str], experiment: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: typed value}``, refusing unknown keys with the valid ones."""
    types = field_types(cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set takes key=value (got {pair!r}); e.g. --set {next(iter(types))}=...")
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown config key {key!r} for {experiment}; {hint}valid keys: {', '.join(types)}"
            )
        out[key] = parse_value(key, text, types[key])
    return out


def build_config(cls: type, preset: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    """The config: dataclass defaults, then the preset, then the overrides (validated on creation)."""
    return cls(**{**preset, **overrides})


def to_json(config: Any) -> str:
    """A config as canonical JSON (keys sorted, tuples as lists): one text per config, so that it can
    travel to another process as a string and enter a run hash."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(cls: type, text: str) -> Any:
    """The config of ``cls`` that ``to_json`` wrote (lists become the tuples the fields declare);
    a ``ConfigError`` for text that is not such a config."""
    try:
        values = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"not a JSON config of {cls.__name__}: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"not a JSON config of {cls.__name__}: a {type(values).__name__}, not an object")
    types = field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"unknown config keys for {cls.__name__}: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if typing.get_origin(types[k]) is tuple and isinstance(v, list) else v
                  for k, v in values.items()})


# the training fields every config may have: their meaning
FIELD_NOTES = {"steps": "training steps", "batch_size": "training examples per step and member",
               "lr": "Adam's learning rate", "log_every": "evaluate and log every this many steps",
               "n_eval": "held-out contexts per member (two at least, for a standard error)"}
# the allowed values of the fields that mean the same in every config that has them (a field may declare its own)
SHARED_BOUNDS = {"steps": Bound(ge=1), "batch_size": Bound(ge=1), "lr": Bound(gt=0), "log_every": Bound(ge=1),
                 "n_eval": Bound(ge=2), "d_model": Bound(ge=1), "n_layers": Bound(ge=1),
                 "n_heads": Bound(ge=1, also="divides d_model"), "n_monitor": Bound(ge=1), "conv": Bound(ge=0),
                 "temp_lr_factor": Bound(gt=0), "weight_decay": Bound(ge=0), "null_runs": Bound(ge=0)}


def field_notes(cls: type) -> dict[str, str]:
    """Each field's meaning, as its config class writes it once: the comment after the field's line, or
    the comment lines just above it (the class and its bases, read from their source); "" where none."""
    import inspect
    import re

    notes: dict[str, str] = dict(FIELD_NOTES) if issubclass(cls, TrainingConfig) else {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):  # no source (a class made at run time)
            continue
        above: list[str] = []
        for line in lines:
            stripped = line.strip()
            m = re.match(r"^(\w+)\s*:\s*[^=#]+(?:=.*?)?(?:#\s*(.*))?$", stripped)
            if stripped.startswith("#"):
                above.append(stripped.lstrip("#").strip())
                continue
            if m and m.group(1) in {f.name for f in dataclasses.fields(klass)} and line.startswith("    ") \
                    and not line.startswith("     "):
                note = (m.group(2) or " ".join(above)).strip()
                if note or not notes.get(m.group(1)):  # a bare redefinition keeps the meaning written before
                    notes[m.group(1)] = note
            above = []
    return notes


def describe(config: Any) -> list[tuple[str, str, str, str, str]]:
    """(key, type, value, meaning, allowed values) rows of a config, for ``ssa-theory config``."""
    types = field_types(type(config))
    notes = field_notes(type(config))
    rows = []
    for name, typ in types.items():
        shown = getattr(typ, "__name__", None) if typing.get_origin(typ) is None else None
        rows.append((name, shown or str(typ).replace("typing.", ""), repr(getattr(config, name)), notes.get(name, ""),
                     allowed(type(config), name)))
    return rows
