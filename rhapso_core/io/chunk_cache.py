"""Decoded chunks of local zarr arrays kept for a whole run, shared by its task threads.

Why: an alignment reads the same tiles again and again, each stage for its own purpose:
parameter resolution (coarse levels), detection (every voxel), the image check's and the
overlap fits' crops, each round's after-solve check (level-1 samples of every overlap,
before and after), then fusion and QC. On ``rhapso stitch`` of 6 tiles of 256 x 256 x 96
the in-process alignment decoded 396 chunks of which only 72 were distinct: four decodes in
five (of 0.84 s of zstd decoding on one core there) were work already done. Unlike
:mod:`rhapso_core.io.chunk_reuse`, which keeps chunks between the planned reads of one
fusion work unit (Belady's rule on a known future), these reads are not known in advance,
so this cache keeps the most recently used chunks up to a byte budget
(:class:`rhapso_core.bounded_cache.BoundedLRU`, as the point store's reads).

A chunk is known by its file's identity as well as its path: ``(path, inode, size,
mtime_ns)``, from one ``fstat`` of the file about to be read. Every chunk write (ours, and
zarr's LocalStore) writes a new file and renames it over the old one, so a rewritten chunk is
a new key and a stale chunk is not served, even to a long-lived process that outlives the run
that filled the cache (a writer that rewrote a file in place, to the same size within one tick
of the file system's clock, would defeat it: the test make and rsync rely on too).

The cache is process-wide, active inside :func:`caching_decoded_chunks` (a flow run's own
process, ``flows.runtime.ray_session``: all its tasks when they run in threads there, and with
Ray the steps the flow runs itself, such as each solve's after-solve check, which measures
every overlap under two registrations: 3.4 -> 2.1 s a round on the 32 tiles of
``bench/run_benchmarks.py``'s large dataset; the in-process alignment), and off otherwise:
benchmarks that time decoding, and Ray workers, whose memory the planner budgets per task,
decode as before. Kept chunks are read-only arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

import numpy as np

from rhapso_core.bounded_cache import BoundedLRU

__all__ = ["caching_decoded_chunks", "active_cache", "keep", "DEFAULT_CAPACITY_BYTES"]

#: 256 MiB: a small job's tiles (those that run in threads, ``runtime.local_threads_max_cpu_s``)
#: mostly fit, and it is a small share of any machine that runs the pipeline; the planner
#: counts it in the memory a threads run needs (rhapso_core.executor).
DEFAULT_CAPACITY_BYTES = 256 * 1024**2


def keep(cache: BoundedLRU, identity: Hashable, chunk: np.ndarray) -> None:
    """Keep a freshly decoded chunk under its file's identity, read-only: every reader shares it."""
    chunk.flags.writeable = False
    cache.put(identity, chunk, chunk.nbytes)


_ACTIVE: BoundedLRU | None = None
_ACTIVE_LOCK = threading.Lock()


def active_cache() -> BoundedLRU | None:
    """The cache reads consult now, or None."""
    return _ACTIVE


@contextmanager
def caching_decoded_chunks(capacity_bytes: int = DEFAULT_CAPACITY_BYTES) -> Iterator[BoundedLRU | None]:
    """Keep decoded chunks for every thread of this process inside the block (0: no cache).

    Nested blocks share the outermost cache; the cache and its chunks are released when the
    outermost block ends.
    """
    global _ACTIVE
    with _ACTIVE_LOCK:
        outer = _ACTIVE
        if outer is None and capacity_bytes > 0:
            _ACTIVE = BoundedLRU(capacity_bytes)
        mine = _ACTIVE
    try:
        yield mine
    finally:
        if outer is None:
            with _ACTIVE_LOCK:
                _ACTIVE = None
