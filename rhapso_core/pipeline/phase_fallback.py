"""The last resort for a pair that interest points cannot match: a phase-correlation link.

Interest points fail where the specimen has too few of them in an overlap, or where they
are not localised (DoG peaks along fibres slide along the fibre). The images still agree:
phase correlation of the pair's overlap (:mod:`rhapso_core.stitching`) measures the shift
from every voxel. A pair still unmatched after the retry escalations is correlated; a link
that passes the stitching filters (``StitchingParams.min_r``) joins the round's solve as an
anchor (:func:`rhapso_core.stitching.anchor_links`, 8 box-corner matches carrying the
translation), and the round's check (:mod:`rhapso_core.verify`) judges the result like any
other. The step is recorded in the pair's escalations.

Only face overlaps are correlated (as the retries: ``RetryParams.min_relative_overlap``);
corner contacts of a grid hold too little to correlate and are redundant links.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.pipeline.dataset import load_dataset, view_geometry
from rhapso_core.pipeline.match import PairRecord
from rhapso_core.spimdata import ViewId

__all__ = ["anchored_pairs", "link_failed_pairs", "anchors_of_unmatched", "face_pairs"]


def anchored_pairs(anchors: Sequence[dict] | dict | None) -> set[frozenset]:
    """Pairs that an earlier phase round's kept links already hold."""
    if not anchors:
        return set()
    items = [anchors] if isinstance(anchors, dict) else list(anchors)
    return {frozenset((tuple(k["view_a"]), tuple(k["view_b"]))) for a in items for k in a["links"]
            if k.get("status", "ok") == "ok"}


def anchors_of_unmatched(anchors: dict | None, records: Sequence[PairRecord],
                         faces: set[frozenset] | None = None) -> dict | None:
    """A phase round's anchors less the links of pairs this round's interest points matched
    and, given ``faces`` (:func:`face_pairs`), of corner contacts.

    A matched pair's overlap is measured by its inlier matches, spread over the overlap; its
    phase link measures the same pixels once more, as one translation (or a few block
    shifts), and solving both counts that overlap twice, the link pulling toward equal
    rotation and scale where an affine round must let the matches bend (measured on 4 x 4
    single-plane mosaics with 1 % affine truth: 0.12 pixel RMS without the matched pairs'
    links, 0.57-0.89 with them). The links stay where points gave nothing. A corner contact
    of a grid is a redundant link whose small box holds one translation (no blocks): on a
    6 x 6 mosaic of that kind its links took the result from 0.207 to 0.22 pixel.
    """
    if not anchors:
        return anchors
    matched = {frozenset((tuple(r.view_a), tuple(r.view_b))) for r in records if r.ok}

    def keep(k) -> bool:
        pair = frozenset((tuple(k["view_a"]), tuple(k["view_b"])))
        return pair not in matched and (faces is None or pair in faces)

    kept = [keep(k) for k in anchors["links"]]
    if not any(kept):
        return None
    out = {**anchors, "links": [k for k, x in zip(anchors["links"], kept) if x]}
    if anchors.get("weights") is not None:
        out["weights"] = [w for w, x in zip(anchors["weights"], kept) if x]
    return out


def face_pairs(xml_uri: str, records: Sequence[PairRecord], min_relative_overlap: float,
               storage_options=None) -> set[frozenset]:
    """The pairs of ``records`` whose overlap is at least ``min_relative_overlap`` of either view's
    largest (under ``xml_uri``'s registrations): faces of a grid, not its corner contacts."""
    sd = load_dataset(xml_uri, storage_options)
    views: list[ViewId] = sorted({tuple(v) for r in records for v in (r.view_a, r.view_b)})
    return _faces(view_geometry(sd, views), records, min_relative_overlap)


def _faces(geometry, records: Sequence[PairRecord], min_relative: float) -> set[frozenset]:
    vol: dict = {}
    largest: dict = {}
    for r in records:
        a, b = tuple(r.view_a), tuple(r.view_b)
        boxes = [transforms.view_bounding_box(*geometry[v]) for v in (a, b)]
        lo, hi = np.maximum(boxes[0][0], boxes[1][0]), np.minimum(boxes[0][1], boxes[1][1])
        # Single planes have boxes without depth: their overlap is an area, measured in the plane.
        flat = np.array([(bx[1] - bx[0])[i] <= 1e-9 for bx in boxes for i in range(3)]).reshape(2, 3).all(axis=0)
        ext = hi - lo
        v = 0.0 if np.any(ext < -1e-9) else float(np.prod(np.maximum(ext[~flat], 0.0)))
        vol[frozenset((a, b))] = v
        for x in (a, b):
            largest[x] = max(largest.get(x, 0.0), v)
    return {k for k, v in vol.items() if v > 0 and v >= min_relative * max(largest[x] for x in k)}


def link_failed_pairs(
    xml_uri: str, records: Sequence[PairRecord], stitching, min_relative_overlap: float = 0.25,
    anchored: set[frozenset] | None = None, storage_options=None,
) -> tuple[list[PairRecord], dict | None]:
    """Phase-correlate the failed face pairs not ``anchored`` already; records and the round's anchors.

    Returns every record (the correlated ones with a ``phase_correlation`` escalation) and
    ``{"xml": xml_uri, "links": [PhaseLink.to_dict()]}`` of the usable links, or None.
    """
    from rhapso_core.pipeline.phase import stitch_pairs

    anchored = anchored or set()
    failed = [r for r in records if not r.ok and frozenset((tuple(r.view_a), tuple(r.view_b))) not in anchored]
    if not failed:
        return list(records), None
    faces = face_pairs(xml_uri, records, min_relative_overlap, storage_options)
    todo = [r for r in failed if frozenset((tuple(r.view_a), tuple(r.view_b))) in faces]
    if not todo:
        return list(records), None
    links = stitch_pairs(xml_uri, [(tuple(r.view_a), tuple(r.view_b)) for r in todo], stitching, storage_options)
    by_pair = {frozenset((k.view_a, k.view_b)): k for k in links}
    out = []
    for r in records:
        k = by_pair.get(frozenset((tuple(r.view_a), tuple(r.view_b))))
        if k is None:
            out.append(r)
            continue
        step = {"step": "phase_correlation", "status": k.status, "added_points": 0,
                "detail": f"shift {[round(x, 2) for x in k.shift_xyz]} world units, r {k.r:.3f}",
                "reason": k.reason or ("held in the solve by the image link" if k.ok else "")}
        note = ("; held by a phase-correlation link (r %.3f)" % k.r) if k.ok else f"; phase correlation: {k.status}"
        out.append(dataclasses.replace(r, escalations=tuple(r.escalations) + (step,), reason=r.reason + note))
    good = [k.to_dict() for k in links if k.ok]
    return out, ({"xml": xml_uri, "links": good} if good else None)
