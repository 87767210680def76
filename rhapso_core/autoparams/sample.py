"""Small reads of a dataset's pixels that the resolvers measure: coarse levels, overlap crops.

Everything here reads a bounded number of voxels, whatever the dataset's size: the
coarsest pyramid level of a few views, and a crop of at most ``max_voxels`` full-resolution
voxels from a few overlaps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rhapso_core.autoparams.survey import DatasetSurvey, PairOverlap
from rhapso_core.image_source import ImageSource
from rhapso_core.overlap import world_box_in_view
from rhapso_core.pipeline.dataset import open_view
from rhapso_core.spimdata import SpimData, ViewId

__all__ = ["OverlapCrop", "evenly", "opened", "coarse_percentiles", "overlap_crops", "FACE_FRACTION"]

FACE_FRACTION = 0.25  # an overlap smaller than this share of the largest is a corner contact


@dataclass(frozen=True)
class OverlapCrop:
    """A crop of one view inside its overlap with another.

    ``overlap_xyz`` and ``crop_xyz`` are inclusive [min, max] boxes in the view's
    full-resolution voxels (x y z); ``data_zyx`` holds the crop's full-resolution voxels.
    """

    view: ViewId
    source: ImageSource
    overlap_xyz: np.ndarray
    crop_xyz: np.ndarray
    data_zyx: np.ndarray

    @property
    def volume_fraction(self) -> float:
        """Crop volume over overlap volume (voxel counts)."""
        o = np.prod(np.floor(self.overlap_xyz[1]) - np.ceil(self.overlap_xyz[0]) + 1)
        return float(self.data_zyx.size / max(o, 1.0))


def evenly(items: list, n: int) -> list:
    """At most ``n`` items spread evenly over the list (deterministic)."""
    if len(items) <= n:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, n)).astype(int))
    return [items[i] for i in idx]


def opened(sd: SpimData, view: ViewId, storage_options=None, sources: dict | None = None) -> ImageSource:
    """``open_view``, remembered in ``sources`` (view -> source) when given: the resolver's samples and
    probe read the same few views, and opening one (its multiscale metadata) costs a read of its own."""
    if sources is None:
        return open_view(sd, view, storage_options)
    if view not in sources:
        sources[view] = open_view(sd, view, storage_options)
    return sources[view]


def coarse_percentiles(sd: SpimData, views: list[ViewId], percentiles: tuple[float, float],
                       storage_options=None, sources: dict | None = None) -> tuple[float, float, int]:
    """Percentiles of the pooled coarsest-level voxels of ``views`` (image units), and the voxel count."""
    values = []
    for v in views:
        src = opened(sd, v, storage_options, sources)
        lv = src.n_levels - 1
        shape = src.level_shape(lv)
        a = src.read(tuple((0, int(n)) for n in shape), lv)  # type: ignore[arg-type]
        a = np.asarray(a).ravel()
        if a.size > 2_000_000:  # a coarsest level this large: a strided subsample is enough
            a = a[:: math.ceil(a.size / 2_000_000)]
        values.append(a.astype(np.float32))
    pooled = np.concatenate(values) if values else np.zeros(0, np.float32)
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return 0.0, 1.0, 0
    lo, hi = np.percentile(pooled, percentiles)
    return float(lo), float(hi), int(pooled.size)


def _overlap_in_view(affine: np.ndarray, size_xyz, box_world) -> np.ndarray | None:
    return world_box_in_view(affine, size_xyz, *np.asarray(box_world, dtype=np.float64))


def _crop_box(overlap_xyz: np.ndarray, max_voxels: int) -> np.ndarray:
    """A box centred in the overlap, its narrowest axis whole, the others cut to fit ``max_voxels``."""
    lo, hi = np.ceil(overlap_xyz[0]), np.floor(overlap_xyz[1])
    ext = hi - lo + 1
    keep = ext.copy()
    # shrink the longer axes first, equally, until the crop fits
    while np.prod(keep) > max_voxels:
        ax = int(np.argmax(np.where(keep > 16, keep, 0)))
        if keep[ax] <= 16:
            break
        keep[ax] = max(16, math.floor(keep[ax] * 0.8))
    centre = (lo + hi) / 2.0
    clo = np.maximum(lo, np.floor(centre - (keep - 1) / 2.0))
    chi = np.minimum(hi, clo + keep - 1)
    return np.stack([clo, chi])


def overlap_crops(sd: SpimData, survey: DatasetSurvey, n: int, max_voxels: int,
                  storage_options=None, sources: dict | None = None) -> list[OverlapCrop]:
    """Full-resolution crops of ``n`` overlaps spread over the dataset (first view of each pair).

    A dataset without overlapping pairs gets one crop from the centre of its first view.
    """
    geom = {}
    from rhapso_core.pipeline.dataset import view_geometry

    geom = view_geometry(sd)
    out = []
    # Pairs touching only at a corner (a small fraction of the largest overlap) are left out: no
    # threshold gives them enough points, and the solver does not need them.
    biggest = max((p.volume_voxels for p in survey.pairs), default=0.0)
    faces = [p for p in survey.pairs if p.volume_voxels >= FACE_FRACTION * biggest]
    pairs: list[PairOverlap] = evenly(sorted(faces, key=lambda p: (p.a, p.b)), n)
    jobs = []
    for p in pairs:
        affine, size = geom[p.a]
        box = _overlap_in_view(affine, size, p.box_world)
        if box is not None:
            jobs.append((p.a, box))
    if not jobs and survey.views:
        v = survey.views[0]
        jobs.append((v.view, np.stack([np.zeros(3), np.asarray(v.size_xyz, dtype=np.float64) - 1])))
    for view, box in jobs:
        src = opened(sd, view, storage_options, sources)
        crop = _crop_box(box, max_voxels)
        read = tuple((int(crop[0][a]), int(crop[1][a]) + 1) for a in (2, 1, 0))
        data = np.asarray(src.read(read, 0), dtype=np.float32)  # type: ignore[arg-type]
        out.append(OverlapCrop(view, src, box, crop, data))
    return out
