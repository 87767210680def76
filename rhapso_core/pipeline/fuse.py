"""Fusion over a dataset: plan the output, fuse one work unit, build the pyramid."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import zarr

from rhapso_core.fusion import FusionParams, FusionView, OutputGrid, fuse_to_zarr, make_output_grid, plan_work_units, write_unit
from rhapso_core.io import ImageIOError, OmeZarrWriter, create_ome_zarr, read_root
from rhapso_core.io.uri import holds_data
from rhapso_core.multiscale.pyramid import LevelWork, build_pyramid, downsample_blocks, finish_levels, prepare_levels
from rhapso_core.pipeline.dataset import DatasetError, load_dataset, open_view, view_geometry
from rhapso_core.pipeline.fused_channels import write_channel_metadata
from rhapso_core.pipeline.illumination import choose_illuminations
from rhapso_core.pipeline.view_selection import ViewSelection, ViewSelectionError, view_attributes
from rhapso_core.pipeline.view_selection import select_views as choose_views
from rhapso_core.spimdata import SpimData, ViewId

GRID_ATTR = "rhapso_fusion_grid"


@dataclass(frozen=True)
class FusionSlot:
    """One fused image of the output: a timepoint and a channel, and the views fused into it.

    ``t_index`` / ``c_index`` are its position on the output's t and c axes (the rank of
    ``timepoint`` / ``channel`` among the fused ones, as BigStitcher-Spark numbers them).
    """

    t_index: int
    c_index: int
    timepoint: int
    channel: int
    views: tuple[ViewId, ...]


@dataclass(frozen=True)
class FusionPlan:
    """The output grid (world frame, x y z), the fused images (slots) and the work units
    (lists of zyx boxes, the same in every slot)."""

    out_uri: str
    origin_xyz: tuple[float, float, float]
    voxel_size_xyz: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    units: tuple[tuple, ...]
    views: tuple[ViewId, ...]
    slots: tuple[FusionSlot, ...] = ()

    @property
    def grid(self) -> OutputGrid:
        return OutputGrid(np.asarray(self.origin_xyz), np.asarray(self.voxel_size_xyz), self.shape_zyx)


def select_views(sd: SpimData, channels=None, timepoints=None, illuminations=None, selection=None) -> list[ViewId]:
    """Views to fuse: ``selection`` (a :class:`ViewSelection`) narrowed by the id lists given."""
    sel = selection or ViewSelection()
    update = {k: sorted(v) for k, v in (("channels", channels), ("timepoints", timepoints),
                                         ("illuminations", illuminations)) if v is not None}
    if update:
        sel = sel.model_copy(update=update)
    try:
        return choose_views(sd, sel)
    except ViewSelectionError as exc:
        raise DatasetError(str(exc)) from None


def fusion_slots(sd: SpimData, views) -> tuple[FusionSlot, ...]:
    """One slot per (timepoint, channel) present among ``views``: channels are never mixed."""
    by: dict[tuple[int, int], list[ViewId]] = {}
    for v in views:
        by.setdefault((int(v[0]), view_attributes(sd, v)["channel"]), []).append(tuple(v))
    tps = sorted({t for t, _ in by})
    chs = sorted({c for _, c in by})
    return tuple(
        FusionSlot(tps.index(t), chs.index(c), t, c, tuple(sorted(vs))) for (t, c), vs in sorted(by.items())
    )


def physical_unit_per_world(sd: SpimData, views) -> tuple[float, str | None]:
    """Physical length of one world unit, and its NGFF unit name.

    BigStitcher's world frame is isotropic calibrated voxels: the calibration is
    voxelSize / (finest voxel size), so one world unit is the finest voxel size.
    The ratio voxelSize / (world step of a voxel) is measured per view and axis;
    its median is snapped to the finest voxel size when they agree within 1 %,
    so the small scale changes of an affine solve do not leak into the NGFF scale.
    """
    ratios, sizes, unit = [], [], None
    for v in views:
        s = sd.setup_of(v)
        if s.voxel_size is None:
            continue
        step = np.linalg.norm(sd.view_to_world(v)[:3, :3], axis=0)
        ratios.extend(np.asarray(s.voxel_size, dtype=np.float64) / step)
        sizes.extend(s.voxel_size)
        unit = unit or s.voxel_unit
    if not ratios:
        return 1.0, None
    ratio = float(np.median(ratios))
    finest = float(min(sizes))
    if abs(ratio / finest - 1.0) < 0.01:
        ratio = finest
    return ratio, _ngff_unit(unit)


def default_voxel_size_world(sd: SpimData, views, per_world: float, isotropic: bool):
    """The finest XML voxel size per axis, in world units (x y z); None if the XML has none."""
    sizes = [sd.setup_of(v).voxel_size for v in views if sd.setup_of(v).voxel_size is not None]
    if not sizes:
        return None
    vs = np.min(np.asarray(sizes, dtype=np.float64), axis=0) / per_world
    return tuple(float(x) for x in (np.full(3, vs.min()) if isotropic else vs))


def _ngff_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    u = unit.strip().lower()
    return {"um": "micrometer", "µm": "micrometer", "micron": "micrometer", "microns": "micrometer",
            "micrometer": "micrometer", "micrometers": "micrometer", "nm": "nanometer",
            "nanometer": "nanometer", "mm": "millimeter", "millimeter": "millimeter"}.get(u)


def fusion_views(sd: SpimData, views, storage_options=None, xml_uri: str | None = None) -> list[FusionView]:
    """The views to fuse; with ``xml_uri``, each with the intensity map the dataset carries (if any)."""
    geometry = view_geometry(sd, views)
    maps = {}
    if xml_uri is not None:
        from rhapso_core.intensity.dataset import load_intensity

        maps = load_intensity(sd, xml_uri, list(views), storage_options)
    return [FusionView(open_view(sd, v, storage_options), geometry[v][0], geometry[v][1], v, maps.get(tuple(v)))
            for v in views]


def plan_fusion(
    xml_uri: str, out_uri: str, params: FusionParams, *, channels=None, timepoints=None,
    illuminations=None, selection: ViewSelection | None = None, overwrite: bool = False, storage_options=None,
) -> FusionPlan:
    """Create (or reopen, for a resumed run) the output OME-Zarr and cut it into work units.

    The output holds one fused image per (timepoint, channel) of the selected views, on
    axes t, c, z, y, x over one common grid (the box of all selected views); the
    illuminations of a tile are combined by ``params.illumination``, angles are fused
    together. An existing output is reused only if it was created for the same grid,
    slots and dtype; anything else at ``out_uri`` is refused unless ``overwrite``.
    """
    sd = load_dataset(xml_uri, storage_options)
    views = select_views(sd, channels, timepoints, illuminations, selection)
    views = choose_illuminations(sd, views, params.illumination, storage_options)
    slots = fusion_slots(sd, views)
    fviews = fusion_views(sd, views, storage_options)
    bbox = None if params.bounding_box is None else (params.bounding_box[0], params.bounding_box[1])
    per_world, unit = physical_unit_per_world(sd, views)
    voxel = params.voxel_size or default_voxel_size_world(sd, views, per_world, params.isotropic)
    grid = make_output_grid(fviews, voxel, bbox, params.isotropic)
    names = sd.attribute_defs.get("channel", {})
    timepoints_out = sorted({s.timepoint for s in slots})
    channels_out = sorted({s.channel for s in slots})
    record = {
        "origin_xyz": [float(v) for v in grid.origin_xyz],
        "voxel_size_xyz": [float(v) for v in grid.voxel_size_xyz],
        "shape_zyx": [int(v) for v in grid.shape_zyx],
        "dtype": params.output_dtype,
        "views": [list(v) for v in views],
        "timepoints": timepoints_out,
        "channels": channels_out,
        "channel_names": [
            (names[c].name if c in names and names[c].name else f"channel {c}") for c in channels_out
        ],
        "illumination": params.illumination,
    }
    writer = _open_or_create(out_uri, grid, params, per_world, unit, record, overwrite, storage_options)
    units = plan_work_units(grid.shape_zyx, params, write_unit(writer.slot(0)))
    return FusionPlan(
        out_uri, tuple(record["origin_xyz"]), tuple(record["voxel_size_xyz"]), tuple(grid.shape_zyx),
        tuple(tuple(tuple(tuple(ax) for ax in box) for box in unit) for unit in units), tuple(views), slots,
    )


def check_output_free(out_uri: str, overwrite: bool = False, storage_options=None) -> None:
    """Refuse, before any stage runs, a fused output path holding data that no fusion run wrote.

    A folder left by an earlier (possibly killed) fusion carries the grid record, even
    one stopped while it was creating the image, and may be resumed (:func:`plan_fusion`
    checks the grid matches); anything else at ``out_uri`` is someone's data and is
    refused unless ``overwrite``.
    """
    if overwrite or not holds_data(out_uri, storage_options):
        return
    root = read_root(out_uri, storage_options)
    if root is None or GRID_ATTR not in root.attributes:
        raise ImageIOError(
            f"{out_uri}: output path already holds data that is not a fusion output; choose a new path or pass overwrite"
        )


def _open_or_create(out_uri, grid, params, per_world, unit, record, overwrite, storage_options) -> OmeZarrWriter:
    record = json.loads(json.dumps(record))  # as it reads back: lists, not tuples
    recreate = overwrite
    if not overwrite and holds_data(out_uri, storage_options):
        root = read_root(out_uri, storage_options)
        if root is None or root.attributes.get(GRID_ATTR) != record:
            raise ImageIOError(
                f"{out_uri}: output path already holds data from another run; choose a new path or pass overwrite"
            )
        if root.complete:
            return OmeZarrWriter.open(out_uri, storage_options=storage_options)
        # This grid's creation stopped before its group was finished (a killed run, a full
        # disk, a retried task): no block can have been fused into it, so it is made again.
        recreate = True
    return create_ome_zarr(
        out_uri, grid.shape_zyx, params.output_dtype,
        chunks_zyx=tuple(params.chunks[::-1]),
        voxel_size_zyx=tuple((grid.voxel_size_xyz * per_world)[::-1]),
        origin_zyx=tuple((grid.origin_xyz * per_world)[::-1]),
        unit=unit, n_levels=1, ngff_version=params.ngff_version,
        shards_zyx=None if params.shards is None else tuple(params.shards[::-1]),
        storage_options=storage_options, overwrite=recreate,
        tc_shape=(len(record["timepoints"]), len(record["channels"])),
        compressor=None if params.compressor == "none" else params.compressor, clevel=params.clevel,
        attributes={GRID_ATTR: record},
    )


def fuse_unit(
    xml_uri: str, plan: FusionPlan, unit_index: int, params: FusionParams, storage_options=None,
    slot_index: int | None = None,
) -> int:
    """Fuse one work unit of one slot (default: of every slot, one after the other).

    Blocks are chunk-aligned and one (t, c) deep, so units never share a chunk.
    """
    sd = load_dataset(xml_uri, storage_options)
    writer = OmeZarrWriter.open(plan.out_uri, storage_options=storage_options)
    blocks = [tuple(tuple(ax) for ax in box) for box in plan.units[unit_index]]
    slots = plan.slots if slot_index is None else (plan.slots[slot_index],)
    done = 0
    for slot in slots:
        fviews = fusion_views(sd, list(slot.views), storage_options,
                              xml_uri if params.intensity_correction else None)
        arr = writer.slot(0, slot.t_index, slot.c_index)
        done += len(fuse_to_zarr(fviews, plan.grid, params, arr, blocks=blocks, skip_existing=True))
    return done


def build_levels(out_uri: str, params: FusionParams, storage_options=None) -> list[str]:
    """Add the multiscale pyramid to the fused image in this process (resumable)."""
    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    levels = build_pyramid(group, params.multiscale)
    write_channel_metadata(out_uri, storage_options)
    return levels


def plan_pyramid(out_uri: str, params: FusionParams, storage_options=None) -> tuple[str, list[LevelWork]]:
    """Create the pyramid's level arrays and plan their blocks (see :func:`prepare_levels`)."""
    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    return prepare_levels(group, params.multiscale)


def downsample_unit(out_uri: str, level: LevelWork, blocks, storage_options=None) -> int:
    """Compute some whole-chunk blocks of one pyramid level; returns how many were written."""
    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    return len(downsample_blocks(group, level, blocks))


def finish_pyramid(out_uri: str, base_path: str, work: list[LevelWork], storage_options=None) -> list[str]:
    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    levels = finish_levels(group, base_path, work)
    write_channel_metadata(out_uri, storage_options)
    return levels
