"""Test support that ships with the package.

``check_strategy(strategy)`` (``ssa_theory.testing.conformance``): the conformance kit every
temperature strategy, built-in or plug-in, must pass: neutral, causal, n per query, padding, cached
decoding, fused path, independence, finite gradients. ``assert_conforms`` raises with one line per
failed property.

``ssa_theory.testing.toy``: a toy experiment that trains nothing and takes well under a second, for
tests of the machinery around experiments (run directories, locks, sweeps, ``reproduce``), with
switches that make it crash its process, fail or sleep.
"""

from ssa_theory.testing.conformance import Report, StrategyError, assert_conforms, check_strategy

__all__ = ["check_strategy", "assert_conforms", "Report", "StrategyError"]
