"""Add pyramid levels below an existing OME-Zarr level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import zarr

from rhapso_core.fusion.blocks import write_unit
from rhapso_core.fusion.resume import BlockMarkers, is_created, mark_created
from rhapso_core.image_source import Box
from rhapso_core.io.slots import SpaceSlot, space_slot
from rhapso_core.multiscale.downsample import downsample_level, downsampled_shape, plan_level_blocks
from rhapso_core.multiscale.metadata import (
    _multiscale_entry,
    add_levels_to_attrs,
    add_levels_to_group,
)
from rhapso_core.multiscale.params import MultiscaleParams

__all__ = [
    "level_plan", "create_level_array", "LevelWork", "prepare_levels", "downsample_blocks", "finish_levels",
    "build_pyramid",
]


def level_plan(
    base_path: str, base_shape_zyx: Sequence[int], params: MultiscaleParams
) -> list[tuple[str, tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]]:
    """The levels to add: ``(path, shape_zyx, factor_from_previous_zyx, factor_from_base_zyx)``.

    Paths continue the base path's integer name (``"0"`` -> ``"1"``, ``"2"``, ...). An axis
    that is already one voxel long is not downsampled (factor 1): a single-plane image
    keeps one plane of the base's z scale at every level instead of claiming a coarser one.
    """
    try:
        first = int(base_path.rsplit("/", 1)[-1])
    except ValueError:
        raise ValueError(f"base level path {base_path!r} is not an integer name") from None
    prefix = base_path.rsplit("/", 1)[0] + "/" if "/" in base_path else ""
    out = []
    shape = tuple(int(n) for n in base_shape_zyx)
    cum = np.ones(3, np.int64)
    for k, f in enumerate(params.level_factors(), start=1):
        f = tuple(1 if n == 1 else int(v) for n, v in zip(shape, f))
        shape = downsampled_shape(shape, f)
        cum = cum * np.asarray(f)
        out.append((f"{prefix}{first + k}", shape, tuple(f), tuple(int(c) for c in cum)))
    return out  # type: ignore[return-value]


def create_level_array(
    group: zarr.Group, path: str, shape_zyx: Sequence[int], chunks_zyx: Sequence[int], like: zarr.Array
) -> zarr.Array:
    """Create (or overwrite) a level with the same dtype, codecs, fill value and chunk-key
    encoding as ``like``; chunks are clipped to the shape."""
    chunks = tuple(int(min(c, max(n, 1))) for c, n in zip(chunks_zyx, shape_zyx))
    kw: dict = dict(
        shape=tuple(int(n) for n in shape_zyx), chunks=chunks, dtype=like.dtype,
        compressors=like.compressors, filters=like.filters, fill_value=like.fill_value,
        overwrite=True,
    )
    if like.metadata.zarr_format == 2:
        kw["chunk_key_encoding"] = {"name": "v2", "separator": like.metadata.dimension_separator}
    else:
        kw["chunk_key_encoding"] = like.metadata.chunk_key_encoding
        kw["serializer"] = like.serializer
        if getattr(like.metadata, "dimension_names", None):
            kw["dimension_names"] = like.metadata.dimension_names
    return group.create_array(path, **kw)


@dataclass(frozen=True)
class LevelWork:
    """One level to compute: where it reads and writes, by what factor, in which blocks."""

    src_path: str
    dst_path: str
    factor_zyx: tuple[int, int, int]
    factor_from_base_zyx: tuple[int, int, int]
    blocks: tuple[Box, ...]


def prepare_levels(group: zarr.Group, params: MultiscaleParams, skip_existing: bool = True) -> tuple[str, list[LevelWork]]:
    """Create the level arrays (keeping existing ones of the right shape, so a re-run resumes
    from the block markers) and plan each level's whole-chunk blocks.

    Returns the base level's path and the levels in order; level ``k`` reads level ``k - 1``,
    so a level's blocks may run in parallel once the previous level is complete.
    """
    datasets = _multiscale_entry(group.attrs.asdict())["datasets"]
    if params.base_level >= len(datasets):
        raise ValueError(
            f"base_level {params.base_level} out of range: the image has {len(datasets)} levels"
        )
    base_path = str(datasets[params.base_level]["path"])
    src = group[base_path]
    # A t, c, z, y, x image keeps its t and c extents; every level is one (t, c) slot deep per chunk.
    lead = tuple(int(n) for n in src.shape[:-3])
    work = []
    src_path = base_path
    for path, shape, f, cum in level_plan(base_path, src.shape[-3:], params):
        dst = group.get(path)
        if not (isinstance(dst, zarr.Array) and tuple(dst.shape) == lead + tuple(shape) and skip_existing
                and is_created(dst)):
            # Not there, another shape, or its creation was stopped: no block of it can
            # have been computed (blocks start once every level is made), so it is made again.
            dst = create_level_array(group, path, lead + tuple(shape),
                                     (1,) * len(lead) + tuple(params.multiscale_chunk_size), src)
            for slot in _slots(dst):
                BlockMarkers(slot).clear_all()
            mark_created(dst)
        blocks = plan_level_blocks(
            shape, write_unit(space_slot(dst)), f, np.dtype(src.dtype).itemsize, params.target_block_size_mb
        )
        work.append(LevelWork(src_path, path, tuple(f), tuple(cum), tuple(blocks)))
        src_path, src = path, dst
    return base_path, work


def downsample_blocks(group: zarr.Group, level: LevelWork, blocks=None, skip_existing: bool = True) -> list[Box]:
    """Compute some blocks (default: all) of one level from the level above it (every (t, c) slot)."""
    src, dst = group[level.src_path], group[level.dst_path]
    done: list[Box] = []
    for s_slot, d_slot in zip(_slots(src), _slots(dst)):
        done += downsample_level(s_slot, d_slot, level.factor_zyx,
                                 blocks=list(level.blocks if blocks is None else blocks), skip_existing=skip_existing)
    return done


def _slots(array) -> list:
    """The (z, y, x) arrays of a level: itself when 3-D, else one per (t, c)."""
    if array.ndim == 3:
        return [array]
    return [SpaceSlot(array, t, c) for t in range(array.shape[0]) for c in range(array.shape[1])]


def finish_levels(group: zarr.Group, base_path: str, work: Sequence[LevelWork]) -> list[str]:
    """Record the computed levels in the NGFF metadata (once, after all are written)."""
    paths = [w.dst_path for w in work]
    factors = [w.factor_from_base_zyx for w in work]
    # Levels made up front by rhapso_core.io.create_ome_zarr are already listed; rewrite
    # the metadata only when it changes (the io writer writes it once, atomically).
    before = group.attrs.asdict()
    if add_levels_to_attrs(before, base_path, paths, factors) != before:
        add_levels_to_group(group, base_path, paths, factors)
    return paths


def build_pyramid(
    group: zarr.Group, params: MultiscaleParams, skip_existing: bool = True
) -> list[str]:
    """Compute levels ``base_level + 1 ..`` block-wise and record them in the NGFF metadata.

    In-process composition of :func:`prepare_levels`, :func:`downsample_blocks` per level
    and :func:`finish_levels` (the fusion flow runs the same steps as parallel tasks).

    Parameters
    ----------
    group : zarr.Group
        OME-Zarr image group whose ``multiscales`` lists the base level.
    params : MultiscaleParams
    skip_existing : bool, default True

    Returns
    -------
    list of str
        Paths of the added levels.
    """
    base_path, work = prepare_levels(group, params, skip_existing)
    for level in work:
        downsample_blocks(group, level, skip_existing=skip_existing)
    return finish_levels(group, base_path, work)
