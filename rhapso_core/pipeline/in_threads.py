"""Independent calls of one function run on this process's cores, results in input order.

For a stage's loop over independent items that runs inside one task (one process) while
nothing else runs beside it, e.g. the image check's phase correlation of each matched pair
(:func:`rhapso_core.pipeline.pair_check.check_pairs_against_images`): FFTs, NumPy and the
numba kernels (``nogil``) release the GIL, so items in threads overlap where a loop would leave
every core but one idle. Each call sees the caller's context variables (the chunk readers'
settings are one); results come back in the order of ``items``, so the caller's result does
not depend on which thread finished first, and the first failure is raised as the loop would.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["available_cores", "in_threads"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform says, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def in_threads(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, the calls spread over ``workers`` threads (default: the cores available).

    One item, or one worker, runs in the calling thread as the loop would.
    """
    n = min(len(items), workers or available_cores())
    if n <= 1:
        return [fn(x) for x in items]
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="rhapso-items") as pool:
        futures = [pool.submit(ctx.copy().run, fn, x) for x in items]
        return [f.result() for f in futures]
