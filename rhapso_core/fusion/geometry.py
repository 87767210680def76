"""Output grid and views: where each output voxel lies in world and in each view.

Frames
------
* *output voxel* (z, y, x) integer indices of the fused array; voxel ``(k, j, i)``
  has its centre at world ``origin_xyz + voxel_size_xyz * (i, j, k)``.
* *view voxel* (x, y, z) level-0 voxel coordinates of a view, centres on integers,
  content spanning ``[0, size - 1]`` (see :mod:`rhapso_core.transforms`).
* *level voxel* a pyramid level's own grid; level voxel ``i`` has its centre at view
  voxel ``f * i + (f - 1) / 2`` (see :mod:`rhapso_core.image_source`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.image_source import ImageSource

__all__ = [
    "FusionGeometryError",
    "FusionView",
    "OutputGrid",
    "view_voxel_size",
    "make_output_grid",
    "output_to_view",
]


class FusionGeometryError(ValueError):
    """Views or an output grid that cannot be fused (named in the message)."""


@dataclass(frozen=True)
class FusionView:
    """One view to fuse.

    Parameters
    ----------
    source : ImageSource
        The view's pixels, (z, y, x) per pyramid level.
    view_to_world : (4, 4) ndarray
        Affine on (x, y, z, 1): view voxel -> world.
    size_xyz : tuple of int
        Level-0 size (x, y, z) in voxels.
    view_id : hashable, orderable
        Identifier; views are combined in ascending ``view_id`` order and
        ``lowest_view_wins`` picks the smallest.
    intensity : ViewIntensity, optional
        Intensity map applied to the view's values before they are blended
        (:mod:`rhapso_core.intensity`); None (default): values as read.
    """

    source: ImageSource
    view_to_world: np.ndarray
    size_xyz: tuple[int, int, int]
    view_id: Hashable
    intensity: Any = None

    def __post_init__(self):
        a = np.asarray(self.view_to_world, dtype=np.float64)
        if a.shape != (4, 4) or not np.all(np.isfinite(a)):
            raise FusionGeometryError(f"view {self.view_id}: view_to_world must be a finite 4x4")
        if abs(np.linalg.det(a[:3, :3])) < 1e-12:
            raise FusionGeometryError(f"view {self.view_id}: view_to_world is singular")
        shape_zyx = tuple(int(s) for s in self.source.level_shape(0))
        if shape_zyx != tuple(int(s) for s in self.size_xyz[::-1]):
            raise FusionGeometryError(
                f"view {self.view_id}: size_xyz {tuple(self.size_xyz)} disagrees with the "
                f"source's level-0 shape (z, y, x) {shape_zyx}"
            )
        object.__setattr__(self, "view_to_world", a)

    def world_box(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box ``(min_xyz, max_xyz)`` of the view's voxel centres."""
        return tf.view_bounding_box(self.view_to_world, self.size_xyz)


@dataclass(frozen=True)
class OutputGrid:
    """The fused array's geometry.

    Parameters
    ----------
    origin_xyz : (3,) ndarray
        World coordinates (x, y, z) of output voxel 0's centre.
    voxel_size_xyz : (3,) ndarray
        Output voxel size (x, y, z) in world units.
    shape_zyx : tuple of int
        Output array shape (z, y, x).
    """

    origin_xyz: np.ndarray
    voxel_size_xyz: np.ndarray
    shape_zyx: tuple[int, int, int]

    def out_to_world(self) -> np.ndarray:
        """Affine on (x, y, z, 1): output voxel -> world."""
        return tf.translation(self.origin_xyz) @ tf.scaling(self.voxel_size_xyz)


def view_voxel_size(view: FusionView) -> np.ndarray:
    """World length (x, y, z) of one view voxel step along each view axis."""
    return np.linalg.norm(view.view_to_world[:3, :3], axis=0)


def make_output_grid(
    views: Sequence[FusionView],
    voxel_size_xyz: Sequence[float] | None = None,
    bounding_box: tuple[Sequence[float], Sequence[float]] | None = None,
    isotropic: bool = False,
) -> OutputGrid:
    """Output grid covering all views (or a given world box).

    Parameters
    ----------
    views : sequence of FusionView
    voxel_size_xyz : (3,) floats, optional
        Output voxel size in world units; default: the finest view voxel size per axis
        (the minimum over views), or its minimum on all axes when ``isotropic``.
    bounding_box : ((3,), (3,)), optional
        World box (min xyz, max xyz); default: the union of the views' world boxes.
    isotropic : bool, default False
        See ``voxel_size_xyz``.

    Returns
    -------
    OutputGrid
        Origin at the box's min corner; shape ``floor(extent / voxel) + 1`` per axis so
        the box's min and (up to one voxel) max are both voxel centres.
    """
    if not views and bounding_box is None:
        raise FusionGeometryError("fusion needs at least one view or a bounding_box")
    if voxel_size_xyz is None:
        if not views:
            raise FusionGeometryError("voxel_size is required when there are no views")
        vs = np.min([view_voxel_size(v) for v in views], axis=0)
        if isotropic:
            vs = np.full(3, vs.min())
    else:
        vs = np.asarray(voxel_size_xyz, dtype=np.float64)
    if vs.shape != (3,) or np.any(vs <= 0):
        raise FusionGeometryError(f"voxel_size must be three positive numbers, got {vs}")
    if bounding_box is None:
        boxes = [v.world_box() for v in views]
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
    else:
        lo = np.asarray(bounding_box[0], dtype=np.float64)
        hi = np.asarray(bounding_box[1], dtype=np.float64)
    # 1e-9 keeps an extent that is an exact multiple of the voxel from losing its last plane
    # to rounding.
    n_xyz = np.floor((hi - lo) / vs + 1e-9).astype(np.int64) + 1
    return OutputGrid(origin_xyz=lo, voxel_size_xyz=vs, shape_zyx=tuple(int(n) for n in n_xyz[::-1]))


def output_to_view(grid: OutputGrid, view: FusionView) -> np.ndarray:
    """Affine on (x, y, z, 1): output voxel -> view voxel (level 0)."""
    return tf.invert(view.view_to_world) @ grid.out_to_world()
