"""Shared task: a set of n items, one of them the needle, read by one attention layer.

Used by ``dilution`` (every strategy against context length) and ``critical`` (the log-n coefficient
fixed, in a bounded score geometry). Item j is ``[flag_j, onehot(class_j), 0]`` with ``flag = 1`` for
the needle only (plus Gaussian noise of std ``flag_noise``) and a class drawn uniformly from C; a
fixed query token ``[0, 0..0, 1]`` attends over the items (no positional encoding: the items are a
set) and the attended value is read as C class logits. A config using it has the fields
``n_classes``, ``flag_noise``, ``n_min`` and ``n_max``. ``VERSION`` enters the run hash of every
experiment that uses this task; change it whenever a change here changes the numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssa_theory.attention import Attention
from ssa_theory.sampling import MemberStream

VERSION = "1"


def needle_frequency(n_min: int, n_max: int) -> float:
    """The needle token's share of all items seen in training: ``E[1/n]``, n uniform on n_min..n_max."""
    return float(np.mean([1.0 / n for n in range(n_min, n_max + 1)]))


def draw_items(cfg, g: torch.Generator, prefix: tuple[int, ...], n: int) -> tuple[torch.Tensor, ...]:
    """Raw draws for ``prefix`` contexts of n items (CPU): needle index, classes (.., n), flag noise (.., n)."""
    needle = torch.randint(n, prefix, generator=g)
    classes = torch.randint(cfg.n_classes, (*prefix, n), generator=g)
    noise = torch.randn(*prefix, n, generator=g) * cfg.flag_noise
    return needle, classes, noise


def items(cfg, needle: torch.Tensor, classes: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Item features (.., n, C + 2): ``[flag + noise, onehot(class), 0]``."""
    n = classes.shape[-1]
    flag = (torch.arange(n, device=classes.device) == needle[..., None]).to(noise.dtype) + noise
    onehot = nn.functional.one_hot(classes, cfg.n_classes).to(noise.dtype)
    return torch.cat([flag[..., None], onehot, torch.zeros_like(flag[..., None])], -1)


def sample(cfg, generators, n_contexts: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluation contexts for E members: items (E,B,n,D), the needle's class (E,B), its index (E,B)."""
    parts = [draw_items(cfg, g, (n_contexts,), n) for g in generators]
    needle, classes, noise = (torch.stack(c).to(device) for c in zip(*parts))
    return items(cfg, needle, classes, noise), classes.gather(-1, needle[..., None])[..., 0], needle


class NeedleModel(nn.Module):
    """One attention layer: a fixed query token over the n items; the attended value is C class logits.

    ``score``/``score_bound``: the attention's score geometry (``Attention``'s ``SCORES``; ``dot`` by
    default, ``cosine`` with bound B scores ``B cos(q, k)``)."""

    def __init__(self, strategy: str, cfg, generators, score: str = "dot", score_bound: float | None = None) -> None:
        super().__init__()
        D = cfg.n_classes + 2
        self.attn = Attention(strategy, D, generators=generators, d_head=cfg.n_classes, value_proj=True, causal=False,
                              out_proj=False, train_length=cfg.n_max, score=score, score_bound=score_bound)
        query = torch.zeros(D)
        query[-1] = 1.0
        self.register_buffer("query", query)
        f = needle_frequency(cfg.n_min, cfg.n_max)
        self.freq = (f, 1.0 - f)

    def _args(self, x: torch.Tensor, flag: torch.Tensor) -> dict:
        """The query (E,B,1,D) and keyword arguments: the query's position is n (the set has no order,
        so SSA's position term reads the number of items), and every item's token frequency."""
        E, B, n, _ = x.shape
        needle_freq, other_freq = self.freq
        k_freq = torch.where(flag > 0.5, needle_freq, other_freq)  # (E, B, n): each member's own items
        return {"x": self.query.expand(E, B, 1, -1), "context": x, "q_pos": torch.full((1,), n, device=x.device),
                "k_pos": torch.full((n,), n, device=x.device), "extras": {"k_freq": k_freq}}

    def forward(self, x: torch.Tensor, flag: torch.Tensor, return_probs: bool = False):
        """Class logits (E,B,C) for items x (E,B,n,D), and with ``return_probs`` the attention (E,B,n)."""
        a = self._args(x, flag)
        if return_probs:
            out, probs = self.attn(a.pop("x"), **a, return_probs=True)
            return out[:, :, 0], probs[:, :, 0, 0]
        return self.attn(a.pop("x"), **a)[:, :, 0]

    def logits(self, x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        """The query's attention logits over the items (E,B,n), every temperature applied."""
        a = self._args(x, flag)
        return self.attn.logits(a.pop("x"), **a)[:, :, 0, 0]

    @torch.no_grad()
    def query_temperature(self, n: int) -> torch.Tensor:
        """The query-side inverse temperature at n items (E,): SSA's terms times the strategy's factor."""
        x = self.query.expand(self.attn.n_members, 1, 1, -1)
        return self.attn.query_inverse_temperature(x, n, pos=torch.full((1,), n, device=x.device))[:, 0, 0, 0]


def fit_model(net: NeedleModel, cfg, members, ctx, label: str, lengths, decay: float = 0.0) -> NeedleModel:
    """Train ``net`` (E members) for ``len(lengths)`` steps, step t on ``lengths[t]`` items: per member,
    the cross-entropy of the needle's class over ``cfg.batch_size`` fresh contexts from its ``data``
    stream (one chunked stream per length), plus ``decay`` times the layer's budget
    (``Attention.weight_l2``); Adam at ``cfg.lr`` (``train.fit``). Returns ``net``."""
    from ssa_theory.train import fit

    E, device = len(members), ctx.device
    gens = members.generators("data")
    streams: dict[int, MemberStream] = {}

    def member_loss(step: int) -> torch.Tensor:
        n = lengths[step]
        if n not in streams:  # one stream per length: chunked draws, members independent
            streams[n] = MemberStream(gens, lambda g, k, n=n: draw_items(cfg, g, (k, cfg.batch_size), n), device)
        needle, classes, noise = streams[n]()
        x = items(cfg, needle, classes, noise)
        target = classes.gather(-1, needle[..., None])[..., 0]  # (E, B)
        logits = net(x, x[..., 0])
        ce = nn.functional.cross_entropy(logits.reshape(-1, cfg.n_classes), target.reshape(-1), reduction="none")
        loss = ce.reshape(E, -1).mean(1)
        return loss + decay * net.attn.weight_l2() if decay else loss

    fit(list(net.parameters()), member_loss, steps=len(lengths), lr=cfg.lr, log_every=cfg.log_every,
        progress=ctx.progress(label, len(lengths)), model=label, members=members.labels)
    return net
