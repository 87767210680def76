"""One BLAS thread per task while a run's tasks run in threads of the command.

A small job runs its tasks in threads of the command's process, one per core
(:func:`flows.runtime.stage_runner`), instead of Ray workers. A Ray worker runs its task with
one BLAS thread (Ray sets ``OMP_NUM_THREADS`` to the task's CPUs); a thread of the command
shares the process's BLAS pool, which OpenBLAS sizes to every core. Then each BLAS call of
each task thread starts its own helpers on the cores the other task threads are using, and
OpenBLAS's helpers spin while they wait: on ``rhapso stitch`` of 6 tiles on 2 cores, 3.8 s of
its 28 s of CPU (``docs/benchmarks.md``, "Whole job against the peers"), and a 3 x 3 product
over half a million points of the QC's seam figures took 0.2 s instead of 0.025 s. The jobs
that run in threads are small by definition (the planner's ``runtime.local_threads_max_cpu_s``),
so their BLAS calls are too small to gain from more threads.

The number of threads does not change a BLAS result here: OpenBLAS splits a product among
its threads by blocks of the output, each computed as with one thread (the aligned XML and
the fused bytes of that run are identical either way). A BLAS thread count the user set
(``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OMP_NUM_THREADS``) is left as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Environment variables that set a BLAS pool's size; any of them set means the user chose it.
USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[int | None]:
    """Hold this process's BLAS pools to one thread inside the block (restored after).

    Yields the limit applied (1), or None where nothing was changed: a user setting of the
    pools' size, or ``threadpoolctl`` absent.
    """
    if any(os.environ.get(k) for k in USER_SETTINGS):
        yield None
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an environment without it runs as before
        log.debug("threadpoolctl not installed: BLAS pools keep their size")
        yield None
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield 1
