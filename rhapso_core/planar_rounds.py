"""Whether a 2-D mosaic is aligned image-based (phase correlation) first: chosen from its expected points.

Point-based matching needs, per overlap, at least ``matching.model_min_matches`` true
correspondences; a point is found in both views of an overlap about half the time (the
premise of :data:`rhapso_core.autoparams.detection.TARGET_POINTS`), so an overlap that
expects fewer than ``2 * model_min_matches`` detected points cannot be matched by points.
The expected count of an overlap is the density of points the parameter resolution found
in its sampled crops at the resolved threshold (points per in-plane voxel) times the
overlap's in-plane area (view voxels); overlaps touching only at a corner are left out
(:data:`rhapso_core.autoparams.sample.FACE_FRACTION`).
Single planes show only the blobs within a few sigma of their plane, and a sparse or
low-contrast 2-D mosaic often lands there, while phase correlation of the overlap images
needs no points at all (:mod:`rhapso_core.stitching`). So, when ``alignment.rounds`` was
left at its default and every view is detected in 2-D (:func:`rhapso_core.detection.planes.resolve_dimensions`):

* some or all do not: ``[phase, <the default rounds>]`` (phase places every tile, the
  point rounds refine the pairs they can match; a phase link, fitted in blocks, is kept for
  the others, ``stitching.keep_links``). Never ``[phase]`` alone: a phase round fits
  translations only;
* all do: the default rounds, unchanged.

A user-set ``alignment.rounds`` is always kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.autoparams.records import ResolvedValue
from rhapso_core.autoparams.sample import FACE_FRACTION
from rhapso_core.detection.planes import resolve_dimensions
from rhapso_core.matching.pairs import select_pairs

__all__ = ["choose_rounds", "overlap_areas", "expected_overlap_points", "FOUND_IN_BOTH"]

#: Fraction of an overlap's detected points that the other view also finds (see module doc).
FOUND_IN_BOTH = 0.5


def overlap_areas(geometry) -> list[float]:
    """In-plane area (view voxels of the first view) of every face overlap between views.

    ``geometry``: :func:`rhapso_core.pipeline.dataset.view_geometry`'s ``{view: (affine, size_xyz)}``.
    """
    areas = []
    for p in select_pairs(geometry, mode="overlapping"):
        affine, size = geometry[p.a]
        corners = transforms.apply(transforms.invert(np.asarray(affine, dtype=np.float64)),
                                   transforms.box_corners(*np.asarray(p.overlap_box_world, dtype=np.float64)))
        lo = np.clip(corners.min(axis=0), 0, np.asarray(size) - 1)
        hi = np.clip(corners.max(axis=0), 0, np.asarray(size) - 1)
        ext = hi - lo + 1.0  # voxel boxes are inclusive: a one-voxel-wide strip has area 1 per voxel
        if np.all(hi >= lo):
            areas.append(float(ext[0] * ext[1]))
    if not areas:
        return []
    biggest = max(areas)
    return [a for a in areas if a >= FACE_FRACTION * biggest]


def expected_overlap_points(facts: dict, areas: Sequence[float]) -> list[float]:
    """Expected detected points in each overlap of ``areas``, from the resolution's sampled crops.

    ``facts``: the resolution's facts (``sampled_overlaps`` with ``crop_xyz`` and
    ``volume_fraction``, ``detection.expected_points_per_overlap`` scaled by that fraction).
    Returns [] when no crop was read.
    """
    crops = facts.get("sampled_overlaps") or []
    counts = (facts.get("detection") or {}).get("expected_points_per_overlap") or []
    if not crops or len(crops) != len(counts) or not areas:
        return []
    found, area = 0.0, 0.0
    for c, n in zip(crops, counts):
        lo, hi = np.asarray(c["crop_xyz"], dtype=np.float64)
        ext = hi - lo + 1.0
        found += float(n) * float(c["volume_fraction"]) / max(float(ext[2]), 1.0)  # per plane
        area += float(ext[0] * ext[1])
    density = found / area if area > 0 else 0.0
    return [density * a for a in areas]


def choose_rounds(
    geometry,
    detection,
    min_matches: int,
    facts: dict,
    rounds: Sequence[str],
    user_set: bool,
) -> ResolvedValue | None:
    """The ``alignment.rounds`` auto picks for a 2-D mosaic, or None to keep ``rounds``.

    Parameters
    ----------
    geometry : mapping
        ``{view: (view voxel -> world affine, size_xyz)}`` (:func:`~rhapso_core.pipeline.dataset.view_geometry`).
    detection : DetectionParams
        Resolved detection parameters (sigma decides 2-D or 3-D detection).
    min_matches : int
        Resolved ``matching.model_min_matches``.
    facts : dict
        The resolution's facts (see :func:`expected_overlap_points`).
    rounds : sequence of str
        The configured rounds.
    user_set : bool
        The user named ``alignment.rounds``: never changed.
    """
    if user_set or "phase" in rounds or not geometry:
        return None
    if any(resolve_dimensions(detection, (int(s[2]), int(s[1]), int(s[0]))).dimensions != "2d"
           for _, s in geometry.values()):
        return None
    expected = expected_overlap_points(facts, overlap_areas(geometry))
    if not expected:
        return None
    need = min_matches / FOUND_IN_BOTH
    short = [n for n in expected if n < need]
    if not short:
        return None
    # Phase correlation leads, and the point rounds still run even where no overlap is expected to
    # match: the expectation can be wrong (4 x 4 stacks of 8 planes expected too few points and
    # matched 42 of 42 pairs), and a phase round alone fits translations only, so a rotation of a
    # degree stayed (1.8 voxel RMS); where points do fail, the phase links, fitted in blocks, hold
    # the pairs in the point rounds with their rotation and scale.
    chosen = ["phase", *rounds]
    how = (f"{len(short)} of {len(expected)} overlaps cannot be matched by points: phase correlation first, "
           f"then {', '.join(rounds)} where points match (phase links hold the others)")
    reason = (f"2-D views; {min(expected):.0f}-{max(expected):.0f} points expected per overlap, {need:.0f} needed "
              f"({min_matches} inliers, {FOUND_IN_BOTH:g} of the points found in both views): {how}")
    return ResolvedValue("alignment", "rounds", chosen, "auto", reason)
