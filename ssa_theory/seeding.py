"""How every random number in a run is derived from the user's seed: the one place that says so.

A run with ``--seed S --seeds N`` trains members with seeds ``S, S+1, ..., S+N-1``. Member seed m
never feeds a generator directly: each use (a *stream*) gets its own 63-bit seed
``SeedSequence([m, stream_id])``, so model initialisation and data sampling are independent, and
member m of a batched run draws exactly what a single run with seed m draws. Task structure that
is fixed across members (e.g. the graph of ``graph_transition``) has its own config seed and
stream. All generators live on the CPU, so the same seed gives the same numbers on every device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# Stream ids are part of the results: changing one changes every number. Append, never renumber.
STREAMS = {"init": 1, "data": 2, "eval": 3, "task": 4}


def derive_seed(seed: int, stream: str) -> int:
    """The 63-bit seed of ``stream`` for member seed ``seed``."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    state = np.random.SeedSequence([int(seed), STREAMS[stream]]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def torch_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for one member and stream."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))


def torch_generators(seeds: Sequence[int], stream: str) -> list[torch.Generator]:
    """One CPU generator per ensemble member, in member order."""
    return [torch_generator(s, stream) for s in seeds]


def numpy_rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy ``Generator`` for one seed and stream."""
    return np.random.default_rng(derive_seed(seed, stream))


def member_seeds(seed: int, n_seeds: int) -> list[int]:
    """The member seeds of a run: ``seed, seed + 1, ..., seed + n_seeds - 1``."""
    return [seed + i for i in range(n_seeds)]
