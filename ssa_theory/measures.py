"""Measurements of a trained attention layer: per-token query-key norms and attention spikiness.

Definitions (paper Fig. p4; ours, stated in ``paper_repro.md`` section 3):

- per-token norm: ``||W^T x_t||`` with ``W = W_q W_k^T / sqrt(d_head)``, the matrix in the score
  ``x_t^T W x_j``; it is the scale of query t's logits in key space. For SSA it is computed without
  the temperature, which carries the rest of the scale.
- spikiness of an attention row p over n keys: ``log n - H(p)`` (0 for a uniform row, ``log n`` for
  a one-hot row), and, second, its largest probability ``max_j p_j``.
"""

from __future__ import annotations

import math

import torch


def qk_matrix(w_q: torch.Tensor, w_k: torch.Tensor, d_head: int) -> torch.Tensor:
    """W = W_q W_k^T / sqrt(d_head): (..., D, H*d) x (..., D, H*d) -> (..., D, D) (one head)."""
    return w_q @ w_k.transpose(-1, -2) / math.sqrt(d_head)


def token_norms(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``||W^T x_t||`` for every row x_t of X: W (..., D, D), X (K, D) -> (..., K)."""
    return (X @ W).norm(dim=-1)


def spikiness(probs: torch.Tensor) -> torch.Tensor:
    """``log n - H(p)`` of each row: (..., n) -> (...). Zero probabilities contribute 0 to H."""
    n = probs.shape[-1]
    h = -torch.special.xlogy(probs, probs).sum(-1)
    return math.log(n) - h


def max_prob(probs: torch.Tensor) -> torch.Tensor:
    """Largest probability of each row: (..., n) -> (...)."""
    return probs.max(-1).values
