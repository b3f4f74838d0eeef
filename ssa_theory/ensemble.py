"""Seeds as a batch dimension: parameters with a leading ensemble axis E, one slice per seed.

Every trainable tensor has shape ``(E, ...)`` and every activation ``(E, batch, ...)``. Slice e is
initialised from member e's own generator and sees only member e's data; the loss is the *sum* of
the members' losses, so gradients never mix, and Adam (elementwise) keeps the members independent.
N seeds therefore train as one batched computation, and member e reproduces a single run with
seed e up to floating-point reassociation (tested in ``tests/test_ensemble.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def stacked_normal(generators: Sequence[torch.Generator], shape: tuple[int, ...], std: float) -> torch.Tensor:
    """``(E, *shape)`` with slice e drawn N(0, std^2) from ``generators[e]`` (on the CPU)."""
    return torch.stack([torch.randn(shape, generator=g) * std for g in generators])


def stacked_full(n_members: int, shape: tuple[int, ...], value: float) -> torch.Tensor:
    """``(E, *shape)`` filled with ``value`` (deterministic parameters draw nothing)."""
    return torch.full((n_members, *shape), float(value))


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-member ``x @ W``: x ``(E, ..., d_in)``, weight ``(E, d_in, d_out)`` -> ``(E, ..., d_out)``."""
    if x.dim() < 2:
        raise ValueError(f"expected x of shape (E, ..., d_in), got {tuple(x.shape)}")
    # One (rows x d_in) @ (d_in x d_out) product per member: far faster than broadcasting W over
    # every batch row, which turns into E * B tiny matrix products.
    E, *middle, d_in = x.shape
    out = torch.bmm(x.reshape(E, -1, d_in), weight)
    return out.reshape(E, *middle, weight.shape[-1])


def lecun_std(d_in: int) -> float:
    """Standard deviation that keeps ``x @ W`` at unit scale for unit-scale inputs."""
    return 1.0 / math.sqrt(d_in)
