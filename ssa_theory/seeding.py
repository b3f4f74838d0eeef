"""How every random number in a run is derived from the user's seed: the one place that says so.

A run with ``--seed S --seeds N`` trains members with seeds ``S, S+1, ..., S+N-1``. Member seed m
never feeds a generator directly: each use (a *stream*) gets its own 63-bit seed
``SeedSequence([m, stream_id])``, so model initialisation and data sampling are independent, and
member m of a batched run draws exactly what a single run with seed m draws. A stream that needs
several independent generators (one per test set, per length) names each by integer keys after
the stream: ``SeedSequence([m, stream_id, *keys])``, never by arithmetic on a seed. A placebo twin
(a vanilla model read against vanilla) draws its initialisation from the ``init_twin`` stream: the
same law as ``init``, an independent draw, on the same ``data``; a placebo that removes an effect
by construction (a permutation) draws from ``placebo``. Task structure that
is fixed across members (e.g. the graph of ``graph_transition``) has its own config seed and
stream. All generators live on the CPU, so the same seed gives the same numbers on every device.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

# Stream ids are part of the results: changing one changes every number. Append, never renumber.
STREAMS = {"init": 1, "data": 2, "eval": 3, "task": 4, "init_twin": 5, "placebo": 6, "finetune": 7, "finetune_twin": 8}


def derive_seed(seed: int, stream: str, *keys: int) -> int:
    """The 63-bit seed of ``stream`` for member seed ``seed``; ``keys`` (non-negative integers) name one
    of the stream's independent sub-streams (a test set, a length). No keys: the stream itself."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    if any(int(k) < 0 for k in keys):
        raise ValueError(f"sub-stream keys must be non-negative integers (got {keys})")
    # Each key enters as key + 1: SeedSequence pads its entropy with zeros, so a key of 0 would give the
    # stream itself, and keys (a,) and (a, 0) one sub-stream.
    entropy = [int(seed), STREAMS[stream], *(int(k) + 1 for k in keys)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def torch_generator(seed: int, stream: str, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for one member, stream and sub-stream (``derive_seed``)."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, *keys))


def torch_generators(seeds: Sequence[int], stream: str) -> list[torch.Generator]:
    """One CPU generator per ensemble member, in member order."""
    return [torch_generator(s, stream) for s in seeds]


def numpy_rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy ``Generator`` for one seed and stream."""
    return np.random.default_rng(derive_seed(seed, stream))


def member_seeds(seed: int, n_seeds: int) -> list[int]:
    """The member seeds of a run: ``seed, seed + 1, ..., seed + n_seeds - 1``."""
    return [seed + i for i in range(n_seeds)]


def step_lengths(task_seed: int, low: int, high: int, steps: int) -> list[int]:
    """The context length of every training step, uniform in ``low..high``, drawn from the task's own
    stream (``derive_seed(task_seed, "task")``): identical for every member, so that a batch of seeds
    trains on lengths of one schedule."""
    g = torch.Generator().manual_seed(derive_seed(task_seed, "task"))
    return torch.randint(low, high + 1, (steps,), generator=g).tolist()


@dataclass(frozen=True)
class Members:
    """The ensemble members of one batched training: every member's seed, its grid cell and a label.

    An experiment that trains a grid of settings at once (denoising's regimes, norm_spikiness's
    weight decays, specificity's (rho, contrast) cells) makes every (cell, seed) pair a member,
    cell outer: member e is cell ``e // S``, seed ``e % S``. Without a grid every member is in cell
    0. ``labels`` only name members in messages (``train.Diverged``).
    """

    seeds: tuple[int, ...]
    cells: tuple[int, ...]
    labels: tuple[str, ...]

    @classmethod
    def of(cls, seeds: Sequence[int]) -> "Members":
        """One member per seed, no grid."""
        return cls(tuple(seeds), (0,) * len(seeds), tuple(f"seed {s}" for s in seeds))

    @classmethod
    def grid(cls, points: Sequence, seeds: Sequence[int], describe: Callable[[Any], str]) -> "Members":
        """Every (point, seed), point outer; ``describe(point)`` names the point in labels."""
        pairs = list(itertools.product(range(len(points)), seeds))
        return cls(tuple(s for _, s in pairs), tuple(c for c, _ in pairs),
                   tuple(f"{describe(points[c])}, seed {s}" for c, s in pairs))

    def __len__(self) -> int:
        return len(self.seeds)

    def generators(self, stream: str, *keys: int) -> list[torch.Generator]:
        """One CPU generator per member for ``stream`` (and sub-stream ``keys``), in member order."""
        return [torch_generator(s, stream, *keys) for s in self.seeds]

    def in_cell(self, cell: int) -> np.ndarray:
        """Boolean mask (E,) of the members in grid cell ``cell``."""
        return np.asarray(self.cells) == cell

    def select_cell(self, cell: int) -> "Members":
        """The members of grid cell ``cell``, in order."""
        return self.select(self.in_cell(cell))

    def select(self, mask: np.ndarray) -> "Members":
        """The members where ``mask`` (E,) is True, in order."""
        keep = np.flatnonzero(mask)
        return Members(*(tuple(getattr(self, f)[i] for i in keep) for f in ("seeds", "cells", "labels")))
