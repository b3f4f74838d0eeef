"""Tasks shared by several experiments, one module each, each with a ``VERSION`` that enters the run hash
of every experiment using it (``ssa_theory.registry.Experiment.tasks``). Experiments never import each other."""
