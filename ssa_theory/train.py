"""The training loop every experiment shares: Adam on ensemble-stacked parameters.

``member_loss(step)`` returns one loss per ensemble member, shape (E,). The loop minimises their
sum, which keeps members independent (``ssa_theory.ensemble``). The learning rate follows a cosine
decay to zero over ``steps``; ``evaluate()`` is called (without gradients) before training, every
``log_every`` steps and at the end, and its (E,) tensors form the returned history.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from ssa_theory.progress import Progress


def fit(
    params: Iterable[torch.nn.Parameter] | Iterable[Mapping],
    member_loss: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    evaluate: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    log_every: int = 0,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Train; return ``{"step": (n_logs,), name: (n_logs, E), ...}`` from ``evaluate``."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / steps)))
    log_every = log_every or steps
    history: dict[str, list] = {"step": []}

    def log(step: int) -> None:
        if evaluate is None:
            return
        with torch.no_grad():
            values = evaluate()
        history["step"].append(step)
        for name, v in values.items():
            history.setdefault(name, []).append(v.detach().cpu().numpy())

    log(0)
    for step in range(steps):
        loss = member_loss(step)
        if loss.dim() != 1:
            raise ValueError(f"member_loss must return one loss per member, shape (E,), got {tuple(loss.shape)}")
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            if not history["step"] or history["step"][-1] != step + 1:
                log(step + 1)
        if progress is not None:
            progress.update()
    if progress is not None:
        progress.close()
    return {k: np.asarray(v) for k, v in history.items()}
