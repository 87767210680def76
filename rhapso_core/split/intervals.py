"""Cutting a view into overlapping sub-view boxes (BigStitcher's fixed-overlap distribution).

Per axis, sub-views of size ``s`` start every ``s - o`` voxels (``o`` the overlap)
from voxel 0, the last one ending at the view's last voxel. BigStitcher
(``SplittingTools.distributeIntervalsFixedOverlap``) additionally keeps sizes and
offsets multiples of a *step* (the coarsest pyramid factor, so each pyramid level
of a sub-view is an exact crop of the parent's level) and can "optimize" the size
so the last sub-view is not a thin remainder. Here optimisation is done in closed
form: with ``n`` the fewest sub-views of the target size that cover the axis, the
size becomes the smallest multiple of the step for which ``n`` sub-views still
cover it, which makes every sub-view (the last included) about ``(L - o) / n + o``.

Boxes are inclusive ``[min, max]`` in full-resolution view voxels, x y z, and are
listed with x varying fastest, then y, then z (BigStitcher's order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SplitGeometryError", "AxisPlan", "snap_to_step", "split_axis", "axis_intervals", "distribute_intervals"]


class SplitGeometryError(ValueError):
    """Split sizes that cannot work for the data (message names the parameter and axis)."""


@dataclass(frozen=True)
class AxisPlan:
    """Sub-view size and overlap actually used along one axis (view voxels)."""

    size: int
    overlap: int
    step: int


def _ceil_to(value: int, step: int) -> int:
    return -(-int(value) // int(step)) * int(step)


def snap_to_step(target: int, overlap: int, step: int, axis: int = 0) -> AxisPlan:
    """Make a target size and overlap legal for a step (BigStitcher's Split_Views rule).

    The size goes to the nearest multiple of ``step`` (at least one step), the overlap
    up to the next multiple, so offsets ``k * (size - overlap)`` are multiples of the step.

    Raises
    ------
    SplitGeometryError
        If the snapped overlap is not smaller than the snapped size.
    """
    if step < 1:
        raise SplitGeometryError(f"min_step_size[{axis}]={step} must be >= 1")
    size = max(step, int(round(target / step)) * step)
    ov = _ceil_to(overlap, step)
    if ov >= size:
        raise SplitGeometryError(
            f"target_overlap[{axis}]={overlap} rounds up to {ov} voxels, not smaller than target_image_size[{axis}]"
            f"={target} rounded to {size} (multiples of the step {step}); raise target_image_size or lower the overlap"
        )
    return AxisPlan(size, ov, step)


def split_axis(length: int, size: int, overlap: int, step: int = 1, optimize: bool = True) -> list[tuple[int, int]]:
    """Inclusive ``(min, max)`` intervals covering ``[0, length - 1]``.

    Parameters
    ----------
    length : int
        Voxels along the axis (>= 1).
    size : int
        Sub-view size (voxels); a multiple of ``step``, larger than ``overlap``.
    overlap : int
        Voxels shared by neighbouring intervals; a multiple of ``step``.
    step : int, default 1
        Offsets and the sizes of all intervals but the last are multiples of it.
    optimize : bool, default True
        Shrink the size (in steps) while the same number of intervals still covers
        the axis, so the last interval is about as large as the others.

    Returns
    -------
    list of (int, int)
        Intervals from low to high; consecutive ones share exactly ``overlap`` voxels
        and the last ends at ``length - 1``. One interval if ``length <= size``.
    """
    length, size, overlap, step = int(length), int(size), int(overlap), int(step)
    if length < 1:
        raise SplitGeometryError(f"cannot split an axis of {length} voxels")
    if size % step or overlap % step or overlap >= size or overlap < 0:
        raise SplitGeometryError(
            f"size {size} and overlap {overlap} must be multiples of the step {step} with 0 <= overlap < size"
        )
    if length <= size:
        return [(0, length - 1)]
    n = math.ceil((length - overlap) / (size - overlap))
    if optimize:
        # The smallest step-multiple size for which n intervals still reach the end;
        # never above the requested size, so n stays the fewest intervals.
        size = min(size, _ceil_to(math.ceil((length - overlap) / n) + overlap, step))
    stride = size - overlap
    out = [(k * stride, min(k * stride + size - 1, length - 1)) for k in range(n)]
    assert out[-1][1] == length - 1 and (n == 1 or out[-2][1] < length - 1)
    return out


def axis_intervals(
    size_xyz: Sequence[int],
    target_xyz: Sequence[int],
    overlap_xyz: Sequence[int],
    step_xyz: Sequence[int] = (1, 1, 1),
    optimize: bool = True,
) -> list[list[tuple[int, int]]]:
    """The intervals along x, y and z (see :func:`split_axis`), sizes snapped to the step."""
    if len(size_xyz) != 3 or len(target_xyz) != 3 or len(overlap_xyz) != 3 or len(step_xyz) != 3:
        raise SplitGeometryError("size, target size, overlap and step need 3 values each (x y z)")
    out = []
    for axis in range(3):
        plan = snap_to_step(int(target_xyz[axis]), int(overlap_xyz[axis]), int(step_xyz[axis]), axis)
        out.append(split_axis(int(size_xyz[axis]), plan.size, plan.overlap, plan.step, optimize))
    return out


def distribute_intervals(
    size_xyz: Sequence[int],
    target_xyz: Sequence[int],
    overlap_xyz: Sequence[int],
    step_xyz: Sequence[int] = (1, 1, 1),
    optimize: bool = True,
) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Sub-view boxes of a view: the product of the per-axis intervals.

    Parameters
    ----------
    size_xyz : 3 ints
        The view's size (view voxels, x y z).
    target_xyz, overlap_xyz : 3 ints
        Requested sub-view size and overlap (view voxels); snapped to the step by
        :func:`snap_to_step`.
    step_xyz : 3 ints, default (1, 1, 1)
        Alignment of offsets and sizes (view voxels), normally the coarsest pyramid factor.
    optimize : bool, default True
        See :func:`split_axis`.

    Returns
    -------
    list of (min_xyz, max_xyz)
        Inclusive boxes, x varying fastest, then y, then z.
    """
    per_axis = axis_intervals(size_xyz, target_xyz, overlap_xyz, step_xyz, optimize)
    boxes = []
    for iz in per_axis[2]:
        for iy in per_axis[1]:
            for ix in per_axis[0]:
                boxes.append(((ix[0], iy[0], iz[0]), (ix[1], iy[1], iz[1])))
    return boxes
