"""Fuse one output block from the views that overlap it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.fusion.content import content_weights, grow_box, halo_voxels, level_sigmas
from rhapso_core.fusion.geometry import FusionView, OutputGrid, output_to_view, view_voxel_size
from rhapso_core.fusion.kernels import COVER_EPS, MODES, finalize
from rhapso_core.fusion.row_kernels import accumulate_view_rows
from rhapso_core.fusion.params import FusionParams
from rhapso_core.image_source import Box, box_is_empty, clip_box

__all__ = ["fuse_block", "fuse_block_float", "fuse_unit_float", "finish_block", "choose_level", "source_box", "view_box"]

_DTYPE_MAX = {"uint8": 255.0, "uint16": 65535.0}
# Stand-in for the content weights in modes that do not use them (the kernel ignores it).
_NO_WEIGHTS = np.zeros((1, 1, 1), np.float32)
# The sampling kernel; kernels.accumulate_view is the reference it must match bit for bit
# (tests swap it in here to compare).
_accumulate = accumulate_view_rows


def choose_level(view: FusionView, grid: OutputGrid) -> int:
    """The coarsest pyramid level whose factor is <= output voxel / view voxel on every axis.

    Parameters
    ----------
    view : FusionView
    grid : OutputGrid

    Returns
    -------
    int
        Level index (0 when no coarser level fits, e.g. output finer than the view).
    """
    ratio_xyz = grid.voxel_size_xyz / view_voxel_size(view)
    best, best_prod = 0, 1
    for lv in range(view.source.n_levels):
        f_xyz = np.asarray(view.source.level_factors(lv)[::-1], dtype=np.float64)
        if np.all(f_xyz <= ratio_xyz * (1 + 1e-6)) and np.prod(f_xyz) > best_prod:
            best, best_prod = lv, np.prod(f_xyz)
    return best


def _block_view_range(out_box_zyx: Box, m_out_to_view: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """View-voxel (x, y, z) bounding box of the block's output voxel centres."""
    (k0, k1), (j0, j1), (i0, i1) = out_box_zyx
    corners = tf.box_corners([i0, j0, k0], [i1 - 1, j1 - 1, k1 - 1])
    pts = tf.apply(m_out_to_view, corners)
    return pts.min(axis=0), pts.max(axis=0)


def source_box(
    out_box_zyx: Box, grid: OutputGrid, view: FusionView, level: int
) -> Box | None:
    """Level-voxel box (z, y, x) a block needs from a view, or None if they do not overlap.

    The block's corners are mapped output -> view -> level; the box is padded by one
    voxel for trilinear interpolation (and rounding) and clipped to the level.
    """
    m = output_to_view(grid, view)
    vmin, vmax = _block_view_range(out_box_zyx, m)
    size = np.asarray(view.size_xyz, dtype=np.float64)
    if np.any(vmax < -COVER_EPS) or np.any(vmin > size - 1 + COVER_EPS):
        return None
    f = np.asarray(view.source.level_factors(level)[::-1], dtype=np.float64)
    lmin = (vmin - (f - 1) / 2) / f
    lmax = (vmax - (f - 1) / 2) / f
    lo = np.floor(lmin).astype(np.int64) - 1
    hi = np.ceil(lmax).astype(np.int64) + 2
    box = clip_box(tuple(zip(lo[::-1], hi[::-1])), view.source.level_shape(level))  # type: ignore[arg-type]
    if box_is_empty(box):
        return None
    return box


def _view_pixels(view: FusionView, level: int, box: Box) -> np.ndarray:
    """The view's level pixels in ``box``, as the kernel samples them (C order, a dtype the
    kernel takes, the view's intensity map applied)."""
    src = np.ascontiguousarray(view.source.read(box, level))
    if src.dtype.kind not in "uif" or src.dtype == np.float16:
        src = src.astype(np.float32)
    if view.intensity is not None:  # the view's intensity map, before blending
        src = view.intensity.map_box(src, [a for a, _ in box], view.source.level_factors(level))
    return np.ascontiguousarray(src)


def _sample_view(acc_a, acc_b, out_box_zyx: Box, grid: OutputGrid, view: FusionView, level: int,
                 box: Box, src: np.ndarray, weights: np.ndarray, params: FusionParams) -> None:
    """Accumulate one view, whose pixels (and content weights) on level ``box`` are given,
    into one block's accumulators."""
    m = output_to_view(grid, view)[:3, :]
    _accumulate(
        acc_a, acc_b, np.array([a for a, _ in out_box_zyx], np.int64), np.ascontiguousarray(m),
        np.asarray(view.size_xyz, np.float64), src,
        np.array([a for a, _ in box], np.int64),
        np.asarray(view.source.level_factors(level)[::-1], np.float64),
        np.asarray(view.source.level_shape(level), np.int64),
        np.asarray(params.blending_range, np.float64), np.asarray(params.blending_border, np.float64),
        MODES[params.overlap_strategy], weights,
    )


def view_box(out_box_zyx: Box, grid: OutputGrid, view: FusionView, level: int,
              params: FusionParams) -> Box | None:
    """The level box a block reads from a view: :func:`source_box`, grown by the content
    filters' halo for ``content_based``."""
    box = source_box(out_box_zyx, grid, view, level)
    if box is not None and params.overlap_strategy == "content_based":
        s1, s2 = level_sigmas(view, level, params)
        box = grow_box(box, halo_voxels(s1, s2), view.source.level_shape(level))
    return box


def fuse_block_float(
    out_box_zyx: Box, grid: OutputGrid, views: Sequence[FusionView], params: FusionParams
) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate all views into one block; returns ``(acc_a, acc_b)`` float32 (z, y, x).

    See :func:`rhapso_core.fusion.kernels.finalize` for the meaning; ``acc_b > 0``
    marks voxels covered by at least one view. For ``content_based`` each view's box is
    grown by the filters' halo (:mod:`rhapso_core.fusion.content`) and its weights are
    computed on it, so a block needs about ``(block + 6 (sigma1 + sigma2))^3`` level voxels
    of source (plus two float32 copies) per view at a time.
    """
    shape = tuple(int(b - a) for a, b in out_box_zyx)
    acc_a = np.zeros(shape, np.float32)
    acc_b = np.zeros(shape, np.float32)
    if 0 in shape:
        return acc_a, acc_b
    for view in sorted(views, key=lambda v: v.view_id):
        level = choose_level(view, grid)
        box = view_box(out_box_zyx, grid, view, level, params)
        if box is None:
            continue
        src = _view_pixels(view, level, box)
        weights = _NO_WEIGHTS
        if params.overlap_strategy == "content_based":
            weights = np.ascontiguousarray(content_weights(src, *level_sigmas(view, level, params)))
        _sample_view(acc_a, acc_b, out_box_zyx, grid, view, level, box, src, weights, params)
        del src, weights
    return acc_a, acc_b


def _voxels(box: Box) -> int:
    n = 1
    for a, b in box:
        n *= int(b) - int(a)
    return n


def fuse_unit_float(
    boxes: Sequence[Box], grid: OutputGrid, views: Sequence[FusionView], params: FusionParams
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``content_based``: the accumulators of several blocks (a work unit), each view's
    weights filtered once for all of them where that is less filtering.

    A block's content weights need its view box grown by the filters' halo, which on
    blocks of 256 voxels and BigStitcher's sigmas (halo 180) is 14 times the block: filtered
    block by block, the blocks of a unit filter their common parts again and again. Here
    the views come one at a time, in ascending ``view_id`` (each block's order in
    :func:`fuse_block_float`); a view whose blocks' grown boxes have a bounding box smaller
    than their sum is read and filtered once on that box, and every block samples it there
    (views without an intensity map; see below).
    The weights at the voxels a block samples come from taps inside its own grown box
    (:mod:`rhapso_core.fusion.content`), and the kernel indexes pixels by level voxel, not
    by box, so every accumulator is bit-identical to :func:`fuse_block_float`'s
    (``tests/fusion/test_read_plan.py``, on pyramid level 1 too; an intensity map's value at a
    voxel does not depend on the box either: :meth:`ViewIntensity.map_box`).
    Memory: the unit's accumulators (8 bytes per output voxel) and one view's box at a
    time (:func:`rhapso_core.cost.fusion_unit_memory`).

    Returns
    -------
    list of (acc_a, acc_b)
        Per box, as :func:`fuse_block_float` returns them.
    """
    accs = [(np.zeros(tuple(int(b - a) for a, b in box), np.float32),
             np.zeros(tuple(int(b - a) for a, b in box), np.float32)) for box in boxes]
    live = [i for i, box in enumerate(boxes) if all(b > a for a, b in box)]
    for view in sorted(views, key=lambda v: v.view_id):
        level = choose_level(view, grid)
        reads = [(i, vb) for i in live if (vb := view_box(boxes[i], grid, view, level, params)) is not None]
        if not reads:
            continue
        union = tuple((min(vb[k][0] for _, vb in reads), max(vb[k][1] for _, vb in reads)) for k in range(3))
        shared = len(reads) > 1 and _voxels(union) < sum(_voxels(vb) for _, vb in reads)
        groups = [(union, [i for i, _ in reads])] if shared else [(vb, [i]) for i, vb in reads]
        for box, users in groups:
            src = _view_pixels(view, level, box)
            weights = _NO_WEIGHTS
            if params.overlap_strategy == "content_based":
                weights = np.ascontiguousarray(content_weights(src, *level_sigmas(view, level, params)))
            for i in users:
                _sample_view(*accs[i], boxes[i], grid, view, level, box, src, weights, params)
            del src, weights
    return accs


def finish_block(acc_a: np.ndarray, acc_b: np.ndarray, params: FusionParams) -> np.ndarray:
    """A block's accumulators as its fused voxels (``params.output_dtype``; 0 where no view)."""
    dtype = np.dtype(params.output_dtype)
    out = np.empty(acc_a.shape, dtype)
    lo, hi = (float(v) for v in params.intensity_range)
    finalize(np.ascontiguousarray(acc_a), np.ascontiguousarray(acc_b), out, MODES[params.overlap_strategy], lo, hi,
             _DTYPE_MAX.get(params.output_dtype, 0.0), dtype.kind == "u")
    return out


def fuse_block(
    out_box_zyx: Box, grid: OutputGrid, views: Sequence[FusionView], params: FusionParams
) -> np.ndarray:
    """Fuse the views into one output block.

    Parameters
    ----------
    out_box_zyx : Box
        Half-open output voxel box ((z0, z1), (y0, y1), (x0, x1)).
    grid : OutputGrid
        Output geometry (origin, voxel size, shape).
    views : sequence of FusionView
        All views (those not overlapping the block are skipped without reading);
        combined in ascending ``view_id`` order.
    params : FusionParams
        ``overlap_strategy``, ``blending_range``, ``blending_border``,
        ``output_dtype``, ``intensity_range`` are used, and for ``content_based``
        ``content_sigma1``, ``content_sigma2``, ``content_adjust_anisotropy``.

    Returns
    -------
    ndarray (z, y, x) of ``params.output_dtype``
        Voxels covered by no view are 0. Each view is read once, from the pyramid
        level matching the output resolution (:func:`choose_level`), only the sub-box
        the block needs (:func:`source_box`), and sampled trilinearly.
    """
    return finish_block(*fuse_block_float(out_box_zyx, grid, views, params), params)
