"""A thread-safe map bounded by the bytes of its values, least recently used out first.

The one implementation behind the process-wide read caches: the point store's
(:mod:`rhapso_core.pointstore.cache`, keyed by write tokens) and the decoded image chunks of
a run (:mod:`rhapso_core.io.chunk_cache`, keyed by chunk file identity). Their keys name
immutable content, so neither needs invalidation: a rewrite is a new key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundedLRU", "CacheStats"]


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`BoundedLRU` since it was created or cleared."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int


class BoundedLRU:
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
            raise ValueError(f"cache limit must be >= 0 bytes, got {max_bytes}")
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
