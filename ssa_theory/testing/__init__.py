"""Test support that ships with the package.

``ssa_theory.testing.toy``: a toy experiment that trains nothing and takes well under a second, for
tests of the machinery around experiments (run directories, locks, sweeps, ``reproduce``), with
switches that make it crash its process, fail, sleep or write a non-finite number.
"""
