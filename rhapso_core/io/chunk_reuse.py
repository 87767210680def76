"""Decoded chunks kept between the reads of one work unit, so each is decoded once.

Why: a fusion work unit fuses its blocks one after the other, and every block reads from
each view the box its output needs, padded for interpolation; the chunks that a block
boundary cuts are read by both blocks (and by four or eight at edges and corners). On
6 tiles of 256 x 256 x 96 in 64^3 chunks fused in blocks of 256^3, 296 chunk decodes
served 208 distinct chunks per work unit.

The reads of a unit are known before it starts (the blocks, the views, each view's box:
:mod:`rhapso_core.fusion.read_plan`), so a chunk's future uses are known: a decoded chunk
is kept only when a later step of the unit reads it again, and when the kept chunks would
exceed ``capacity_bytes`` the one needed farthest in the future goes first (Belady's
rule: the fewest decodes for that memory). Reads outside the plan behave as without this
object. :func:`rhapso_core.io.chunk_io.read_region` consults the instance active in the
current thread (:func:`reusing_chunks`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

__all__ = ["ChunkReuse", "step_capacity", "reusing_chunks", "active_reuse"]

_ACTIVE: ContextVar["ChunkReuse | None"] = ContextVar("rhapso_chunk_reuse", default=None)


class ChunkReuse:
    """Which chunks each step of a unit reads, and the decoded chunks kept for later steps.

    Parameters
    ----------
    steps : sequence of iterable of str
        Per step (e.g. output block, in the order they run), the keys (chunk file paths)
        of the chunks it reads.
    capacity_bytes : int
        Most bytes of decoded chunks kept at once (see :func:`step_capacity`).
    """

    def __init__(self, steps: Sequence[Iterable[str]], capacity_bytes: int):
        uses: dict[str, list[int]] = {}
        for i, keys in enumerate(steps):
            for k in dict.fromkeys(keys):
                uses.setdefault(k, []).append(i)
        self._uses = uses
        self.capacity_bytes = int(capacity_bytes)
        self._kept: dict[str, np.ndarray] = {}
        self._bytes = 0
        self.step_index = 0
        self.decodes = 0  # chunks decoded while this object was active (for benchmarks)
        self.hits = 0

    def _next_use(self, key: str, after: int) -> int | None:
        u = self._uses.get(key)
        if not u:
            return None
        j = bisect.bisect_right(u, after)
        return u[j] if j < len(u) else None

    def step(self, i: int) -> None:
        """Step ``i`` starts: forget chunks that no step from ``i`` on reads."""
        self.step_index = int(i)
        for k in [k for k in self._kept if self._next_use(k, i - 1) is None]:
            self._drop(k)

    def get(self, key: str) -> np.ndarray | None:
        """The kept chunk, or None (then decode it and :meth:`offer` it)."""
        arr = self._kept.get(key)
        if arr is not None:
            self.hits += 1
            if self._next_use(key, self.step_index) is None:
                self._drop(key)  # this was its last planned read
        return arr

    def wants(self, key: str) -> bool:
        """Whether a chunk read now is read again by a later step."""
        return self._next_use(key, self.step_index) is not None

    def offer(self, key: str, chunk: np.ndarray) -> None:
        """A freshly decoded chunk (not to be modified afterwards); kept if a later step
        reads it and it is not the farthest-needed once over capacity."""
        self.decodes += 1
        nxt = self._next_use(key, self.step_index)
        if nxt is None or chunk.nbytes > self.capacity_bytes:
            return
        self._kept[key] = chunk
        self._bytes += chunk.nbytes
        while self._bytes > self.capacity_bytes:
            far = max(self._kept, key=lambda k: self._next_use(k, self.step_index) or 0)
            self._drop(far)

    def _drop(self, key: str) -> None:
        arr = self._kept.pop(key)
        self._bytes -= arr.nbytes

    @property
    def kept_bytes(self) -> int:
        return self._bytes


def step_capacity(steps: Sequence[Iterable[tuple[str, int]]]) -> int:
    """The decoded bytes of the largest step's chunks: keeping at most that much bounds the
    memory of reuse by what one step (one block) decodes anyway."""
    return max((sum(n for _, n in dict(s).items()) for s in steps), default=0)


@contextmanager
def reusing_chunks(reuse: ChunkReuse | None):
    """Make ``reuse`` the active one for reads in this thread (None: no reuse)."""
    token = _ACTIVE.set(reuse)
    try:
        yield reuse
    finally:
        _ACTIVE.reset(token)


def active_reuse() -> ChunkReuse | None:
    return _ACTIVE.get()
