"""Resumable block writes into a zarr array.

Completion rule: a block is done only when its marker exists, and the marker is
written after the block's data. Markers are empty objects at
``<group>/.rhapso/blocks/<array name>/<z0-z1_y0-y1_x0-x1>`` in the array's own store
(``<group>`` is the array's parent path), so they travel with the output (local or
S3) and readers of the OME-Zarr ignore them. A killed run leaves at most some blocks
written without markers; a re-run recomputes exactly those (same bytes, as the
computations are deterministic) and skips the rest.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from rhapso_core.fusion.blocks import box_key, write_unit
from rhapso_core.image_source import Box
from rhapso_core.io.chunk_io import write_region

__all__ = ["BlockAlignmentError", "BlockMarkers", "check_aligned", "is_created", "mark_created", "write_blocks"]


class BlockAlignmentError(ValueError):
    """A block that would share a chunk (or shard) with another writer."""


class BlockMarkers:
    """Per-block completion markers stored next to a zarr array (see module docstring)."""

    def __init__(self, array: zarr.Array):
        self._store = array.store
        path = array.path.strip("/")
        parent, name = posixpath.split(path)
        self.prefix = posixpath.join(parent, ".rhapso", "blocks", name or "_root")

    def key(self, box: Box) -> str:
        return f"{self.prefix}/{box_key(box)}"

    def is_done(self, box: Box) -> bool:
        return bool(sync(self._store.exists(self.key(box))))

    def mark_done(self, box: Box) -> None:
        buf = default_buffer_prototype().buffer.from_bytes(b"")
        sync(self._store.set(self.key(box), buf))

    def clear(self, box: Box) -> None:
        sync(self._store.delete(self.key(box)))

    def clear_all(self) -> None:
        """Forget every block of this array (call when the array is (re)created)."""
        sync(self._store.delete_dir(self.prefix))


def _created_key(array: zarr.Array) -> str:
    parent, name = posixpath.split(array.path.strip("/"))
    return posixpath.join(parent, ".rhapso", "created", name or "_root")


def mark_created(array: zarr.Array) -> None:
    """Record that ``array`` was created whole (call after its creation and ``clear_all``).

    zarr writes an array's metadata as more than one document (v2: ``.zarray``, then
    ``.zattrs``): an array stopped between them opens, but is not what a clean run
    writes. A re-run takes an array for its own only with this marker.
    """
    buf = default_buffer_prototype().buffer.from_bytes(b"")
    sync(array.store.set(_created_key(array), buf))


def is_created(array: zarr.Array) -> bool:
    """True if ``array``'s creation finished (:func:`mark_created`)."""
    return bool(sync(array.store.exists(_created_key(array))))


def check_aligned(box: Box, shape_zyx: Sequence[int], unit_zyx: Sequence[int]) -> None:
    """Raise :class:`BlockAlignmentError` unless ``box`` covers whole write units."""
    for (a, b), n, u in zip(box, shape_zyx, unit_zyx):
        if a % u or (b % u and b != n) or b > n or a >= b:
            raise BlockAlignmentError(
                f"block {box} is not aligned to the array's write unit {tuple(unit_zyx)} "
                f"(shape {tuple(shape_zyx)}); two writers could touch one chunk"
            )


def write_blocks(
    array: zarr.Array,
    blocks: Sequence[Box],
    compute: Callable[[Box], np.ndarray],
    skip_existing: bool = True,
    mark: bool = True,
) -> list[Box]:
    """Compute and write blocks with one chunk-aligned write each, then mark them done.

    Parameters
    ----------
    array : zarr.Array
        Destination (z, y, x).
    blocks : sequence of Box
        Chunk- (or shard-) aligned boxes, e.g. from :func:`plan_blocks`.
    compute : callable Box -> ndarray
        Produces a block's data.
    skip_existing : bool, default True
        Skip blocks whose marker exists.
    mark : bool, default True
        Write a marker after each block (False for one-shot writes that never resume).

    Returns
    -------
    list of Box
        The blocks computed and written by this call.
    """
    markers = BlockMarkers(array)
    unit = write_unit(array)
    done = []
    for box in blocks:
        check_aligned(box, array.shape, unit)
        if skip_existing and markers.is_done(box):
            continue
        data = compute(box)
        write_region(array, tuple(slice(a, b) for a, b in box), data)
        if mark:
            markers.mark_done(box)
        done.append(box)
    return done
