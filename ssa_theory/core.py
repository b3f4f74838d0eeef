"""The core's version: one constant for the code every experiment's numbers run through.

``VERSION`` enters every run hash (``ssa_theory.rundir.run_payload``), beside each experiment's own
version and its shared tasks' versions. The core is the modules in ``SOURCES``: the attention core
(``functional``), its two shells (the ensemble layer and the public module the LM is built from), the
variant vocabulary and the strategy table, the ensemble axis, the training loop, the data sampler and seeding, and the measures, statistics and
closed forms that turn trained models into table cells. Changing any of them can change results,
so a cached run made by other core code must not be reused.

``HISTORY`` pins each version to a fingerprint of those modules' code (their syntax trees without
docstrings, so editing prose needs no bump). ``tests/test_core.py`` fails when the code no longer
matches the fingerprint of ``VERSION``: then add a new version with the fingerprint the test prints
(``python -m ssa_theory.core`` prints it too). Never edit an old entry.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

SOURCES = ("attention.py", "ensemble.py", "functional.py", "measures.py", "nn.py", "sampling.py", "seeding.py",
           "stats.py", "strategies.py", "theory.py", "train.py", "variants.py")

# version -> fingerprint of SOURCES at that version (append only)
HISTORY = {
    "1": "17472ccf2e3e9771",
    "2": "eb8094d3e345475f",  # the strategy table (ssa_theory.strategies) joins the core; the layer applies it
    "3": "d4331b1f4cfe5800",  # one helper each for empty rows, the sink's key and bias, and parameter initialisation
    "4": "d181a5b6ce90c168",  # parameters_of / token_argument accessors, fit's one-sync monitor, the frontier's solver
    "5": "6b3b37ac55131bff",  # intervals inside their measure's range (stats.RANGES); the one budget, Attention.weight_l2
    "6": "6141ff0bbc839c1e",  # one attention core (functional.py) under both layers; masks by name, positions after padding
    "7": "2c9c5b6b6e5d306c",  # scipy imported where used (t.ppf's own stdtrit); binomial_ci, survival; sub-streams, init_twin, placebo
    "8": "5f94a8fa111aabac",  # the cosine geometry on the fused kernel and in the public layer; fit's log_at; critical scaling's closed form
}
VERSION = "8"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def fingerprint(root: Path | None = None) -> str:
    """A short hash of the core modules' code: their syntax trees, docstrings and comments left out."""
    root = Path(__file__).resolve().parent if root is None else Path(root)
    h = hashlib.sha256()
    for name in SOURCES:
        tree = _strip_docstrings(ast.parse((root / name).read_text()))
        h.update(name.encode() + b"\0" + ast.dump(tree, include_attributes=False).encode() + b"\0")
    return h.hexdigest()[:16]


if __name__ == "__main__":
    current = fingerprint()
    state = "matches" if HISTORY.get(VERSION) == current else "does NOT match"
    print(f"core fingerprint {current}; it {state} version {VERSION} ({HISTORY.get(VERSION)})")
