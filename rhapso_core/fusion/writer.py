"""Fuse blocks into a zarr array (level 0 of the OME-Zarr), resumably.

See :mod:`rhapso_core.fusion.resume` for the completion rule (per-block markers written
after the data).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from rhapso_core.fusion.blocks import aligned_block_size, group_blocks, plan_blocks, write_unit
from rhapso_core.fusion.fuse import finish_block, fuse_block, fuse_unit_float
from rhapso_core.fusion.geometry import FusionView, OutputGrid
from rhapso_core.fusion.params import FusionParams
from rhapso_core.fusion.read_plan import unit_chunk_reuse
from rhapso_core.fusion.resume import BlockMarkers, write_blocks
from rhapso_core.image_source import Box
from rhapso_core.io.chunk_reuse import reusing_chunks

__all__ = ["fuse_to_zarr"]


def _key(box) -> tuple:
    return tuple((int(a), int(b)) for a, b in box)


def fuse_to_zarr(
    views: Sequence[FusionView],
    grid: OutputGrid,
    params: FusionParams,
    out_array_level0: zarr.Array,
    blocks: Sequence[Box] | None = None,
    skip_existing: bool = True,
) -> list[Box]:
    """Fuse blocks of the output into a zarr array (level 0 of the OME-Zarr).

    Parameters
    ----------
    views : sequence of FusionView
    grid : OutputGrid
        Must have the array's shape.
    params : FusionParams
    out_array_level0 : zarr.Array
        Destination, shape ``grid.shape_zyx``, dtype ``params.output_dtype``.
    blocks : sequence of Box, optional
        The blocks this call owns (e.g. one work unit from
        :func:`rhapso_core.fusion.plan_work_units`); default: all blocks of
        ``params.block_size`` aligned to the array's chunks (or shards).
    skip_existing : bool, default True
        Skip blocks already marked done (see :class:`BlockMarkers`).

    Returns
    -------
    list of Box
        Blocks fused by this call.
    """
    arr = out_array_level0
    if tuple(arr.shape) != tuple(grid.shape_zyx):
        raise ValueError(
            f"output array shape {tuple(arr.shape)} differs from the fusion grid {grid.shape_zyx}"
        )
    if np.dtype(arr.dtype) != np.dtype(params.output_dtype):
        raise ValueError(
            f"output array dtype {arr.dtype} differs from output_dtype {params.output_dtype}"
        )
    if blocks is None:
        blocks = plan_blocks(grid.shape_zyx, params.block_size[::-1], write_unit(arr))
    # Decode each input chunk once per call, not once per block that reads it.
    markers = BlockMarkers(arr)
    todo = [b for b in blocks if not (skip_existing and markers.is_done(b))]
    if params.overlap_strategy == "content_based" and len(todo) > 1:
        # View by view over a work unit, so that each view's weights are filtered once
        # (fuse_unit_float). Blocks that share a view's box share its read too; the boxes
        # it reads apart overlap little, so no chunk reuse is planned. Given more blocks than
        # one unit (all of them, by default), one unit at a time: the accumulators alive at
        # once are a unit's, as rhapso_core.cost.fusion_unit_memory counts.
        bs = aligned_block_size(params.block_size[::-1], write_unit(arr))
        written: list[Box] = []
        for group in group_blocks(todo, [b * s for b, s in zip(bs, params.block_scale[::-1])]):
            accs = dict(zip((_key(b) for b in group), fuse_unit_float(group, grid, views, params)))
            written += write_blocks(arr, group, lambda box, accs=accs: finish_block(*accs.pop(_key(box)), params),
                                    skip_existing=False)
        return written
    reuse = unit_chunk_reuse(todo, grid, views, params) if len(todo) > 1 else None
    step = {_key(box): i for i, box in enumerate(todo)}

    def compute(box: Box) -> np.ndarray:
        if reuse is not None:
            reuse.step(step[_key(box)])
        return fuse_block(box, grid, views, params)

    with reusing_chunks(reuse):
        return write_blocks(arr, todo, compute, skip_existing=False)
