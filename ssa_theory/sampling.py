"""Training data for E ensemble members, drawn in chunks and moved to the device once per chunk.

Every member draws its data from its own CPU ``torch.Generator`` (``ssa_theory.seeding``), so the
same seed gives the same data on every device and member e of a batched run sees exactly what a
single run with seed e sees. Drawing per member and per step in Python, then copying each step's
batch to the device, costs a host round trip per step (it dominates on a GPU). ``MemberStream``
instead draws ``CHUNK`` steps at once per member, stacks the members, copies the chunk to the
device in one transfer, and hands out one step at a time.

``CHUNK`` is part of the results: the order in which a generator's numbers are drawn depends on
it. Changing it changes every experiment's numbers (bump their versions).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

CHUNK = 16


class MemberStream:
    """``stream()`` -> a tuple of tensors (E, ...) for the next step, on ``device``.

    ``draw(generator, n_steps)`` returns a tuple of CPU tensors whose leading axis is ``n_steps``;
    it is called once per member and chunk, members in order.
    """

    def __init__(self, generators: Sequence[torch.Generator], draw: Callable[[torch.Generator, int], tuple],
                 device: torch.device | str, chunk: int = CHUNK) -> None:
        self.generators, self.draw, self.device, self.chunk = list(generators), draw, torch.device(device), chunk
        self._buffer: tuple[torch.Tensor, ...] = ()
        self._next = chunk  # exhausted: the first call draws

    def _refill(self) -> None:
        parts = [self.draw(g, self.chunk) for g in self.generators]
        # (chunk, E, ...) per output, so that a step is one contiguous slice
        self._buffer = tuple(torch.stack(column, 1).to(self.device) for column in zip(*parts))
        self._next = 0

    def __call__(self) -> tuple[torch.Tensor, ...]:
        if self._next == self.chunk:
            self._refill()
        t = self._next
        self._next += 1
        return tuple(b[t] for b in self._buffer)


def eval_chunk(rows_per_item: int, cap: int) -> int:
    """How many items (contexts) one evaluation call takes: at most ``cap`` (for memory), and few enough
    that ``items x rows_per_item`` stays within the fused kernel's row limit (``rows_per_item`` is
    E x H for a batch of E members and H heads), at any seed count."""
    from ssa_theory.functional import SDPA_ROW_LIMIT

    return max(1, min(cap, SDPA_ROW_LIMIT // max(1, rows_per_item)))


def in_chunks(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, size: int, dim: int = 1) -> torch.Tensor:
    """``fn(*tensors)`` computed on slices of at most ``size`` along ``dim`` and concatenated.

    For evaluation batches too large for one kernel call (a fused attention kernel limits the
    number of (batch x head) rows it takes on a GPU) or for memory.
    """
    n = tensors[0].shape[dim]
    return torch.cat([fn(*(t.narrow(dim, i, min(size, n - i)) for t in tensors)) for i in range(0, n, size)], dim)
