"""Shared model: the pointer (copy) read-out, where a query's attention row *is* its prediction.

Used by ``graph_transition`` (one-hot tokens), ``norm_spikiness`` (embedded tokens) and
``specificity`` (pairs of similar queries over one-hot keys): one attention layer, no value or
output projection, each query's softmax row over the keys read as a distribution over them.
``VERSION`` enters the run hash of every experiment that uses it; change it whenever a change here
changes the numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from ssa_theory import measures
from ssa_theory.attention import Attention
from ssa_theory.scramble import Scrambler

VERSION = "1"  # the scrambled placebo (a new model) changes no existing number


class PointerModel(nn.Module):
    """One attention layer whose attention row for query i is the predicted distribution over the keys.

    Args:
        attn: the layer (E members; ``value_proj`` and ``out_proj`` are not used by the read-out).
        queries: (Q, D), the same for every member, or (E, Q, D), one set per member.
        keys: (K, D) or (E, K, D); default the queries themselves (the vocabulary attends to itself).
        q_pos, k_pos: positions (Q,) and (K,) for position terms and position-aware strategies.
        k_freq: each key's training frequency (1, K) for the ``freq`` strategy, or None.
        scramble: one generator per member (the ``placebo`` stream) for a scrambled variant
            (``ssa_theory.scramble``): each call hands every query's temperature another query's
            token (and a position shuffled among the queries'), drawn afresh; None otherwise.
    """

    def __init__(self, attn: Attention, queries: torch.Tensor, keys: torch.Tensor | None = None, *,
                 q_pos: torch.Tensor, k_pos: torch.Tensor, k_freq: torch.Tensor | None = None,
                 scramble=None) -> None:
        super().__init__()
        self.attn = attn
        self.scrambler = Scrambler(attn.variant, scramble or [])
        if self.scrambler and not scramble:
            raise ValueError(f"variant {attn.variant.name!r} is scrambled: pass scramble= (one generator per member)")
        self.register_buffer("queries", queries if queries.dim() == 2 else queries[:, None])
        self.register_buffer("keys", None if keys is None else (keys if keys.dim() == 2 else keys[:, None]))
        self.register_buffer("q_pos", q_pos)
        self.register_buffer("k_pos", k_pos)
        self.register_buffer("k_freq", k_freq)

    def extras(self) -> dict[str, torch.Tensor]:
        """The per-token data the strategies may read: each key's frequency, where the task has one, and
        a scrambled variant's fresh permutations of the queries (one draw per call)."""
        out = {} if self.k_freq is None else {"k_freq": self.k_freq}
        if self.scrambler:
            out.update(self.scrambler(1, self.queries.shape[-2], self.queries.device))
        return out

    @staticmethod
    def _members(t: torch.Tensor, E: int) -> torch.Tensor:
        return t.expand(E, 1, *t.shape) if t.dim() == 2 else t  # (E, 1, n, D)

    def x(self) -> torch.Tensor:
        """The queries (E, 1, Q, D)."""
        return self._members(self.queries, self.attn.n_members)

    def context(self) -> torch.Tensor:
        """The keys (E, 1, K, D)."""
        return self.x() if self.keys is None else self._members(self.keys, self.attn.n_members)

    @property
    def n_keys(self) -> int:
        return (self.queries if self.keys is None else self.keys).shape[-2]

    def forward(self) -> torch.Tensor:
        """Log predicted rows (E, Q, K): row i is log softmax of query i's logits, every temperature applied."""
        logits = self.attn.logits(self.x(), self.context(), q_pos=self.q_pos, k_pos=self.k_pos, extras=self.extras())
        return torch.log_softmax(logits[:, 0, 0], dim=-1)

    def inverse_temperature(self) -> torch.Tensor:
        """tau of each query (E, Q): SSA's query terms times the query-side strategy's factor (the query
        sees all K keys); ones for vanilla attention."""
        return self.attn.query_inverse_temperature(self.x(), self.n_keys, pos=self.q_pos, extras=self.extras())[:, 0, 0]

    def key_inverse_temperature(self) -> torch.Tensor | None:
        """What multiplies key j's logits (E, K), or None where that is 1."""
        tau = self.attn.key_inverse_temperature(self.context(), self.k_pos, self.extras())
        return None if tau is None else tau[:, 0, 0]

    def qk_matrix(self) -> torch.Tensor:
        """W = W_q W_k^T / sqrt(d_head) (E, D, D): query token x's score for key y is x^T W y."""
        return measures.qk_matrix(self.attn.w_q, self.attn.w_k, self.attn.d_head)
