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
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CacheStats",
    "ReadCache",
    "READ_CACHE",
    "set_cache_limit",
    "frozen",
]

#: 256 MiB: the points of about 6.7 million interest points (40 bytes each: id, x y z,
#: intensity, DoG), e.g. 67 views of 1e5 points, which covers every view a matching
#: task touches (two) and a whole solve on datasets of tens of views, while a worker
#: process that reads points stays far below a fusion block's memory. Larger datasets
#: are read through the cache least-recently-used first, never grown without bound.
DEFAULT_MAX_BYTES = 256 << 20

_ENV = "RHAPSO_POINTSTORE_CACHE_MB"


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`ReadCache` since it was created or cleared."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int


def frozen(arr: np.ndarray) -> np.ndarray:
    """``arr`` made read-only in place (it must own its data or view data nobody writes)."""
    arr.flags.writeable = False
    return arr


class ReadCache:
    """Thread-safe least-recently-used map bounded by the bytes of its values.

    Parameters
    ----------
    max_bytes : int
        Bound on the sum of the entries' sizes (bytes). An entry larger than the
        bound is not kept. ``0`` keeps nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._max = 0
        self._hits = 0
        self._misses = 0
        self.set_limit(max_bytes)

    def set_limit(self, max_bytes: int) -> None:
        """Change the bound (bytes), dropping the oldest entries beyond it."""
        max_bytes = int(max_bytes)
        if max_bytes < 0:
            raise ValueError(f"point-store cache limit must be >= 0 bytes, got {max_bytes}")
        with self._lock:
            self._max = max_bytes
            self._shrink()

    def get(self, key: Hashable) -> Any | None:
        """The value stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Store ``value`` (``nbytes`` large) under ``key``, evicting the least recently used."""
        nbytes = int(nbytes)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes > self._max:
                return
            self._entries[key] = (value, nbytes)
            self._bytes += nbytes
            self._shrink()

    def discard(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key satisfies ``predicate``; returns how many."""
        with self._lock:
            doomed = [k for k in self._entries if predicate(k)]
            for k in doomed:
                self._bytes -= self._entries.pop(k)[1]
            return len(doomed)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._bytes = self._hits = self._misses = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._bytes, self._max, self._hits, self._misses)

    def _shrink(self) -> None:
        while self._bytes > self._max and self._entries:
            _, (_, n) = self._entries.popitem(last=False)
            self._bytes -= n


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
READ_CACHE = ReadCache(_limit_from_env())


def set_cache_limit(max_bytes: int) -> None:
    """Bound the process-wide point-store cache to ``max_bytes`` (``0`` disables it)."""
    READ_CACHE.set_limit(max_bytes)
