"""The registered experiments: one explicit ``register`` per module, in the order ``list`` shows."""

from ssa_theory.experiments import denoising, dilution, graph_transition, norm_spikiness, specificity
from ssa_theory.registry import register

register(graph_transition.EXPERIMENT)
register(denoising.EXPERIMENT)
register(norm_spikiness.EXPERIMENT)
register(dilution.EXPERIMENT)
register(specificity.EXPERIMENT)
