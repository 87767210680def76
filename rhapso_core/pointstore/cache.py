"""A process-wide cache of point-store reads, keyed by the write that produced them.

One alignment reads the same views again and again (each pair reads both of its
views; retries, checks, the solver and its guard read them again), and every read
of a zarr group costs several store round trips. Every write of points renews the
view's ``token`` and every pair write a fresh ``pair_token``, so a key holding the
store, the view(s), the label and that token names one immutable content: a
rewrite gets a new key (the old entry is never returned again, it only ages out)
and a deleted view has no token to look up. No invalidation protocol is needed,
across threads or across the processes that write the store.

Readers still read the group's attributes on every call (one small object) to
learn the current token; only the arrays come from the cache. Cached arrays are
shared between callers, so they are read-only.

Bounded by bytes (least recently used first out): :data:`DEFAULT_MAX_BYTES`, or
``RHAPSO_POINTSTORE_CACHE_MB`` in the environment (``0`` disables it), or
:func:`set_cache_limit`.
"""

from __future__ import annotations

import os

import numpy as np

from rhapso_core.bounded_cache import BoundedLRU

__all__ = ["DEFAULT_MAX_BYTES", "READ_CACHE", "set_cache_limit", "frozen"]

#: 256 MiB: the points of about 6.7 million interest points (40 bytes each: id, x y z,
#: intensity, DoG), e.g. 67 views of 1e5 points, which covers every view a matching
#: task touches (two) and a whole solve on datasets of tens of views, while a worker
#: process that reads points stays far below a fusion block's memory. Larger datasets
#: are read through the cache least-recently-used first, never grown without bound.
DEFAULT_MAX_BYTES = 256 << 20

_ENV = "RHAPSO_POINTSTORE_CACHE_MB"


def frozen(arr: np.ndarray) -> np.ndarray:
    """``arr`` made read-only in place (it must own its data or view data nobody writes)."""
    arr.flags.writeable = False
    return arr


def _limit_from_env() -> int:
    raw = os.environ.get(_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{_ENV}={raw!r}: must be a number of MiB (0 disables the cache)") from None
    if not mb >= 0:
        raise ValueError(f"{_ENV}={raw!r}: must be >= 0 MiB")
    return int(mb * (1 << 20))


#: The cache every :class:`~rhapso_core.pointstore.PointStore` of this process shares.
READ_CACHE = BoundedLRU(_limit_from_env())


def set_cache_limit(max_bytes: int) -> None:
    """Bound the process-wide point-store cache to ``max_bytes`` (``0`` disables it)."""
    READ_CACHE.set_limit(max_bytes)
