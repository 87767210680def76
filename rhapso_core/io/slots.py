"""A (z, y, x) window on one (t, c) slot of a t, c, z, y, x zarr array.

The fused output keeps every channel and timepoint in one OME-Zarr (axes t, c, z, y, x);
the block writers, resume markers and pyramid code work on 3-D arrays. A slot looks like
a 3-D zarr array to them (shape, dtype, chunks, shards, store, indexing), and its resume
markers get a name of their own (``<array>_t<T>_c<C>``) so slots never share one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

__all__ = ["SpaceSlot", "space_slot"]


class SpaceSlot:
    """Array ``array[t, c]`` seen as a 3-D array; writes go straight to ``array``."""

    def __init__(self, array: zarr.Array, t: int, c: int):
        if array.ndim != 5:
            raise ValueError(f"{array.path}: a (t, c) slot needs a 5-D t, c, z, y, x array, got {array.ndim}-D")
        if not (0 <= t < array.shape[0] and 0 <= c < array.shape[1]):
            raise ValueError(f"{array.path}: slot (t={t}, c={c}) outside shape {tuple(array.shape[:2])}")
        self.array = array
        self.t, self.c = int(t), int(c)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape[2:])  # type: ignore[return-value]

    @property
    def ndim(self) -> int:
        return 3

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def chunks(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.chunks[2:])  # type: ignore[return-value]

    @property
    def shards(self) -> tuple[int, int, int] | None:
        s = getattr(self.array, "shards", None)
        return None if s is None else tuple(int(n) for n in s[2:])  # type: ignore[return-value]

    @property
    def store(self):
        return self.array.store

    @property
    def path(self) -> str:
        return f"{self.array.path}_t{self.t}_c{self.c}"

    def _key(self, key: Any) -> tuple:
        key = key if isinstance(key, tuple) else (key,)
        return (self.t, self.c) + key

    def __getitem__(self, key):
        return self.array[self._key(key)]

    def __setitem__(self, key, value) -> None:
        self.array[self._key(key)] = value

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.array[self.t, self.c])
        return a if dtype is None else a.astype(dtype)


def space_slot(array, t: int = 0, c: int = 0):
    """``array`` itself when it is 3-D, else its (t, c) slot."""
    return array if array.ndim == 3 else SpaceSlot(array, t, c)
