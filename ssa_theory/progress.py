"""Progress of long loops on stderr: a live bar on a terminal, a few plain lines in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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

    def _draw(self, prefix: str, suffix: str) -> None:
        frac = self.done / self.total
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"{prefix}{self.label:<24} [{bar}] {self.done}/{self.total} {elapsed:6.1f}s{suffix}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
