"""UniformScale as an ssa_theory plug-in: one learned inverse temperature for every head of a layer.

Wang et al. (Length Generalization of Causal Transformers without Position Encoding, Findings of
ACL 2024) re-concentrate the attention of NoPE models past their training length with one learned
temperature per layer (UniformScale) or one per head (HeadScale). ssa_theory has the per-head form
(``global_free``); this package adds the per-layer one through the strategy table, without editing
ssa_theory: the entry point ``ssa_theory.strategies`` in ``pyproject.toml`` names ``UNIFORM_SCALE``.

    query i's logits x exp(g), g one scalar per layer (per ensemble member), neutral at g = 0
"""

import math

import torch

from ssa_theory.strategies import Param, Strategy


def uniform_scale(inputs, params):
    """exp(g) on every query's logits: broadcastable to (B, H, Lq)."""
    return torch.exp(params["g"]) * torch.ones_like(inputs.n)  # g: one scalar, shaped (1, 1, 1)


UNIFORM_SCALE = Strategy(
    name="uniform_scale",
    side="q",
    combine="mul",
    formula=uniform_scale,
    params={"g": Param(shape=(), init=0.0, neutral=0.0)},
    range=(0.0, math.inf),
    neutral="params",
    reads={"n"},  # for its shape only: the factor is the same at every n
    source="Wang et al., Length Generalization of Causal Transformers without Position Encoding, ACL Findings 2024",
    about="exp(g): one learned inverse temperature shared by every head",
)
