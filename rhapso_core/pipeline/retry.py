"""A pair that fails is retried before it is given up.

After a round's matching, every pair whose matching failed while the two views
overlap is retried with escalations, in order, each building on the previous
ones (points found stay found), until one matches:

1. ``lower_threshold``: detection again inside that pair's overlap only (the
   world overlap box under the current registrations, in each view's voxels),
   with the DoG threshold times ``threshold_factor``; new points (farther than
   ``dedup_distance`` from every stored one) are appended to each view's points
   under the same label;
2. ``finer_downsampling``: the same in the overlap at half the downsampling
   (dsxy, dsz halved, at least 1), with the lowered threshold: more working
   voxels across a thin overlap, smaller features;
3. ``wider_search``: matching with ``search_radius`` times
   ``search_radius_factor`` (only when a radius is set: none means no gating,
   already the widest);
4. ``rotation_descriptor``: matching with the rotation-invariant descriptor
   (:mod:`rhapso_core.matching.descriptors`, local frames from the nearest
   neighbours), for views rotated against each other.

Every escalation tried is recorded in the pair's record (what changed, the points
added, the matching status and reason); one that does not apply is recorded as
skipped with why. A pair still unmatched ends with a reason listing them all.

Appending points to a view replaces its stored points, which invalidates the
view's correspondences with other views in the store; they are read first and
written again with the same indices (appended points do not move existing
ones), so no other pair loses its matches. Retries therefore run one pair at a
time after the round's matching (see :func:`retry_failed_pairs`). Each detection
step leaves a marker naming the step and the partner view in the stored points'
description; a later round (same store) skips the steps already done, their points
being stored and already used by that round's matching.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from rhapso_core.detection import DetectionParams
from rhapso_core.detection.view import detect_view
from rhapso_core.matching import MatchingParams
from rhapso_core.overlap import world_box_in_view, world_overlap
from rhapso_core.pipeline.dataset import load_dataset, open_view, view_geometry
from rhapso_core.pipeline.match import PairRecord, match_pair
from rhapso_core.pipeline.retry_params import ESCALATIONS, RetryParams
from rhapso_core.pointstore import PointStore
from rhapso_core.spimdata import ViewId

__all__ = ["RetryParams", "ESCALATIONS", "retry_pair", "retry_failed_pairs", "overlap_box_in_view"]

def _world_overlap(geometry, a: ViewId, b: ViewId) -> tuple[np.ndarray, np.ndarray]:
    return world_overlap(*geometry[a], *geometry[b])


def overlap_box_in_view(geometry, view: ViewId, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """A world box ``[lo, hi]`` as the view-voxel box ``(2, 3)`` x y z (inclusive) it covers, or None."""
    affine, size = geometry[view]
    return world_box_in_view(affine, size, lo, hi, whole_voxels=True)


def _add_points(store: PointStore, sd, view: ViewId, label: str, params: DetectionParams, box_xyz: np.ndarray,
                dedup: float, marker: str) -> int | None:
    """Detect inside ``box_xyz`` of ``view``, append new points, keep the view's other pairs valid.

    ``marker`` goes into the stored points' description when points are added, so a
    later round finds the step done (returns None) instead of detecting again.
    """
    old = store.read_points(view, label)
    if marker in old.params:
        return None
    found = detect_view(open_view(sd, view), params, region_xyz=box_xyz)
    if len(old.ids) and len(found.ids):
        d, _ = cKDTree(old.loc_xyz).query(found.loc_xyz)
        keep = d > dedup
    else:
        keep = np.ones(len(found.ids), dtype=bool)
    n_new = int(keep.sum())
    if n_new == 0:  # nothing to store (a later round detects again: cheap next to rewriting the store)
        return 0
    kept = []
    for pa, pb in store.correspondence_pairs(label):
        if view in (pa, pb):
            try:
                kept.append(store.read_correspondences(pa, pb, label))
            except KeyError:  # interrupted or stale: nothing usable to keep
                continue
    start = int(old.ids.max()) + 1 if len(old.ids) else 0
    store.write_points(
        view, label,
        np.concatenate([old.ids, start + np.arange(n_new)]),
        np.concatenate([old.loc_xyz, found.loc_xyz[keep]]),
        np.concatenate([old.intensity, found.intensity[keep]]),
        np.concatenate([old.dog, found.dog[keep]]),
        params=f"{old.params} {marker}".strip(), border_margin_xyz=old.border_margin_xyz,
    )
    for c in kept:  # appended points do not move the old ones: the indices still hold
        store.write_correspondences(c.view_a, c.view_b, label, c.idx_a, c.idx_b, params=c.params)
    return n_new


def retry_pair(
    xml_uri: str, store_uri: str, record: PairRecord, label: str, matching: MatchingParams,
    detection: DetectionParams, params: RetryParams | None = None, storage_options=None,
    largest_overlap: float | None = None,
) -> PairRecord:
    """Escalate a failed pair until it matches (see the module docstring); the record says what was tried.

    ``largest_overlap``: the largest overlap volume of either view with any view (world
    units cubed), for ``min_relative_overlap``; None: not checked.
    """
    p = params or RetryParams()
    if record.ok or not p.enabled:
        return record
    a, b = tuple(record.view_a), tuple(record.view_b)
    sd = load_dataset(xml_uri, storage_options)
    geometry = view_geometry(sd, [a, b])
    lo, hi = _world_overlap(geometry, a, b)
    volume = float(np.prod(np.maximum(hi - lo, 0.0)))
    if volume < p.min_overlap_voxels:
        return dataclasses.replace(record, reason=f"{record.reason}; not retried: overlap of {volume:.0f} voxels "
                                   f"(< min_overlap_voxels {p.min_overlap_voxels})")
    if largest_overlap and volume < p.min_relative_overlap * largest_overlap:
        return dataclasses.replace(record, reason=f"{record.reason}; not retried: overlap {volume:.0f} is "
                                   f"{volume / largest_overlap:.2f} of its views' largest (< min_relative_overlap "
                                   f"{p.min_relative_overlap})")
    store = PointStore(store_uri, storage_options=storage_options, mode="a")
    det = detection.model_copy(update={"label": label, "overlap_only": False})
    m = matching
    steps: list[dict] = []
    current = record
    for step in p.steps:
        detail, added = "", 0
        if step in ("lower_threshold", "finer_downsampling"):
            if step == "lower_threshold":
                det = det.model_copy(update={"threshold": det.threshold * p.threshold_factor})
                detail = f"threshold {detection.threshold:g} -> {det.threshold:g} in the overlap"
            else:
                finer = {"dsxy": max(1, det.dsxy // 2), "dsz": max(1, det.dsz // 2)}
                if (finer["dsxy"], finer["dsz"]) == (det.dsxy, det.dsz):
                    steps.append({"step": step, "status": "skipped", "detail": "", "added_points": 0,
                                  "reason": f"already at dsxy={det.dsxy}, dsz={det.dsz}"})
                    continue
                detail = f"dsxy,dsz {det.dsxy},{det.dsz} -> {finer['dsxy']},{finer['dsz']} in the overlap"
                det = det.model_copy(update=finer)
            done_before = True
            for v, other in ((a, b), (b, a)):
                box = overlap_box_in_view(geometry, v, lo, hi)
                if box is not None:
                    n = _add_points(store, sd, v, label, det, box, p.dedup_distance,
                                    f"[retry {step} with t{other[0]} s{other[1]}]")
                    done_before = done_before and n is None
                    added += n or 0
            if done_before:
                steps.append({"step": step, "status": "skipped", "detail": detail, "added_points": 0,
                              "reason": "done in an earlier round (its points are stored)"})
                continue
            if added == 0:
                steps.append({"step": step, "status": "skipped", "detail": detail, "added_points": 0,
                              "reason": "no new points in the overlap"})
                continue
        elif step == "wider_search":
            if m.search_radius is None:
                steps.append({"step": step, "status": "skipped", "detail": "", "added_points": 0,
                              "reason": "search_radius is not set: no gating, already the widest"})
                continue
            detail = f"search_radius {m.search_radius:g} -> {m.search_radius * p.search_radius_factor:g}"
            m = m.model_copy(update={"search_radius": m.search_radius * p.search_radius_factor})
        elif step == "rotation_descriptor":
            if m.descriptor == "rotation":
                steps.append({"step": step, "status": "skipped", "detail": "", "added_points": 0,
                              "reason": "already the rotation-invariant descriptor"})
                continue
            detail = "descriptor translation -> rotation"
            m = m.model_copy(update={"descriptor": "rotation", "num_neighbors": max(m.num_neighbors, 2)})
        current = match_pair(xml_uri, store_uri, a, b, label, m, storage_options)
        steps.append({"step": step, "status": current.status, "detail": detail, "added_points": added,
                      "reason": current.reason, "n_inliers": current.n_inliers})
        if current.ok:
            return dataclasses.replace(current, escalations=tuple(steps))
    tried = "; ".join(f"{s['step']}: {s['status']}" + (f" ({s['reason']})" if s["reason"] else "") for s in steps)
    reason = f"{record.reason}; still unmatched after escalations: {tried}" if steps else record.reason
    return dataclasses.replace(current, reason=reason, escalations=tuple(steps))


def retry_failed_pairs(
    xml_uri: str, store_uri: str, records: Sequence[PairRecord], label: str, matching: MatchingParams,
    detection: DetectionParams, params: RetryParams | None = None, storage_options=None,
) -> list[PairRecord]:
    """Every record, the failed ones retried one after the other (they may share views)."""
    if all(r.ok for r in records):
        return list(records)
    sd = load_dataset(xml_uri, storage_options)
    views = sorted({tuple(v) for r in records for v in (r.view_a, r.view_b)})
    geometry = view_geometry(sd, views)
    largest: dict = {}
    for r in records:
        a, b = tuple(r.view_a), tuple(r.view_b)
        lo, hi = _world_overlap(geometry, a, b)
        vol = float(np.prod(np.maximum(hi - lo, 0.0)))
        for v in (a, b):
            largest[v] = max(largest.get(v, 0.0), vol)
    return [r if r.ok else retry_pair(xml_uri, store_uri, r, label, matching, detection, params, storage_options,
                                      max(largest[tuple(r.view_a)], largest[tuple(r.view_b)]))
            for r in records]
