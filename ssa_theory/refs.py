"""References ``package.module:attr`` to objects defined outside the package (experiments, strategies)."""

from __future__ import annotations

import importlib
import traceback
from typing import Any


def import_failure(e: BaseException, what: str) -> str:
    """One line for a module that failed to import: the file and line where it failed, and why."""
    if isinstance(e, SyntaxError):
        return f"{what}: {e.filename}:{e.lineno}: SyntaxError: {e.msg}; fix the file"
    frames = traceback.extract_tb(e.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename] or frames
    where = f"{user[-1].filename}:{user[-1].lineno}: " if user else ""
    return f"{what}: {where}{type(e).__name__}: {e}; fix the module"


def load(ref: str, kind: type, what: str) -> Any:
    """The object at ``ref`` (``package.module:attr``, attr may be dotted), which must be a ``kind``;
    a ``ValueError`` naming the problem and the fix otherwise (a module that fails to import: the
    file and line where it failed). ``what`` names it in messages."""
    module, _, attr = ref.partition(":")
    if not module or not attr or not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError(f"{ref!r} is not a {what} reference; write package.module:ATTR")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ValueError(f"cannot import {module!r} for {what} {ref!r} ({e}); check the module path") from None
    except Exception as e:  # noqa: BLE001  the module's own code failed: one line naming where
        raise ValueError(import_failure(e, f"{what} {ref!r} does not import")) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no attribute {attr!r}; check the name after ':'")
        obj = getattr(obj, part)
    if not isinstance(obj, kind):
        raise ValueError(f"{ref!r} is a {type(obj).__name__}, not an {kind.__module__}.{kind.__qualname__}")
    return obj
