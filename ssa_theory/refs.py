"""References ``package.module:attr`` to objects defined outside the package (experiments, strategies)."""

from __future__ import annotations

import importlib
from typing import Any


def load(ref: str, kind: type, what: str) -> Any:
    """The object at ``ref`` (``package.module:attr``, attr may be dotted), which must be a ``kind``;
    a ``ValueError`` naming the problem and the fix otherwise. ``what`` names it in messages."""
    module, _, attr = ref.partition(":")
    if not module or not attr or not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError(f"{ref!r} is not a {what} reference; write package.module:ATTR")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"cannot import {module!r} for {what} {ref!r} ({e}); check the module path") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no attribute {attr!r}; check the name after ':'")
        obj = getattr(obj, part)
    if not isinstance(obj, kind):
        raise ValueError(f"{ref!r} is a {type(obj).__name__}, not an {kind.__module__}.{kind.__qualname__}")
    return obj
