"""The lazy multiscale image interface that detection and fusion read through.

Boxes are in a pyramid level's own voxel grid, axis order (z, y, x), as half-open
``(start, stop)`` pairs. Level ``l`` relates to level 0 by an integer factor per
axis and NGFF / BigStitcher mean-downsampling geometry: level voxel ``i`` has its
centre at level-0 coordinate ``f * i + (f - 1) / 2``.

Concrete sources live in :mod:`rhapso_core.io`; :class:`ArraySource` wraps
in-memory arrays for tests and small data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # ((z0, z1), (y0, y1), (x0, x1))


@runtime_checkable
class ImageSource(Protocol):
    """A 3D view with a pyramid, read one sub-box at a time."""

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def n_levels(self) -> int: ...

    def level_shape(self, level: int) -> tuple[int, int, int]:
        """Shape (z, y, x) of a level."""

    def level_factors(self, level: int) -> tuple[int, int, int]:
        """Downsampling factor (z, y, x) of a level relative to level 0."""

    def read(self, box: Box, level: int = 0) -> np.ndarray:
        """Read ``box`` (clipped to the level's extent by the caller) as a (z, y, x) array."""


def level_to_level0(factors_zyx: Sequence[float]) -> np.ndarray:
    """4x4 (x y z) from a level's voxel index to level-0 voxel coordinates: level voxel
    ``i`` is centred at ``f * i + (f - 1) / 2`` (``factors_zyx``: the level's factors)."""
    f = np.asarray(factors_zyx, dtype=np.float64)[::-1]
    m = np.diag([*f, 1.0])
    m[:3, 3] = (f - 1.0) / 2.0
    return m


def clip_box(box: Box, shape: Sequence[int]) -> Box:
    """Intersect a box with ``[0, shape)``; empty axes become ``(s, s)``."""
    out = []
    for (a, b), n in zip(box, shape):
        a2 = min(max(int(a), 0), int(n))
        b2 = min(max(int(b), a2), int(n))
        out.append((a2, b2))
    return tuple(out)  # type: ignore[return-value]


def box_is_empty(box: Box) -> bool:
    return any(b <= a for a, b in box)


@dataclass
class ArraySource:
    """An :class:`ImageSource` over in-memory arrays: ``levels[0]`` is full resolution."""

    levels: list[np.ndarray]
    factors: list[tuple[int, int, int]] = field(default_factory=list)

    def __post_init__(self):
        if not self.factors:
            self.factors = [(1, 1, 1)] + [
                tuple(int(round(a / b)) for a, b in zip(self.levels[0].shape, lv.shape))  # type: ignore[misc]
                for lv in self.levels[1:]
            ]

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def level_shape(self, level: int) -> tuple[int, int, int]:
        return tuple(self.levels[level].shape)  # type: ignore[return-value]

    def level_factors(self, level: int) -> tuple[int, int, int]:
        return tuple(self.factors[level])  # type: ignore[return-value]

    def read(self, box: Box, level: int = 0) -> np.ndarray:
        (z0, z1), (y0, y1), (x0, x1) = clip_box(box, self.level_shape(level))
        return np.asarray(self.levels[level][z0:z1, y0:y1, x0:x1])
