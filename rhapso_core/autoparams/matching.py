"""Matching parameters of a dataset: RANSAC error, minimum inliers, search radius, prealignment.

* **RANSAC error.** A point found on a working grid of voxel ``w`` (world units per axis)
  is localised to better than half a working voxel per axis even where the sub-voxel fit
  fails, so ``LOC_FRACTION * w`` bounds its error; two views' errors add, and a true
  match is kept with ``max_epsilon = EPS_K * |LOC_FRACTION * w|`` (3 sigma of the bound).
* **Minimum inliers.** At least the count that chance cannot reach: with ``n``
  candidates spread over an overlap of volume ``V``, a wrong model catches a wrong
  candidate within ``max_epsilon`` with probability ``p = (4/3 pi eps^3) / V``; over
  ``num_iterations`` hypotheses of an affine minimal sample (4), the expected number of
  wrong models gathering ``m`` inliers is ``I * C(n - 4, m - 4) * p^(m - 4)``, kept below
  ``FALSE_CONSENSUS``. Never below BigStitcher's 12: fewer inliers spread over a thin
  overlap leave an affine fit ill-conditioned across the tile (on the accuracy matrix's
  sparse cell, 8 inliers let one such link move tiles by 30 voxels where 12 left them
  at their stage positions). Overlaps holding fewer points than that fail to match and
  say so; their tiles keep their stage positions.
* **Search radius.** True matches lie within the relative stage error of each other. A
  pair whose error exceeded its overlap width would not overlap at all, so the radius
  covers the widest nominal overlap (or a user-given stage uncertainty) plus the RANSAC
  error: it never cuts a reachable match and still keeps descriptors from pairing points
  across the whole tile.
* **Prealignment.** The descriptor matcher bridges any shift that leaves the pair an
  overlap wide enough for detection (the width :func:`min_overlap_working_voxels` asks
  for). A stage error beyond that (the user's ``stage_uncertainty``, or the largest shift
  that phase correlation measured on a few sampled overlaps, :mod:`.probe`) needs a
  coarse image-based prealignment first (a phase-correlation round,
  ``rhapso_core.stitching``); so does a specimen whose overlaps hold fewer than
  ``FEW_POINTS_FACTOR`` x the minimum inliers in points: phase correlation uses every
  voxel of the overlap, and its links hold those pairs in the point rounds. The
  decision and its reason are recorded; the rounds run it (``alignment.prealign``).
"""

from __future__ import annotations

import math

import numpy as np

from rhapso_core.autoparams.detection import min_overlap_working_voxels
from rhapso_core.autoparams.records import PrealignmentDecision, ResolvedValue
from rhapso_core.autoparams.survey import DatasetSurvey
from rhapso_core.detection import DetectionParams
from rhapso_core.matching import MatchingParams
from rhapso_core.matching.params import AUTO, FALLBACKS

__all__ = ["resolve_matching", "min_inliers_against_chance", "LOC_FRACTION", "EPS_K", "FALSE_CONSENSUS"]

LOC_FRACTION = 0.5
EPS_K = 3.0
FALSE_CONSENSUS = 1e-3
BIGSTITCHER_MIN_INLIERS = 12
AFFINE_SAMPLE = 4
# About half of an overlap's points are found in both views and survive as inliers: an overlap with
# fewer than twice the minimum inliers cannot be expected to match.
FEW_POINTS_FACTOR = 2.0


def min_inliers_against_chance(n: int, eps: float, volume: float, iterations: int) -> int:
    """Smallest ``m`` whose expected count of chance consensus sets stays below FALSE_CONSENSUS."""
    p = min(1.0, (4.0 / 3.0) * math.pi * eps**3 / max(volume, 1e-9))
    extra_pool = max(n - AFFINE_SAMPLE, 1)
    for m in range(AFFINE_SAMPLE + 1, 200):
        k = m - AFFINE_SAMPLE
        if k > extra_pool:
            return m
        log_e = (math.log(iterations) + math.lgamma(extra_pool + 1) - math.lgamma(k + 1)
                 - math.lgamma(extra_pool - k + 1) + k * math.log(max(p, 1e-300)))
        if log_e < math.log(FALSE_CONSENSUS):
            return m
    return 200


def resolve_matching(
    survey: DatasetSurvey,
    params: MatchingParams,
    detection: DetectionParams,
    expected_points: list[float],
    stage_uncertainty: float | str = AUTO,
    probe: list | None = None,
    prealign: str = AUTO,
) -> tuple[MatchingParams, list[ResolvedValue], PrealignmentDecision, dict]:
    """Replace every ``auto`` in ``params`` (``detection`` must be concrete) and decide on prealignment.

    ``probe``: :class:`~rhapso_core.autoparams.probe.ShiftProbe` of a few sampled overlaps (the
    measured stage error); ``prealign``: ``alignment.prealign`` (auto / on / off).
    """
    out: dict[str, object] = {}
    rec: list[ResolvedValue] = []
    facts: dict = {}

    def put(name, value, source, reason):
        out[name] = value
        rec.append(ResolvedValue("matching", name, value, source, reason))

    wv = np.array([detection.dsxy * survey.voxel_xy_world, detection.dsxy * survey.voxel_xy_world,
                   detection.dsz * survey.voxel_z_world])
    facts["working_voxel_world_xyz"] = [round(float(x), 4) for x in wv]

    if params.max_epsilon != AUTO:
        put("max_epsilon", params.max_epsilon, "user", "set by the user")
    else:
        eps = EPS_K * float(np.linalg.norm(LOC_FRACTION * wv))
        put("max_epsilon", round(eps, 3), "auto",
            f"{EPS_K:g} x the localisation bound |{LOC_FRACTION:g} working voxel| = |{LOC_FRACTION:g} x "
            f"{[round(float(x), 3) for x in wv]}| world units")
    eps = float(out["max_epsilon"])

    # --- bridgeable shift -------------------------------------------------------------------------
    w_need = min_overlap_working_voxels(float(detection.sigma))
    if survey.pairs:
        widest = max(p.across_world for p in survey.pairs)
        spare = []
        for p in survey.pairs:
            spare.append(p.across_world - w_need * wv[p.across_axis])
        bridge = max(0.0, float(min(spare)))
    else:
        widest, bridge = 0.0, 0.0
    facts["bridgeable_shift_world"] = round(bridge, 3)

    # --- minimum inliers --------------------------------------------------------------------------
    n_min = None
    if params.model_min_matches != AUTO:
        put("model_min_matches", params.model_min_matches, "user", "set by the user")
    elif not survey.pairs or not expected_points:
        put("model_min_matches", FALLBACKS["model_min_matches"], "fallback",
            "no overlap sampled: BigStitcher's 12")
    else:
        n_min = max(0.0, float(min(expected_points)))
        vols = [float(np.prod(p.extent_world_xyz)) for p in survey.pairs]
        v_med = float(np.median(vols))
        n_pool = int(max(expected_points))
        m_chance = min_inliers_against_chance(n_pool, eps, v_med, params.num_iterations)
        m = max(m_chance, BIGSTITCHER_MIN_INLIERS)
        few = (f"; the poorest sampled overlap expects {n_min:.0f} points, too few to reach it: such pairs "
               "are linked by phase correlation instead (prealignment)") if n_min < FEW_POINTS_FACTOR * m else ""
        put("model_min_matches", m, "auto",
            f"max(chance bound {m_chance} for {n_pool} points, eps {eps:.2f}, overlap {v_med:.3g} world^3 and "
            f"{params.num_iterations} hypotheses; 12, below which affine fits over thin overlaps are "
            f"ill-conditioned){few}")
    if expected_points and survey.pairs and n_min is None:
        n_min = max(0.0, float(min(expected_points)))
    m_used = int(out["model_min_matches"])

    # --- prealignment: the stage error beyond the bridge, or overlaps too poor in points ----------
    pre, u = _prealignment(survey, bridge, stage_uncertainty, probe or [], n_min, m_used, prealign)

    if params.search_radius != AUTO:
        put("search_radius", params.search_radius, "user", "set by the user")
    elif not survey.pairs:
        put("search_radius", FALLBACKS["search_radius"], "fallback", "no overlapping pairs: no gating")
    elif pre.chosen:
        # The phase round leaves a sub-voxel residual; the radius only has to keep the nominal overlap.
        put("search_radius", round(widest + eps, 3), "auto",
            f"widest nominal overlap {widest:.1f} + max_epsilon {eps:.2f} world units: the phase-correlation "
            "prealignment removes the stage error before matching")
    else:
        reach = max(widest, u)
        put("search_radius", round(reach + eps, 3), "auto",
            f"widest nominal overlap {widest:.1f}" + (f" (stage uncertainty {u:g})" if u > widest else "")
            + f" + max_epsilon {eps:.2f} world units: a larger relative error leaves no overlap")
    resolved = params.model_copy(update=out)
    order = {"search_radius": 0, "max_epsilon": 1, "model_min_matches": 2}
    rec.sort(key=lambda r: order[r.name])
    facts["stage_uncertainty_world"] = pre.stage_uncertainty
    facts["stage_error_probe"] = [k.to_dict() for k in probe or []]
    return resolved, rec, pre, facts


def _prealignment(survey, bridge: float, stage_uncertainty, probe: list, n_min: float | None, m: int,
                  mode: str) -> tuple[PrealignmentDecision, float]:
    """The decision and the stage uncertainty (world units) it assumed."""
    reasons: list[str] = []
    causes: list[str] = []
    if stage_uncertainty != AUTO:
        u = float(stage_uncertainty)
        if u > bridge:
            causes.append("stage_uncertainty")
            reasons.append(f"stage uncertainty {u:g} (matching.stage_uncertainty) exceeds the {bridge:.1f} world "
                           "units the matcher can bridge")
        else:
            reasons.append(f"stage uncertainty {u:g} is within the {bridge:.1f} world units the matcher bridges")
    else:
        good = [k for k in probe if k.ok]
        if good:
            worst = max(good, key=lambda k: k.length)
            u = worst.length
            what = (f"largest relative stage error measured by phase correlation of {len(good)} of {len(probe)} "
                    f"sampled overlap(s): {u:.1f} world units (t{worst.a[0]} s{worst.a[1]} - t{worst.b[0]} "
                    f"s{worst.b[1]}, r {worst.r:.2f})")
            if u > bridge:
                causes.append("measured_stage_error")
                reasons.append(f"{what} exceeds the {bridge:.1f} the matcher can bridge (the narrowest overlap "
                               "less the working voxels detection needs)")
            else:
                reasons.append(f"{what} is within the {bridge:.1f} the matcher bridges")
        else:
            u = bridge
            reasons.append(
                (f"no sampled overlap gave a trustworthy phase-correlation shift ({len(probe)} tried): " if probe
                 else "stage error not measured: ")
                + f"assumed within what the overlaps absorb ({bridge:.1f} world units)")
    if n_min is not None and survey.pairs and n_min < FEW_POINTS_FACTOR * m:
        causes.append("few_points")
        reasons.append(f"the poorest sampled overlap expects {n_min:.0f} interest points, fewer than "
                       f"{FEW_POINTS_FACTOR:g} x the {m} inliers a match needs: phase correlation of the images "
                       "links such overlaps (its links are kept by the point rounds)")
    if survey.pairs and all(any(p.flat_xyz) for p in survey.pairs):
        causes.append("single_plane")
        reasons.append("single-plane views: phase correlation of an overlap compares every pixel of it, where a "
                       "plane cuts few features into interest points; its links, fitted in blocks along each "
                       "overlap, carry the relative rotation and scale into the point rounds")
    chosen = bool(causes) and bool(survey.pairs)
    if mode == "on":
        chosen, causes = bool(survey.pairs), ["user"]
        reasons.insert(0, "alignment.prealign=on (set by the user)")
    elif mode == "off":
        if chosen:
            reasons.insert(0, "alignment.prealign=off (set by the user), although")
        chosen, causes = False, []
    elif not survey.pairs:
        reasons.append("no overlapping pairs")
    text = "; ".join(reasons)
    if chosen:
        text = "phase-correlation prealignment before matching: " + text
    return PrealignmentDecision(chosen, round(u, 3), round(bridge, 3), text, ",".join(causes)), u
