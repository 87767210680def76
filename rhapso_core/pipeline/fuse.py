"""Fusion over a dataset: plan the output, fuse one work unit, build the pyramid."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import zarr

from rhapso_core.fusion import FusionParams, FusionView, OutputGrid, fuse_to_zarr, make_output_grid, plan_work_units, write_unit
from rhapso_core.io import ImageIOError, OmeZarrWriter, create_ome_zarr, fs_for
from rhapso_core.multiscale.pyramid import LevelWork, build_pyramid, downsample_blocks, finish_levels, prepare_levels
from rhapso_core.pipeline.dataset import DatasetError, load_dataset, open_view, view_geometry
from rhapso_core.spimdata import SpimData, ViewId

GRID_ATTR = "rhapso_fusion_grid"


@dataclass(frozen=True)
class FusionPlan:
    """The output grid (world frame, x y z) and the work units (lists of zyx boxes)."""

    out_uri: str
    origin_xyz: tuple[float, float, float]
    voxel_size_xyz: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    units: tuple[tuple, ...]
    views: tuple[ViewId, ...]

    @property
    def grid(self) -> OutputGrid:
        return OutputGrid(np.asarray(self.origin_xyz), np.asarray(self.voxel_size_xyz), self.shape_zyx)


def select_views(sd: SpimData, channels=None, timepoints=None, illuminations=None) -> list[ViewId]:
    out = []
    for v in sd.views():
        s = sd.setup_of(v)
        if timepoints is not None and v[0] not in timepoints:
            continue
        if channels is not None and s.channel not in channels:
            continue
        if illuminations is not None and s.illumination not in illuminations:
            continue
        out.append(v)
    if not out:
        raise DatasetError(f"{sd.source_uri}: no view matches the selected channels / timepoints / illuminations")
    return out


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


def fusion_views(sd: SpimData, views, storage_options=None) -> list[FusionView]:
    geometry = view_geometry(sd, views)
    return [FusionView(open_view(sd, v, storage_options), geometry[v][0], geometry[v][1], v) for v in views]


def plan_fusion(
    xml_uri: str, out_uri: str, params: FusionParams, *, channels=None, timepoints=None,
    illuminations=None, overwrite: bool = False, storage_options=None,
) -> FusionPlan:
    """Create (or reopen, for a resumed run) the output OME-Zarr and cut it into work units.

    An existing output is reused only if it was created for the same grid and dtype;
    anything else at ``out_uri`` is refused unless ``overwrite``.
    """
    sd = load_dataset(xml_uri, storage_options)
    views = select_views(sd, channels, timepoints, illuminations)
    fviews = fusion_views(sd, views, storage_options)
    bbox = None if params.bounding_box is None else (params.bounding_box[0], params.bounding_box[1])
    per_world, unit = physical_unit_per_world(sd, views)
    voxel = params.voxel_size or default_voxel_size_world(sd, views, per_world, params.isotropic)
    grid = make_output_grid(fviews, voxel, bbox, params.isotropic)
    record = {
        "origin_xyz": [float(v) for v in grid.origin_xyz],
        "voxel_size_xyz": [float(v) for v in grid.voxel_size_xyz],
        "shape_zyx": [int(v) for v in grid.shape_zyx],
        "dtype": params.output_dtype,
        "views": [list(v) for v in views],
    }
    writer = _open_or_create(out_uri, grid, params, per_world, unit, record, overwrite, storage_options)
    units = plan_work_units(grid.shape_zyx, params, write_unit(writer.array(0)))
    return FusionPlan(
        out_uri, tuple(record["origin_xyz"]), tuple(record["voxel_size_xyz"]), tuple(grid.shape_zyx),
        tuple(tuple(tuple(tuple(ax) for ax in box) for box in unit) for unit in units), tuple(views),
    )


def check_output_free(out_uri: str, overwrite: bool = False, storage_options=None) -> None:
    """Refuse, before any stage runs, a fused output path holding data that no fusion run wrote.

    A folder left by an earlier (possibly killed) fusion carries the grid record and
    may be resumed (:func:`plan_fusion` checks the grid matches); anything else at
    ``out_uri`` is someone's data and is refused unless ``overwrite``.
    """
    fs, path = fs_for(out_uri, storage_options)
    if overwrite or not fs.exists(path):
        return
    try:
        attrs = zarr.open_group(out_uri, mode="r", storage_options=storage_options).attrs.asdict()
    except Exception:
        attrs = {}
    if GRID_ATTR not in attrs:
        raise ImageIOError(
            f"{out_uri}: output path already holds data that is not a fusion output; choose a new path or pass overwrite"
        )


def _open_or_create(out_uri, grid, params, per_world, unit, record, overwrite, storage_options) -> OmeZarrWriter:
    fs, path = fs_for(out_uri, storage_options)
    if fs.exists(path) and not overwrite:
        try:
            existing = zarr.open_group(out_uri, mode="r", storage_options=storage_options).attrs.asdict()
        except Exception:
            existing = {}
        if existing.get(GRID_ATTR) != record:
            raise ImageIOError(
                f"{out_uri}: output path already holds data from another run; choose a new path or pass overwrite"
            )
        return OmeZarrWriter.open(out_uri, storage_options=storage_options)
    writer = create_ome_zarr(
        out_uri, grid.shape_zyx, params.output_dtype,
        chunks_zyx=tuple(params.chunks[::-1]),
        voxel_size_zyx=tuple((grid.voxel_size_xyz * per_world)[::-1]),
        origin_zyx=tuple((grid.origin_xyz * per_world)[::-1]),
        unit=unit, n_levels=1, ngff_version=params.ngff_version,
        shards_zyx=None if params.shards is None else tuple(params.shards[::-1]),
        storage_options=storage_options, overwrite=overwrite,
    )
    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    group.attrs[GRID_ATTR] = json.loads(json.dumps(record))
    return writer


def fuse_unit(xml_uri: str, plan: FusionPlan, unit_index: int, params: FusionParams, storage_options=None) -> int:
    """Fuse one work unit (its blocks are chunk-aligned, so units never share a chunk)."""
    sd = load_dataset(xml_uri, storage_options)
    fviews = fusion_views(sd, list(plan.views), storage_options)
    arr = OmeZarrWriter.open(plan.out_uri, storage_options=storage_options).array(0)
    blocks = [tuple(tuple(ax) for ax in box) for box in plan.units[unit_index]]
    done = fuse_to_zarr(fviews, plan.grid, params, arr, blocks=blocks, skip_existing=True)
    return len(done)


def build_levels(out_uri: str, params: FusionParams, storage_options=None) -> list[str]:
    """Add the multiscale pyramid to the fused image in this process (resumable)."""
    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    return build_pyramid(group, params.multiscale)


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
    return finish_levels(group, base_path, work)
