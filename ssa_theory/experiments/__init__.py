"""The registered experiments: one explicit ``register`` per module, in the order ``list`` shows.

``ablation`` trains every attention variant on the tasks of the others; it is built from them here,
so that it never imports an experiment module itself.
"""

from ssa_theory.experiments import ablation, denoising, dilution, graph_transition, norm_spikiness, specificity
from ssa_theory.registry import register

_TASKS = [register(m.EXPERIMENT) for m in (graph_transition, denoising, norm_spikiness, dilution, specificity)]
register(ablation.build(_TASKS))
