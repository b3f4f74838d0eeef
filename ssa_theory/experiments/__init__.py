"""The built-in experiments, one module each, listed by name in ``registry.BUILTINS`` (this package
imports none of them: the registry imports each when it is asked for).

Every experiment is one module with the same skeleton, top to bottom (the pieces it shares are in
``ssa_theory.skeleton``, ``ssa_theory.seeding.Members`` and ``ssa_theory.tasks``):

1. ``Config``: one frozen dataclass (``config.TrainingConfig`` checks the training fields), whose
   defaults are the default preset; then the task, from ``ssa_theory/tasks/`` where it is shared.
2. ``MODELS`` (or a config field): label -> attention variant, resolved once into ``ModelSpec``s.
3. ``train(spec, cfg, members, ctx, **task) -> Trained``: one model trained for every ensemble
   member at once (``Members``: seeds, grid cells, labels), returning a record of arrays (E, ...).
4. ``measure(cfg, ..., trained) -> Results``: tables beside the closed forms of ``ssa_theory.theory``,
   raw frames and ``metrics.json``; ``write_results(ctx, results)`` writes them, the one writer.
5. ``run(cfg, ctx)``: the loops that tie 2-4 together, a few lines.
6. ``claims(exported)``: the paper's claims from the exported results, each with its rule, and the
   same rule read on the placebo (``skeleton.twin()``, trained beside the models, in the claimed
   model's place; ``Claim.placebo``).
7. ``ablate(cfg, variant, ctx)``: the task's headline measure per seed for any variant (``Ablation``).
8. ``plot(run_dir)``: every figure, from the run directory only (``*_plots.py``).
9. ``EXPERIMENT``: the registry entry, with its presets.

Adding an experiment is one module plus one line in ``registry.BUILTINS`` (or a ``register`` call
anywhere, with ``ref=`` so that worker processes can import it). The ``ablation`` experiment trains
every registered experiment that declares an ablation hook (``registry.with_ablation``), so a new
one joins it without an edit there.
"""
