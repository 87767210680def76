"""Mean downsampling of one pyramid level into the next, block-wise and resumable.

Geometry (matches :mod:`rhapso_core.image_source`): level ``l + 1`` voxel ``i`` is the
mean of level ``l`` voxels ``[f * i, f * i + f)`` per axis, so its centre sits at
``f * i + (f - 1) / 2``. Edge voxels are not dropped: the next level's shape is
``ceil(n / f)`` and a partial window at the far edge is the mean of the voxels present.
Integer outputs are rounded half to even.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from rhapso_core.fusion.blocks import plan_blocks, write_unit
from rhapso_core.fusion.resume import write_blocks
from rhapso_core.image_source import Box
from rhapso_core.io.downsample import downsample_mean
from rhapso_core.multiscale.chunked import downsample_box

__all__ = [
    "downsampled_shape",
    "mean_downsample",
    "source_box_for",
    "plan_level_blocks",
    "downsample_level",
]


def downsampled_shape(shape_zyx: Sequence[int], factor_zyx: Sequence[int]) -> tuple[int, int, int]:
    """``ceil(shape / factor)`` per axis."""
    return tuple(-(-int(n) // int(f)) for n, f in zip(shape_zyx, factor_zyx))  # type: ignore[return-value]


def mean_downsample(block: np.ndarray, factor_zyx: Sequence[int], dtype=None) -> np.ndarray:
    """Mean over ``factor``-sized windows; a partial window at the far edge is averaged
    over the voxels present (:func:`rhapso_core.io.downsample.downsample_mean`).

    Parameters
    ----------
    block : (z, y, x) ndarray
        Input, its origin on a window boundary.
    factor_zyx : (3,) ints
        Window size per axis (>= 1).
    dtype : numpy dtype, optional
        Output type (default: the input's); integers are rounded half to even and clipped
        to the type's range.

    Returns
    -------
    ndarray of shape ``ceil(block.shape / factor)``
    """
    dtype = np.dtype(dtype or block.dtype)
    if dtype == block.dtype:
        return downsample_mean(block, factor_zyx)
    mean = downsample_mean(np.asarray(block, dtype=np.float64), factor_zyx)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(dtype)


def source_box_for(dst_box: Box, factor_zyx: Sequence[int], src_shape_zyx: Sequence[int]) -> Box:
    """The source-level box whose windows make up ``dst_box``."""
    return tuple(  # type: ignore[return-value]
        (int(a) * int(f), min(int(b) * int(f), int(n)))
        for (a, b), f, n in zip(dst_box, factor_zyx, src_shape_zyx)
    )


def plan_level_blocks(
    dst_shape_zyx: Sequence[int],
    dst_unit_zyx: Sequence[int],
    factor_zyx: Sequence[int],
    itemsize: int,
    target_block_size_mb: float = 256.0,
) -> list[Box]:
    """Whole-chunk destination blocks whose source region is about ``target_block_size_mb``.

    Parameters
    ----------
    dst_shape_zyx : (3,) ints
        Shape of the level being written.
    dst_unit_zyx : (3,) ints
        Its write unit (chunk, or shard), see :func:`rhapso_core.fusion.blocks.write_unit`.
    factor_zyx : (3,) ints
        Downsampling factor from the source level.
    itemsize : int
        Bytes per source voxel.
    target_block_size_mb : float, default 256
        Approximate source bytes read per block (MiB); at least one write unit.
    """
    unit = np.asarray(dst_unit_zyx, np.int64)
    per_unit = float(np.prod(unit) * np.prod(factor_zyx) * itemsize)
    n = max(1.0, target_block_size_mb * 2**20 / per_unit)
    # Grow the block evenly on all axes, never past the level's extent.
    grid = np.ceil(np.asarray(dst_shape_zyx) / unit).astype(np.int64)
    mult = np.ones(3, np.int64)
    while True:
        grown = False
        for ax in (2, 1, 0):
            trial = mult.copy()
            trial[ax] += 1
            if trial[ax] <= grid[ax] and np.prod(trial) <= n:
                mult, grown = trial, True
        if not grown:
            break
    return plan_blocks(dst_shape_zyx, unit * mult, unit)


def downsample_level(
    src: zarr.Array | np.ndarray,
    dst: zarr.Array,
    factor_zyx: Sequence[int],
    blocks: Sequence[Box] | None = None,
    skip_existing: bool = True,
    target_block_size_mb: float = 256.0,
    mark: bool = True,
) -> list[Box]:
    """Compute ``dst`` (level ``l + 1``) from ``src`` (level ``l``) by mean downsampling.

    Parameters
    ----------
    src : zarr.Array or ndarray (z, y, x)
        The finer level.
    dst : zarr.Array (z, y, x)
        The coarser level, shape ``downsampled_shape(src.shape, factor)``.
    factor_zyx : (3,) ints
    blocks : sequence of Box, optional
        Destination blocks this call owns (whole chunks/shards of ``dst``); default:
        :func:`plan_level_blocks`.
    skip_existing : bool, default True
        Skip blocks already marked done (markers as in
        :class:`rhapso_core.fusion.resume.BlockMarkers`).
    target_block_size_mb : float, default 256
        Used only when ``blocks`` is None.
    mark : bool, default True
        Leave per-block completion markers (False for one-shot pyramids, e.g. input tiles).

    Returns
    -------
    list of Box
        Destination blocks written by this call.
    """
    want = downsampled_shape(src.shape, factor_zyx)
    if tuple(dst.shape) != want:
        raise ValueError(
            f"destination level shape {tuple(dst.shape)} must be ceil({tuple(src.shape)} / "
            f"{tuple(factor_zyx)}) = {want}"
        )
    if blocks is None:
        blocks = plan_level_blocks(
            dst.shape, write_unit(dst), factor_zyx, np.dtype(src.dtype).itemsize,
            target_block_size_mb,
        )

    def compute(box: Box) -> np.ndarray:
        sb = source_box_for(box, factor_zyx, src.shape)
        return downsample_box(src, sb, factor_zyx, lambda data, f: mean_downsample(data, f, dst.dtype))

    return write_blocks(dst, blocks, compute, skip_existing, mark=mark)
