"""The training loop every experiment shares: Adam on ensemble-stacked parameters.

``member_loss(step)`` returns one loss per ensemble member, shape (E,). The loop minimises their
sum, which keeps members independent (``ssa_theory.ensemble``). The learning rate follows a cosine
decay to zero over ``steps``; ``evaluate()`` is called (without gradients) before training, every
``log_every`` steps and at the end, and its (E,) tensors form the returned history.

Divergence. A member *diverges* when its loss becomes non-finite or exceeds its own bound, or when
any of its parameters becomes non-finite or exceeds ``PARAM_BOUND`` in magnitude. The loss bound is
relative to the run: ``LOSS_GROWTH`` times the member's loss at step 0 (at least ``LOSS_GROWTH``
times ``LOSS_FLOOR``), so a task whose losses are large by construction (denoising at
``sigma_noisy=3000`` starts near 9e6) trains, while a loss that grows a millionfold from where it
started means the optimisation blew up (typically a learning rate far too large). A member whose
step-0 loss is at most ``LOSS_FLOOR`` gets the bound 1e6, the absolute bound this loop used before. No task here needs parameters
anywhere near ``PARAM_BOUND`` (the largest trained weights are O(10)). A diverged model must
never pass for a result: the loop raises ``Diverged`` naming the model, the member and the step,
and the run directory is discarded (``ssa_theory.rundir.execute``); the CLI exits with code 1.

The check costs no host synchronisation per step: the first bad step of each member is kept in a
device tensor and read every ``CHECK_EVERY`` steps (and at every log and at the end), together with
the parameter check, in one sync (``_Monitor``).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ssa_theory.progress import Progress

LOSS_GROWTH = 1e6  # a member diverges when its loss exceeds this many times its step-0 loss ...
LOSS_FLOOR = 1.0  # ... taken as at least this (a loss that starts near 0 may still grow to O(1))
PARAM_BOUND = 1e4
CHECK_EVERY = 50


class Diverged(RuntimeError):
    """A member's loss or parameters left the finite, bounded range; the message is one line."""

    def __init__(self, model: str, member: str, step: int, reason: str) -> None:
        self.model, self.member, self.step, self.reason = model, member, step, reason
        self.experiment: str | None = None  # filled in by the run that trained it
        super().__init__(model, member, step, reason)

    def __str__(self) -> str:
        where = f"{self.experiment}: " if self.experiment else ""
        return f"{where}model {self.model}, member {self.member} diverged at step {self.step} ({self.reason})"


def _param_groups(params) -> list[torch.Tensor]:
    """The parameter tensors, whether ``params`` holds tensors or optimizer param-group dicts."""
    out: list[torch.Tensor] = []
    for p in params:
        out.extend(p["params"] if isinstance(p, Mapping) else [p])
    return out


class _Monitor:
    """The divergence checks of one training: each member's loss bound, set from its step-0 loss; the
    first bad step of each member, kept in a device tensor (no host sync per step); and, at ``check``,
    that every parameter is finite and within ``PARAM_BOUND``, all read in one sync."""

    def __init__(self, tensors: list[torch.Tensor], model: str, members: Sequence[str] | None) -> None:
        self.tensors, self.model, self.members = tensors, model, members
        self.first_bad: torch.Tensor | None = None  # (E,) first step whose loss was bad, -1 if none; on the device
        self.bound: torch.Tensor | None = None  # (E,) each member's loss bound

    def label(self, e: int) -> str:
        return self.members[e] if self.members is not None else f"#{e}"

    @torch.no_grad()
    def record(self, step: int, loss: torch.Tensor) -> None:
        """Note the members whose loss at ``step`` is non-finite or above their bound (on the device)."""
        if self.bound is None:  # NaN at step 0 gives a NaN bound, and every comparison with it fails
            self.bound = LOSS_GROWTH * loss.detach().abs().clamp_min(LOSS_FLOOR)
            self.first_bad = torch.full_like(loss, -1, dtype=torch.long)
        bad = ~(loss.detach() <= self.bound)  # NaN compares False: caught too
        self.first_bad = torch.where(bad & (self.first_bad < 0), step + 1, self.first_bad)

    @torch.no_grad()
    def check(self, step: int) -> None:
        """Raise ``Diverged`` for the first member whose loss or parameters went bad (one host sync)."""
        E = self.tensors[0].shape[0]
        size = torch.stack([p.detach().abs().reshape(E, -1).amax(1).to(self.first_bad.device) for p in self.tensors])
        param_ok = size <= PARAM_BOUND  # (n_params, E); False for NaN too
        if not bool(((self.first_bad >= 0).any() | ~param_ok.all())):
            return
        if bool((self.first_bad >= 0).any()):
            e = int(torch.argmax((self.first_bad >= 0).to(torch.int8)))
            raise Diverged(self.model, self.label(e), int(self.first_bad[e]), f"loss non-finite or above "
                           f"{LOSS_GROWTH:g}x its first value {float(self.bound[e]) / LOSS_GROWTH:.3g}")
        i = int(torch.argmin(param_ok.all(1).to(torch.int8)))
        e = int(torch.argmin(param_ok[i].to(torch.int8)))
        raise Diverged(self.model, self.label(e), step, f"a parameter of shape {tuple(self.tensors[i].shape[1:])} is "
                                                        f"non-finite or above {PARAM_BOUND:g} in magnitude")


def fit(
    params: Iterable[torch.nn.Parameter] | Iterable[Mapping],
    member_loss: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    evaluate: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    log_every: int = 0,
    progress: Progress | None = None,
    model: str = "model",
    members: Sequence[str] | None = None,
    log_at: Iterable[int] | None = None,
) -> dict[str, np.ndarray]:
    """Train; return ``{"step": (n_logs,), name: (n_logs, E), ...}`` from ``evaluate``, called at step 0,
    after every ``log_every`` steps (or after each step count in ``log_at``, when given) and at the end.

    ``model`` and ``members`` (one label per ensemble member, e.g. ``"seed 3"``) only name things in
    the ``Diverged`` message.
    """
    params = list(params)
    monitor = _Monitor(_param_groups(params), model, members)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / steps)))
    log_every = log_every or steps
    log_at = None if log_at is None else frozenset(log_at)
    history: dict[str, list] = {"step": []}

    def log(step: int) -> None:
        if evaluate is None or history["step"][-1:] == [step]:
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
        monitor.record(step, loss)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        done = step + 1
        logging = (done in log_at if log_at is not None else done % log_every == 0) or done == steps
        if logging or done % CHECK_EVERY == 0:
            monitor.check(done)
        if logging:
            log(done)
        if progress is not None:
            progress.update()
    if progress is not None:
        progress.close()
    return {k: np.asarray(v) for k, v in history.items()}
