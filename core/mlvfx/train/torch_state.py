"""Training sets torch's process-wide state; the trainers give it back when they return.

A run seeds the global generator, sets the recipe's thread count and turns on deterministic
kernels. Called from a pipeline tool or a notebook, that state outlived the run: later inference in
the same process ran on the recipe's thread count (often 1) with deterministic kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def torch_state_kept() -> Iterator[None]:
    """Restore torch's thread count, deterministic-algorithms mode and RNG states on exit."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cpu_rng = torch.get_rng_state()
    seed = torch.initial_seed()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        elif torch.cuda.is_available():  # CUDA not started before: its (lazy) seed as the caller set it
            torch.cuda.manual_seed_all(seed)


def keeps_torch_state(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`torch_state_kept`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch_state_kept():
            return fn(*args, **kwargs)

    return wrapper
