"""Reading coarse pyramid levels and sampling views at world points (for QC only).

Level geometry follows :mod:`rhapso_core.image_source`: level voxel ``i`` has its
centre at level-0 coordinate ``f * i + (f - 1) / 2``, so a level-0 view-voxel
coordinate ``p`` sits at level coordinate ``(p - (f - 1) / 2) / f``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rhapso_core.image_source import ImageSource

__all__ = ["choose_level", "to_level_zyx", "read_level", "sample_view"]


def choose_level(source: ImageSource, max_voxels: int) -> int:
    """The finest pyramid level with at most ``max_voxels`` voxels (the coarsest if none is that small)."""
    for level in range(source.n_levels):
        if int(np.prod(source.level_shape(level))) <= max_voxels:
            return level
    return source.n_levels - 1


def to_level_zyx(points_xyz: np.ndarray, factors_zyx) -> np.ndarray:
    """Level-0 view-voxel points ``(N, 3)`` x y z -> that level's voxel coordinates ``(N, 3)`` z y x."""
    f = np.asarray(factors_zyx, dtype=np.float64)
    zyx = np.asarray(points_xyz, dtype=np.float64)[:, ::-1]
    return (zyx - (f - 1.0) / 2.0) / f


def read_level(source: ImageSource, level: int) -> np.ndarray:
    """A whole pyramid level as float32 (z, y, x)."""
    shape = source.level_shape(level)
    box = tuple((0, int(n)) for n in shape)
    return np.asarray(source.read(box, level), dtype=np.float32)


def sample_view(source: ImageSource, points_xyz: np.ndarray, level: int) -> np.ndarray:
    """Trilinear samples of a view at level-0 view-voxel points ``(N, 3)`` x y z.

    Only the box of the level that the points need is read. Points are expected
    inside the view; outside values are clamped to the nearest edge voxel.
    """
    pts = np.asarray(points_xyz, dtype=np.float64)
    if pts.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    coords = to_level_zyx(pts, source.level_factors(level))
    shape = np.asarray(source.level_shape(level))
    lo = np.clip(np.floor(coords.min(axis=0)).astype(int) - 1, 0, shape - 1)
    hi = np.clip(np.ceil(coords.max(axis=0)).astype(int) + 2, lo + 1, shape)
    block = np.asarray(source.read(tuple((int(a), int(b)) for a, b in zip(lo, hi)), level), dtype=np.float32)
    local = (coords - lo).T
    return ndimage.map_coordinates(block, local, order=1, mode="nearest").astype(np.float64)
