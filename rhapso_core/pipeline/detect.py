"""Detection over a dataset: plan chunk tasks per view, run one chunk, merge and store a view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core.detection import (
    ChunkTask,
    DetectionParams,
    InterestPoints,
    combine_close,
    detect_chunk,
    merge_points,
    plan_detection,
)
from rhapso_core.detection.view import border_margin_xyz
from rhapso_core.pipeline.dataset import load_dataset, open_view, overlap_boxes_in_view, view_geometry
from rhapso_core.pointstore import PointStore, view_interest_points_entries
from rhapso_core.pipeline.view_groups import view_groups
from rhapso_core.pipeline.view_selection import ViewSelection, select_views, view_attributes
from rhapso_core.spimdata import InterestPointsFile, SpimData, ViewId, save_xml


@dataclass(frozen=True)
class ViewDetectionPlan:
    """The chunk tasks of one view, with its resolved parameters (a small record)."""

    view: ViewId
    params: DetectionParams
    regions_xyz: tuple[tuple[tuple[float, ...], ...], ...]
    tasks: tuple[ChunkTask, ...]
    # Full-res voxels (x, y, z) of biased localisation at the view's border (stored with the points).
    border_margin_xyz: tuple[float, float, float] | None = None


def plan_views(
    xml_uri: str, params: DetectionParams, views=None, storage_options=None, selection: ViewSelection | None = None,
) -> list[ViewDetectionPlan]:
    """One plan per view: pyramid level, in-memory factor, intensity range, chunks.

    Views: ``views`` if given, else the ``selection``'s (default all) of the channels in
    ``params.channels`` (default all). ``auto`` values are resolved for the dataset first
    (:mod:`rhapso_core.autoparams`); the flows resolve them before calling, so this only
    happens to direct callers.
    """
    if params.auto_fields():
        from rhapso_core.autoparams import resolved_for
        from rhapso_core.config import PipelineParams

        params = resolved_for(xml_uri, PipelineParams(detection=params), storage_options).params.detection
    sd = load_dataset(xml_uri, storage_options)
    views = detection_views(sd, params, selection) if views is None else [tuple(v) for v in views]
    overlaps = overlap_regions(sd, view_geometry(sd)) if params.overlap_only else {}
    plans = []
    for v in views:
        source = open_view(sd, v, storage_options)
        plan = plan_detection(source, params, overlap_boxes_xyz=overlaps.get(v))
        regions = tuple(tuple(tuple(float(x) for x in row) for row in np.asarray(r)) for r in plan.regions_xyz)
        plans.append(ViewDetectionPlan(v, plan.params, regions, tuple(plan.tasks),
                                       border_margin_xyz(plan.params, plan.total_factor)))
    return plans


def detection_views(sd: SpimData, params: DetectionParams, selection: ViewSelection | None = None) -> list[ViewId]:
    """The views detection runs on: the ``selection``'s (default all) of the channels in
    ``params.channels`` (default all)."""
    views = select_views(sd, selection)
    if params.channels is not None:
        views = [v for v in views if view_attributes(sd, v)["channel"] in set(params.channels)]
    return [tuple(v) for v in views]


def overlap_regions(sd: SpimData, geometry) -> dict:
    """``{view: [(2, 3) boxes]}``: where each view overlaps views of other tiles (view voxels, x y z).

    Views of one tile (other channels, illuminations) cover it whole; they are no overlap.
    """
    same_tile = view_groups(sd, sd.views(), ("channel", "illumination"))
    return {v: overlap_boxes_in_view({w: g for w, g in geometry.items()
                                      if w == v or same_tile.get(w) != same_tile.get(v)}, v)
            for v in geometry}


def run_chunk(xml_uri: str, view: ViewId, task: ChunkTask, params: DetectionParams, storage_options=None) -> InterestPoints:
    """Detect the points of one chunk of one view (full-resolution view voxels, x y z)."""
    sd = load_dataset(xml_uri, storage_options)
    source = open_view(sd, tuple(view), storage_options)
    return detect_chunk(source, task.level, task.in_memory_factor, task.core_box, params)


def detect_in_process(xml_uri: str, store_uri: str, params: DetectionParams, storage_options=None) -> dict[ViewId, int]:
    """Every view's points detected one chunk after another in this process and stored (what
    the detection flow runs as tasks); the points stored per view."""
    counts = {}
    for plan in plan_views(xml_uri, params, storage_options=storage_options):
        parts = [run_chunk(xml_uri, plan.view, t, plan.params, storage_options) for t in plan.tasks]
        counts[plan.view] = store_view(store_uri, plan, merge_view(plan, parts), storage_options)
    return counts


def merge_view(plan: ViewDetectionPlan, parts: list[InterestPoints]) -> InterestPoints:
    """Combine close points and cap per region, then across regions; ids 0..N-1 in position order."""
    per_region: list[list[InterestPoints]] = [[] for _ in plan.regions_xyz]
    for task, pts in zip(plan.tasks, parts):
        per_region[task.region_index].append(pts)
    merged = [
        merge_points(p, plan.params, np.asarray(reg), renumber=False)
        for p, reg in zip(per_region, plan.regions_xyz)
    ]
    pts = InterestPoints.concat(merged) if merged else InterestPoints.empty()
    if len(merged) > 1:
        pts = combine_close(pts, plan.params.combine_distance)
    return pts.sorted_by_position().renumbered()


def store_view(store_uri: str, plan: ViewDetectionPlan, points: InterestPoints, storage_options=None) -> int:
    """Write one view's points (replacing earlier ones); returns the count."""
    store = PointStore(store_uri, storage_options=storage_options, mode="a")
    store.write_points(
        plan.view, plan.params.label, points.ids, points.loc_xyz, points.intensity, points.dog,
        params=detection_params_string(plan.params), border_margin_xyz=plan.border_margin_xyz,
    )
    return len(points)


def detection_params_string(p: DetectionParams) -> str:
    """BigStitcher-style one-line description of how the points were found."""
    return (
        f"DOG (rhapso-service) s={p.sigma} t={p.threshold} type={p.peak_type} "
        f"ds={p.dsxy},{p.dsxy},{p.dsz} median={p.median_filter} "
        f"min={p.min_intensity} max={p.max_intensity}"
    )


def attach_interest_points(sd: SpimData, store_uri: str, label: str, storage_options=None) -> SpimData:
    """``sd`` with ``ViewInterestPoints`` entries for every view the store holds points of."""
    store = PointStore(store_uri, storage_options=storage_options, mode="r")
    entries = view_interest_points_entries(store, label)
    if not entries:
        return sd
    return sd.with_interest_points(
        [InterestPointsFile(e.timepoint, e.setup, e.label, e.params, e.path) for e in entries]
    )


def write_detected_xml(xml_uri: str, store_uri: str, label: str, out_xml: str, storage_options=None) -> str:
    """A copy of the input XML listing the detected points (the input is never modified)."""
    sd = attach_interest_points(load_dataset(xml_uri, storage_options), store_uri, label, storage_options)
    save_xml(sd, out_xml, storage_options=storage_options)
    return out_xml
