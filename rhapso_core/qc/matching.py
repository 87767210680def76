"""Matching QC: candidates and inliers per pair, inlier ratio, residual distribution, flags.

Residuals are recomputed from the stored correspondences: the pair's model is
refitted (:mod:`rhapso_core.models`) to the matched points in world coordinates
under one registration for all pairs, and each match's distance to it is a
residual (world units). Pair records (``PairRecord.to_dict()`` of
:mod:`rhapso_core.pipeline.match`) add what the store does not keep: candidates,
RANSAC status and reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rhapso_core import models
from rhapso_core.qc._records import ViewId, name, num, parse_vid, vid

__all__ = ["fit_pair_model", "pair_residuals", "matching_metrics"]


def _fallbacks(kind: str) -> list[str]:
    """``kind``, then the registered models with fewer degrees of freedom, most first."""
    from rhapso_core.model_registry import get_model_spec, model_names

    dof = get_model_spec(kind).dof
    return [kind] + [k for k in reversed(model_names()) if get_model_spec(k).dof < dof]


def fit_pair_model(pa: np.ndarray, pb: np.ndarray, kind: str = "affine") -> np.ndarray | None:
    """The model of ``kind`` mapping ``pa`` onto ``pb`` (world, x y z), falling back to
    simpler models when the points do not determine it; None without enough points."""
    for k in _fallbacks(kind):
        m = models.make_model(k)
        if len(pa) < m.min_matches:
            continue
        try:
            return m.fit(pa, pb)
        except models.IllDefinedFit:
            continue
    return None


def pair_residuals(pa: np.ndarray, pb: np.ndarray, kind: str = "affine") -> np.ndarray:
    """Distances ``|M(pa) - pb|`` (world units) to the refitted pair model; empty if it cannot be fitted."""
    m = fit_pair_model(pa, pb, kind)
    if m is None:
        return np.zeros(0)
    return models.residuals(m, pa, pb)


def _pct(r: np.ndarray) -> dict:
    if r.size == 0:
        return {"residual_p50": None, "residual_p90": None, "residual_max": None}
    p50, p90 = np.percentile(r, [50, 90])
    return {"residual_p50": float(p50), "residual_p90": float(p90), "residual_max": float(r.max())}


def matching_metrics(
    matches_world: Mapping[tuple[ViewId, ViewId], tuple[np.ndarray, np.ndarray]],
    pair_records: Sequence[Mapping] | None = None,
    *,
    min_inliers: int = 12,
    min_inlier_ratio: float = 0.3,
    min_overlap_points: int = 20,
    kind: str = "affine",
) -> dict:
    """Per-pair matching figures and flags.

    Parameters
    ----------
    matches_world : mapping (view_a, view_b) -> (pa, pb)
        Stored correspondences as world points (x y z, one registration for all), ``(K, 3)`` each.
    pair_records : list of dict, optional
        ``PairRecord.to_dict()`` rows; pairs that were tried but stored nothing appear only here.
    min_inliers, min_inlier_ratio : int, float
        A pair below either, or not matched at all, is flagged.
    min_overlap_points : int
        A flagged pair counts as a problem (``warn``) only when both views had at least
        this many points in the overlap (from the pair record); otherwise there was little to match.
    kind : {"affine", "rigid", "translation"}
        Model refitted for the residuals.

    Returns
    -------
    dict
        ``pairs`` rows (``n_candidates``, ``n_inliers``, ``inlier_ratio``, ``rms``, ``status``,
        residual percentiles, ``flag``, ``flag_reasons``, ``warn``), ``residuals`` (all, world
        units, for the histogram) and totals.
    """
    records = {}
    for r in pair_records or ():
        a, b = parse_vid(r["view_a"]), parse_vid(r["view_b"])
        records[(min(a, b), max(a, b))] = r
    keys = sorted(set(records) | {(min(a, b), max(a, b)) for a, b in matches_world})
    rows, every = [], []
    for a, b in keys:
        if (a, b) in matches_world:
            pa, pb = matches_world[(a, b)]
        elif (b, a) in matches_world:
            pb, pa = matches_world[(b, a)]
        else:
            pa = pb = np.zeros((0, 3))
        res = pair_residuals(np.asarray(pa), np.asarray(pb), kind) if len(pa) else np.zeros(0)
        every.append(res)
        rec = records.get((a, b))
        n_stored = int(len(pa))
        if rec is not None:
            n_cand = int(rec["n_candidates"])
            n_inl = int(rec["n_inliers"])
            status, reason = str(rec["status"]), str(rec.get("reason", ""))
            rms = num(rec.get("rms"))
            overlap_pts = min(int(rec["n_points_a"]), int(rec["n_points_b"]))
        else:
            n_cand, n_inl, status, reason = None, n_stored, ("ok" if n_stored else "no matches"), ""
            rms = float(np.sqrt(np.mean(res**2))) if res.size else None
            overlap_pts = None
        ratio = (n_inl / n_cand) if n_cand else None
        why = []
        if status != "ok":
            why.append(f"not matched: {status}" + (f" ({reason})" if reason else ""))
        else:
            if n_inl < min_inliers:
                why.append(f"{n_inl} inliers < min_inliers {min_inliers}")
            if ratio is not None and ratio < min_inlier_ratio:
                why.append(f"inlier ratio {ratio:.2f} < min_inlier_ratio {min_inlier_ratio}")
        warn = bool(why) and (overlap_pts is None or overlap_pts >= min_overlap_points)
        rows.append({
            "a": vid(a), "b": vid(b), "name": f"{name(a)} - {name(b)}",
            "n_points_a": None if rec is None else int(rec["n_points_a"]),
            "n_points_b": None if rec is None else int(rec["n_points_b"]),
            "n_candidates": n_cand, "n_inliers": n_inl, "n_stored": n_stored, "inlier_ratio": ratio,
            "rms": rms, "status": status, **_pct(res), "flag": bool(why), "flag_reasons": why, "warn": warn,
        })
    allres = np.concatenate(every) if every else np.zeros(0)
    return {
        "pairs": rows,
        "n_pairs": len(rows),
        "n_matched": sum(1 for r in rows if r["status"] == "ok"),
        "n_flagged": sum(1 for r in rows if r["flag"]),
        "n_correspondences": int(sum(r["n_stored"] for r in rows)),
        "residuals": allres,
        "residual_summary": _pct(allres),
        "kind": kind,
    }
