"""PyTorch's CPU thread count, set once per process and handed to every child process.

``torch.set_num_threads`` holds for this process only: a child started with ``subprocess`` or
``multiprocessing`` (spawn) starts at torch's default, one thread per core, which both oversubscribes
a shared machine and changes the run hash (the thread count is part of it). ``use_threads(n)`` sets
the count here and writes it to the environment variables torch, OpenMP and the BLAS libraries read
at start-up, so that every child inherits it unless it sets its own.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def use_threads(n: int) -> None:
    """PyTorch CPU threads = n in this process and in every child it starts from now on."""
    import torch

    torch.set_num_threads(n)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
