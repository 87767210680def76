"""Add pyramid levels below an existing OME-Zarr level."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from rhapso_core.fusion.blocks import write_unit
from rhapso_core.fusion.resume import BlockMarkers
from rhapso_core.multiscale.downsample import downsample_level, downsampled_shape, plan_level_blocks
from rhapso_core.multiscale.metadata import (
    _multiscale_entry,
    add_levels_to_attrs,
    add_levels_to_group,
)
from rhapso_core.multiscale.params import MultiscaleParams

__all__ = ["level_plan", "create_level_array", "build_pyramid"]


def level_plan(
    base_path: str, base_shape_zyx: Sequence[int], params: MultiscaleParams
) -> list[tuple[str, tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]]:
    """The levels to add: ``(path, shape_zyx, factor_from_previous_zyx, factor_from_base_zyx)``.

    Paths continue the base path's integer name (``"0"`` -> ``"1"``, ``"2"``, ...).
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


def build_pyramid(
    group: zarr.Group, params: MultiscaleParams, skip_existing: bool = True
) -> list[str]:
    """Compute levels ``base_level + 1 ..`` block-wise and record them in the NGFF metadata.

    Each level is computed from the previous one (:func:`downsample_level`) with whole-chunk
    writes; a level array that already exists with the right shape is kept, so a re-run
    resumes from the block markers. The metadata is updated once all levels are written.

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
    datasets = _multiscale_entry(group.attrs.asdict())["datasets"]
    if params.base_level >= len(datasets):
        raise ValueError(
            f"base_level {params.base_level} out of range: the image has {len(datasets)} levels"
        )
    base_path = str(datasets[params.base_level]["path"])
    src = group[base_path]
    plan = level_plan(base_path, src.shape, params)
    paths = []
    for path, shape, f, _ in plan:
        dst = group.get(path)
        if not (isinstance(dst, zarr.Array) and tuple(dst.shape) == shape and skip_existing):
            dst = create_level_array(group, path, shape, params.multiscale_chunk_size, src)
            BlockMarkers(dst).clear_all()
        blocks = plan_level_blocks(
            shape, write_unit(dst), f, np.dtype(src.dtype).itemsize, params.target_block_size_mb
        )
        downsample_level(src, dst, f, blocks=blocks, skip_existing=skip_existing)
        paths.append(path)
        src = dst
    # Levels made up front by rhapso_core.io.create_ome_zarr are already listed; rewrite
    # the metadata only when it changes (the io writer writes it once, atomically).
    before = group.attrs.asdict()
    if add_levels_to_attrs(before, base_path, paths, [p[3] for p in plan]) != before:
        add_levels_to_group(group, base_path, paths, [p[3] for p in plan])
    return paths
