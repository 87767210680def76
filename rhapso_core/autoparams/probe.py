"""A coarse measurement of the stage error: phase correlation of a few sampled overlaps.

The XML says where the stage put each tile, not how wrong that is. Phase correlation
of a pair's nominal overlap measures the relative error of the two tiles directly
(``rhapso_core.stitching``, BigStitcher's pairwise shift) from every voxel of the
overlap, whatever the specimen holds. The resolver probes a few overlaps spread over
the dataset at the automatic (coarse) pyramid level without refinement, enough to
tell whether the error is within what the point matcher bridges; it is bounded in
cost like the other samples (a few overlap crops).

A probe only counts where it is trustworthy: a link that passes the stitching filters
(r >= ``StitchingParams.min_r``). Without one the probe says nothing, and the decision
falls back to the stated stage uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core.autoparams.sample import FACE_FRACTION, evenly
from rhapso_core.autoparams.survey import DatasetSurvey
from rhapso_core.pipeline.dataset import open_view, view_geometry
from rhapso_core.spimdata import SpimData, ViewId

__all__ = ["ShiftProbe", "probe_stage_error"]


@dataclass(frozen=True)
class ShiftProbe:
    """The phase-correlation shift of one sampled pair (world units, x y z) and its correlation."""

    a: ViewId
    b: ViewId
    shift_world_xyz: tuple[float, float, float]
    r: float
    ok: bool
    status: str

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.shift_world_xyz)) if self.ok else 0.0

    def to_dict(self) -> dict:
        r = None if not np.isfinite(self.r) else round(float(self.r), 4)
        shift = [None if not np.isfinite(v) else round(float(v), 3) for v in self.shift_world_xyz]
        return {"a": list(self.a), "b": list(self.b), "shift_world_xyz": shift, "r": r, "status": self.status}


def probe_stage_error(sd: SpimData, survey: DatasetSurvey, n: int, storage_options=None,
                      sources: dict | None = None) -> list[ShiftProbe]:
    """Phase-correlate ``n`` face overlaps spread over the dataset (coarse level, no refinement)."""
    from rhapso_core.stitching import StitchingParams, correlate_views

    biggest = max((p.volume_voxels for p in survey.pairs), default=0.0)
    faces = [p for p in survey.pairs if p.volume_voxels >= FACE_FRACTION * biggest]
    pairs = evenly(sorted(faces, key=lambda p: (p.a, p.b)), n)
    if not pairs:
        return []
    geom = view_geometry(sd, sorted({v for p in pairs for v in (p.a, p.b)}))
    # The error's size, not its last sub-voxel: no refinement at a finer level and BigStitcher's 5
    # verified peaks. The sub-voxel step stays: it climbs to the NCC's local maximum, without which
    # the best integer peak was measured 2.4 voxels off on a 128-voxel tile's overlap.
    params = StitchingParams(refine_level=None, peaks_to_check=5)
    sources = {} if sources is None else sources
    out = []
    for p in pairs:
        for v in (p.a, p.b):
            if v not in sources:
                sources[v] = open_view(sd, v, storage_options)
        (a2w, sa), (b2w, sb) = geom[p.a], geom[p.b]
        k = correlate_views(p.a, sources[p.a], a2w, sa, p.b, sources[p.b], b2w, sb, params)
        out.append(ShiftProbe(tuple(p.a), tuple(p.b), tuple(float(x) for x in k.shift_xyz), float(k.r),
                              bool(k.ok), k.status))
    return out
