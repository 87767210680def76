"""What the XML alone says about a dataset: tile sizes, voxel sizes, nominal overlaps.

All lengths are in world units (BigStitcher's calibrated voxels) unless named
``*_voxels`` (full-resolution view voxels of the view concerned). Axis order x, y, z.
The overlap of a pair is the intersection of the two views' world bounding boxes under
their current (nominal) registrations, as matching uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core.matching.pairs import select_pairs
from rhapso_core.overlap import world_box, world_overlap
from rhapso_core.pipeline.dataset import load_dataset, view_geometry
from rhapso_core.spimdata import SpimData, ViewId

__all__ = ["ViewInfo", "PairOverlap", "DatasetSurvey", "survey_dataset"]


@dataclass(frozen=True)
class ViewInfo:
    view: ViewId
    size_xyz: tuple[int, int, int]
    voxel_world_xyz: tuple[float, float, float]  # world length of one view voxel along x, y, z


@dataclass(frozen=True)
class PairOverlap:
    """The nominal overlap of two views.

    ``extent_voxels_xyz``: the overlap box's size along x, y, z in voxels of the view
    with the finer voxels (the larger count); ``across_world``: its narrowest extent
    (world units), the width the stage error eats into. ``flat_xyz``: axes along which
    both views are a single plane; the box is one voxel deep there (half a voxel each
    side of the plane), a thickness, not a width: ``across`` is measured in the plane.
    """

    a: ViewId
    b: ViewId
    box_world: tuple[tuple[float, float, float], tuple[float, float, float]]
    extent_world_xyz: tuple[float, float, float]
    extent_voxels_xyz: tuple[float, float, float]
    flat_xyz: tuple[bool, bool, bool] = (False, False, False)

    @property
    def across_axis(self) -> int:
        """The axis (0 x, 1 y, 2 z) of the narrowest extent that is a width (not a plane's thickness)."""
        ext = np.where(np.asarray(self.flat_xyz), np.inf, np.asarray(self.extent_world_xyz, dtype=np.float64))
        return int(np.argmin(ext)) if np.isfinite(ext).any() else int(np.argmin(self.extent_world_xyz))

    @property
    def across_world(self) -> float:
        return float(self.extent_world_xyz[self.across_axis])

    @property
    def volume_voxels(self) -> float:
        return float(np.prod(self.extent_voxels_xyz))


@dataclass(frozen=True)
class DatasetSurvey:
    xml: str
    views: tuple[ViewInfo, ...]
    pairs: tuple[PairOverlap, ...]

    @property
    def voxel_xy_world(self) -> float:
        """Median xy voxel length over the views (world units)."""
        return float(np.median([min(v.voxel_world_xyz[:2]) for v in self.views]))

    @property
    def voxel_z_world(self) -> float:
        return float(np.median([v.voxel_world_xyz[2] for v in self.views]))

    @property
    def anisotropy(self) -> float:
        """z voxel length over xy voxel length (median over views)."""
        return self.voxel_z_world / self.voxel_xy_world

    def min_overlap_voxels(self) -> tuple[float, float] | None:
        """Narrowest overlap extent (view voxels) over all pairs, in xy and in z; None without pairs."""
        if not self.pairs:
            return None
        e = np.array([p.extent_voxels_xyz for p in self.pairs])
        return float(e[:, :2].min()), float(e[:, 2].min())

    def min_tile_voxels(self) -> tuple[int, int]:
        """Smallest tile extent (voxels) in xy and in z."""
        s = np.array([v.size_xyz for v in self.views])
        return int(s[:, :2].min()), int(s[:, 2].min())

    def to_facts(self) -> dict:
        mo = self.min_overlap_voxels()
        mt = self.min_tile_voxels()
        return {
            "views": len(self.views),
            "pairs": len(self.pairs),
            "voxel_world_xy": round(self.voxel_xy_world, 4),
            "voxel_world_z": round(self.voxel_z_world, 4),
            "anisotropy_z_over_xy": round(self.anisotropy, 3),
            "min_tile_voxels_xy_z": list(mt),
            "min_overlap_voxels_xy_z": None if mo is None else [round(mo[0], 1), round(mo[1], 1)],
            "max_overlap_width_world": round(max((p.across_world for p in self.pairs), default=0.0), 2),
        }


def _voxel_world(affine: np.ndarray) -> tuple[float, float, float]:
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(v) for v in np.linalg.norm(lin, axis=0))  # type: ignore[return-value]


def _world_flat(affine: np.ndarray, size_xyz) -> np.ndarray:
    """World axes (x, y, z) along which the view's box has no extent (a single plane)."""
    lo, hi = world_box(affine, size_xyz)
    return (np.asarray(hi) - np.asarray(lo)) <= 1e-9


def survey_dataset(xml_uri: str, sd: SpimData | None = None, storage_options=None) -> DatasetSurvey:
    """Views and nominal pair overlaps of a dataset, from its XML only (no pixels read)."""
    sd = sd if sd is not None else load_dataset(xml_uri, storage_options)
    geometry = view_geometry(sd)
    views = tuple(
        ViewInfo(v, tuple(int(s) for s in size), _voxel_world(affine))  # type: ignore[arg-type]
        for v, (affine, size) in sorted(geometry.items())
    )
    vox = {vi.view: np.asarray(vi.voxel_world_xyz) for vi in views}
    pairs = []
    for p in select_pairs(geometry, mode="overlapping"):
        (a2w, size_a), (b2w, size_b) = geometry[p.a], geometry[p.b]
        # Single planes have boxes without depth: they overlap within half a voxel of their plane.
        box = np.asarray(world_overlap(a2w, size_a, b2w, size_b, flat_half_voxel=True), dtype=np.float64)
        ext = box[1] - box[0]
        if np.any(ext <= 0):
            continue  # touching boxes: nothing to match
        flat = (_world_flat(a2w, size_a) & _world_flat(b2w, size_b))
        finer = np.minimum(vox[p.a], vox[p.b])
        pairs.append(PairOverlap(
            tuple(p.a), tuple(p.b),
            (tuple(float(x) for x in box[0]), tuple(float(x) for x in box[1])),  # type: ignore[arg-type]
            tuple(float(x) for x in ext),  # type: ignore[arg-type]
            tuple(float(x) for x in ext / finer),  # type: ignore[arg-type]
            tuple(bool(f) for f in flat),  # type: ignore[arg-type]
        ))
    return DatasetSurvey(xml_uri, views, tuple(pairs))
