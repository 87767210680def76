"""Chunk-aligned blocks: the unit a writer owns, so no two writers touch one chunk.

Boxes are half-open ``((z0, z1), (y0, y1), (x0, x1))`` in output voxels (z, y, x),
the same :data:`rhapso_core.image_source.Box` the image sources read.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from rhapso_core.image_source import Box

__all__ = ["plan_blocks", "group_blocks", "write_unit", "aligned_block_size", "box_key"]


def write_unit(array) -> tuple[int, int, int]:
    """The smallest region (z, y, x) one writer may own: a zarr array's shard, else chunk."""
    shards = getattr(array, "shards", None)
    return tuple(int(c) for c in (shards if shards is not None else array.chunks))  # type: ignore[return-value]


def aligned_block_size(block_size_zyx: Sequence[int], chunk_size_zyx: Sequence[int]) -> tuple[int, int, int]:
    """``block_size`` rounded up to a whole number of chunks per axis."""
    return tuple(  # type: ignore[return-value]
        int(-(-int(b) // int(c)) * int(c)) for b, c in zip(block_size_zyx, chunk_size_zyx)
    )


def plan_blocks(
    out_shape_zyx: Sequence[int], block_size_zyx: Sequence[int], chunk_size_zyx: Sequence[int]
) -> list[Box]:
    """Tile an array into chunk-aligned blocks.

    Parameters
    ----------
    out_shape_zyx : (3,) ints
        Array shape (z, y, x) in voxels.
    block_size_zyx : (3,) ints
        Requested block size (z, y, x) in voxels; rounded up to whole chunks.
    chunk_size_zyx : (3,) ints
        The array's write unit (z, y, x): chunk, or shard when sharded (:func:`write_unit`).

    Returns
    -------
    list of Box
        Blocks in C order (z slowest); every block starts on a chunk boundary and ends on
        one or at the array's edge, so each chunk belongs to exactly one block.
    """
    bs = aligned_block_size(block_size_zyx, chunk_size_zyx)
    starts = [range(0, int(n), b) for n, b in zip(out_shape_zyx, bs)]
    out = []
    for z0, y0, x0 in itertools.product(*starts):
        out.append(
            tuple(
                (int(a), int(min(a + b, n)))
                for a, b, n in zip((z0, y0, x0), bs, out_shape_zyx)
            )
        )
    return out  # type: ignore[return-value]


def group_blocks(blocks: Sequence[Box], unit_size_zyx: Sequence[int]) -> list[list[Box]]:
    """Group blocks into work units of ``unit_size_zyx`` voxels (block_size * block_scale).

    Each block goes to the unit containing its start corner; units keep C order.
    """
    groups: dict[tuple[int, ...], list[Box]] = {}
    for b in blocks:
        key = tuple(int(a) // int(u) for (a, _), u in zip(b, unit_size_zyx))
        groups.setdefault(key, []).append(b)
    return [groups[k] for k in sorted(groups)]


def box_key(box: Box) -> str:
    """A stable name for a block: ``z0-z1_y0-y1_x0-x1``."""
    return "_".join(f"{a}-{b}" for a, b in box)
