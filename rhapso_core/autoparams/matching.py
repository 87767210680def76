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
* **Prealignment hook.** The descriptor matcher bridges any shift that leaves the pair an
  overlap wide enough for detection (the width :func:`min_overlap_working_voxels` asks
  for). A stage uncertainty beyond that needs a coarse image-based prealignment first
  (phase correlation, ``rhapso_core.stitching``); the decision is recorded here.
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
) -> tuple[MatchingParams, list[ResolvedValue], PrealignmentDecision, dict]:
    """Replace every ``auto`` in ``params`` (``detection`` must be concrete)."""
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

    # --- stage uncertainty, bridgeable shift, prealignment hook, search radius --------------
    w_need = min_overlap_working_voxels(float(detection.sigma))
    if survey.pairs:
        widest = max(p.across_world for p in survey.pairs)
        spare = []
        for p in survey.pairs:
            ax = int(np.argmin(p.extent_world_xyz))
            spare.append(p.across_world - w_need * wv[ax])
        bridge = max(0.0, float(min(spare)))
    else:
        widest, bridge = 0.0, 0.0
    facts["bridgeable_shift_world"] = round(bridge, 3)
    if stage_uncertainty == AUTO:
        u = bridge
        pre = PrealignmentDecision(
            False, round(u, 3), round(bridge, 3),
            f"stage uncertainty not given: assumed within what the overlaps absorb ({bridge:.1f} world units, "
            f"the narrowest overlap less the {w_need} working voxels detection needs); descriptors are "
            "translation-invariant and the search radius covers every overlap's width")
    else:
        u = float(stage_uncertainty)
        chosen = u > bridge
        pre = PrealignmentDecision(
            chosen, round(u, 3), round(bridge, 3),
            (f"stage uncertainty {u:g} exceeds the {bridge:.1f} world units the matcher can bridge: a coarse "
             "image-based prealignment (phase correlation) should place the tiles first; it is not part of this "
             "build, so matching runs with the search radius widened to the uncertainty")
            if chosen else
            f"stage uncertainty {u:g} is within the {bridge:.1f} world units the matcher bridges")

    if params.search_radius != AUTO:
        put("search_radius", params.search_radius, "user", "set by the user")
    elif not survey.pairs:
        put("search_radius", FALLBACKS["search_radius"], "fallback", "no overlapping pairs: no gating")
    else:
        reach = max(widest, u)
        put("search_radius", round(reach + eps, 3), "auto",
            f"widest nominal overlap {widest:.1f}" + (f" (stage uncertainty {u:g})" if u > widest else "")
            + f" + max_epsilon {eps:.2f} world units: a larger relative error leaves no overlap")

    # --- minimum inliers --------------------------------------------------------------------------
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
               "will not match (image-based stitching needed)") if n_min < 2 * m else ""
        put("model_min_matches", m, "auto",
            f"max(chance bound {m_chance} for {n_pool} points, eps {eps:.2f}, overlap {v_med:.3g} world^3 and "
            f"{params.num_iterations} hypotheses; 12, below which affine fits over thin overlaps are "
            f"ill-conditioned){few}")
    resolved = params.model_copy(update=out)
    order = {"search_radius": 0, "max_epsilon": 1, "model_min_matches": 2}
    rec.sort(key=lambda r: order[r.name])
    facts["stage_uncertainty_world"] = pre.stage_uncertainty
    return resolved, rec, pre, facts
