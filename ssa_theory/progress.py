"""Progress of long loops on stderr: a live line on a terminal, a few plain lines in a log.

A job of several experiments (``reproduce``) sets a *stage* (``[2/3] denoising``) that prefixes
every line, so one display reads: job stage, model, step, elapsed time and time left.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, TextIO

_stage = ""


@contextlib.contextmanager
def stage(text: str) -> Iterator[None]:
    """Prefix every progress line drawn inside the block with ``text``."""
    global _stage
    before, _stage = _stage, text
    try:
        yield
    finally:
        _stage = before


def clock(seconds: float) -> str:
    """``m:ss``."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


class Progress:
    """``Progress("softcap/ssa", total=4000)``; call ``update(n)`` as steps complete, ``close()`` at the end.

    On a terminal the line redraws at most ten times a second; elsewhere (CI logs, pipes) it prints
    one line when the loop completes, so logs stay short.
    """

    def __init__(self, label: str, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.label, self.total, self.enabled = label, max(int(total), 1), enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last >= 0.1 or self.done == self.total:
                self._last = now
                self._draw("\r", "")
        elif self.done == self.total:
            self._draw("", "\n")

    def line(self) -> str:
        """``[2/3] denoising  vanilla  [#####...] step 1200/2000  0:14 elapsed, 0:09 left``."""
        frac = self.done / self.total
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta = clock(left) if self.done else "?"
        prefix = f"{_stage}  " if _stage else ""
        return (f"{prefix}{self.label:<20} [{bar}] step {self.done}/{self.total}  "
                f"{clock(elapsed)} elapsed, {eta} left")

    def _draw(self, prefix: str, suffix: str) -> None:
        self.stream.write(f"{prefix}{self.line()}\x1b[K{suffix}" if self.tty else f"{prefix}{self.line()}{suffix}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
