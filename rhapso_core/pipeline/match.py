"""Matching over a dataset: which pairs, and one pair's correspondences into the point store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core import transforms
from rhapso_core.matching import MatchingParams, match_points, select_pairs
from rhapso_core.pipeline.dataset import load_dataset, view_geometry
from rhapso_core.pointstore import PointStore
from rhapso_core.pipeline.view_groups import pair_attributes, timepoints_linked, view_groups
from rhapso_core.pipeline.view_groups import reference_timepoint as reference_timepoint_of
from rhapso_core.pipeline.view_selection import ViewSelection, select_views, view_attributes
from rhapso_core.spimdata import ViewId


@dataclass(frozen=True)
class PairRecord:
    """QC record of one matched pair (small; no point arrays)."""

    view_a: ViewId
    view_b: ViewId
    label: str
    n_points_a: int
    n_points_b: int
    n_candidates: int
    n_inliers: int
    rms: float
    status: str
    reason: str
    model: tuple[float, ...] | None
    # Retries of a pair that failed (rhapso_core.pipeline.retry), in the order tried.
    escalations: tuple[dict, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return {
            "view_a": list(self.view_a), "view_b": list(self.view_b), "label": self.label,
            "n_points_a": self.n_points_a, "n_points_b": self.n_points_b,
            "n_candidates": self.n_candidates, "n_inliers": self.n_inliers,
            "rms": None if not np.isfinite(self.rms) else self.rms, "status": self.status,
            "reason": self.reason, "model": None if self.model is None else list(self.model),
            "escalations": [dict(e) for e in self.escalations],
        }


def plan_pairs(
    xml_uri: str, pair_mode: str = "overlapping", group_by=(), storage_options=None, *,
    grouping=("channel", "illumination"), timepoints: str = "individually", reference_timepoint: int | None = None,
    timepoint_range: int = 5, selection: ViewSelection | None = None, channels=None,
) -> list[tuple[ViewId, ViewId]]:
    """Pairs to match: boxes overlapping under the current registrations (or all).

    Only selected views (``selection``) of the detected ``channels`` (None: all) take
    part. Views of one group (``grouping``, see :mod:`.view_groups`) are never paired;
    views of different groups are paired when they share ``group_by`` and the grouped
    attributes' values. Timepoints are paired as ``timepoints`` says (default: within
    a timepoint only).
    """
    return dataset_pairs(load_dataset(xml_uri, storage_options), pair_mode, group_by, grouping=grouping,
                         timepoints=timepoints, reference_timepoint=reference_timepoint,
                         timepoint_range=timepoint_range, selection=selection, channels=channels)


def dataset_pairs(
    sd, pair_mode: str = "overlapping", group_by=(), *, grouping=("channel", "illumination"),
    timepoints: str = "individually", reference_timepoint: int | None = None, timepoint_range: int = 5,
    selection: ViewSelection | None = None, channels=None,
) -> list[tuple[ViewId, ViewId]]:
    """:func:`plan_pairs` of a loaded dataset (the planner's, which has it loaded already)."""
    views = select_views(sd, selection)
    if channels is not None:
        views = [v for v in views if view_attributes(sd, v)["channel"] in set(channels)]
    geometry = view_geometry(sd, views)
    attributes = {v: view_attributes(sd, v) for v in geometry}
    groups = view_groups(sd, views, grouping)
    ref = reference_timepoint_of([v[0] for v in views], reference_timepoint)
    pairs = select_pairs(
        geometry, mode=pair_mode, group_by=pair_attributes(grouping, group_by), attributes=attributes,
        same_timepoint=timepoints == "individually",
    )
    return [
        (tuple(p.a), tuple(p.b)) for p in pairs
        if groups[p.a] != groups[p.b] and timepoints_linked(p.a[0], p.b[0], timepoints, ref, timepoint_range)
    ]


#: Voxels beyond a view's outer voxel centres that still count as inside it when matching (see match_pair).
BOX_TOLERANCE_VOXELS = 0.1


def _matching_box(affine: np.ndarray, size_xyz) -> tuple[np.ndarray, np.ndarray]:
    """World box (min_xyz, max_xyz) of a view's voxel centres ``[0, size - 1]`` widened by
    :data:`BOX_TOLERANCE_VOXELS` on every side."""
    size = np.asarray(size_xyz, dtype=np.float64)
    t = BOX_TOLERANCE_VOXELS
    corners = transforms.apply(affine, transforms.box_corners(np.full(3, -t), size - 1.0 + t))
    return corners.min(axis=0), corners.max(axis=0)


def match_pair(
    xml_uri: str, store_uri: str, view_a: ViewId, view_b: ViewId, label: str,
    params: MatchingParams, storage_options=None,
) -> PairRecord:
    """Match two views' stored points in world coordinates; store the correspondences.

    ``auto`` values are resolved from the XML alone first (the matcher needs no pixels:
    the detection grid the overlaps allow, 12 inliers at least); the flows resolve every
    stage together, from the pixels too, before calling.
    """
    if params.auto_fields():
        from rhapso_core.autoparams import resolved_for
        from rhapso_core.config import PipelineParams

        params = resolved_for(xml_uri, PipelineParams(matching=params), storage_options,
                              read_pixels=False).params.matching
    sd = load_dataset(xml_uri, storage_options)
    view_a, view_b = tuple(view_a), tuple(view_b)
    geometry = view_geometry(sd, [view_a, view_b])
    store = PointStore(store_uri, storage_options=storage_options, mode="a")
    pa = store.read_points(view_a, label)
    pb = store.read_points(view_b, label)
    wa = transforms.apply(geometry[view_a][0], pa.loc_xyz)
    wb = transforms.apply(geometry[view_b][0], pb.loc_xyz)
    # The views' outer voxel centres widened by a tenth of a voxel: with the centres alone, a thin stack
    # whose registration moved a hundredth of a voxel in z lost a whole plane of points from its overlap
    # (3 planes: 170 of 183 candidates gone, no pair matched after a phase round; the phase round's z
    # corrections there are 0.002-0.008 voxel). Half a voxel (the voxels' full extent) took in DoG
    # responses at the tiles' borders too, and one real single-plane pair stopped matching (0.10 -> 0.32
    # pixel RMS on a real-texture cell).
    (lo_a, hi_a), (lo_b, hi_b) = (_matching_box(*geometry[v]) for v in (view_a, view_b))
    box = np.stack([np.maximum(lo_a, lo_b), np.minimum(hi_a, hi_b)])
    result = match_points(wa, wb, params, box=box, voxel_to_world=(geometry[view_a][0], geometry[view_b][0]))
    idx_a = result.idx_a if result.status == "ok" else np.zeros(0, np.int64)
    idx_b = result.idx_b if result.status == "ok" else np.zeros(0, np.int64)
    store.write_correspondences(
        view_a, view_b, label, idx_a, idx_b,
        params=f"{params.model} lambda={params.lambda_value} max_epsilon={params.max_epsilon}",
    )
    return PairRecord(
        view_a, view_b, label, int(result.n_points_a), int(result.n_points_b),
        int(result.n_candidates), int(result.n_inliers), float(result.rms), result.status,
        result.reason, None if result.model is None else tuple(transforms.to_xml_values(result.model)),
    )


def stored_point_counts(store_uri: str, label: str, views, storage_options=None) -> dict[ViewId, int]:
    """Points stored for each of ``views`` under ``label`` (views without points are left out),
    from the store's metadata only: what sizes a matching batch (:func:`rhapso_core.cost.stored_batch_memory`,
    in the flows and in :func:`rhapso_core.planner.plan`)."""
    from concurrent.futures import ThreadPoolExecutor

    store = PointStore(store_uri, storage_options=storage_options, mode="r")

    def count(v) -> int | None:
        return store.point_info(v, label)["n_points"] if store.has_points(v, label) else None

    views = sorted({tuple(v) for v in views})
    # Metadata reads, latency-bound on an object store: a few at a time.
    with ThreadPoolExecutor(max_workers=min(16, max(len(views), 1))) as pool:
        return {v: n for v, n in zip(views, pool.map(count, views)) if n is not None}
