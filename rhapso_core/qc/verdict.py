"""The summary verdict: pass / warn / fail, each reason naming the threshold that produced it."""

from __future__ import annotations

import numpy as np

from rhapso_core.qc.ncc_error import ncc_fell
from rhapso_core.qc.params import QCParams

__all__ = ["verdict"]


def _reason(level: str, stage: str, message: str) -> dict:
    return {"level": level, "stage": stage, "message": message}


def verdict(metrics: dict, params: QCParams) -> dict:
    """Judge computed metrics against the thresholds.

    Parameters
    ----------
    metrics : dict
        Sections as produced by :func:`rhapso_core.qc.report.compute_metrics`
        (``detection``, ``matching``, ``solver``, ``loops``, ``fusion``, ``truth``; any may be absent).
    params : QCParams
        The thresholds.

    Returns
    -------
    dict
        ``verdict`` ("pass", "warn" or "fail"), ``reasons`` (``level``, ``stage``,
        ``message``), ``thresholds`` (every QC parameter).
    """
    p = params
    reasons: list[dict] = []
    det = metrics.get("detection")
    if det:
        for r in det["views"]:
            if r["n_points"] < p.min_points_per_view:
                reasons.append(_reason("warn", "detection",
                                       f"{r['name']}: {r['n_points']} points < min_points_per_view {p.min_points_per_view}"))
            elif r["coverage"] < p.min_coverage:
                reasons.append(_reason("warn", "detection",
                                       f"{r['name']}: coverage {r['coverage']:.2f} < min_coverage {p.min_coverage}"))
    mat = metrics.get("matching")
    if mat:
        for r in mat["pairs"]:
            if r["warn"]:
                reasons.append(_reason("warn", "matching", f"{r['name']}: " + "; ".join(r["flag_reasons"])))
    sol = metrics.get("solver")
    if sol:
        n_views = len(sol["tiles"])
        if n_views > 1:
            for v in sol["unconnected_views"]:
                reasons.append(_reason("fail", "solver",
                                       f"t{v['timepoint']} s{v['setup']}: no used link, its registration is unconstrained"))
        for r in sol["links"]:
            if r["status"] == "used" and r["mean_after"] is not None and r["mean_after"] > p.max_link_error:
                reasons.append(_reason("fail", "solver",
                                       f"link {r['name']}: mean distance after {r['mean_after']:.3g} > max_link_error {p.max_link_error}"))
        for t in sol["tiles"]:
            if t["error"] is not None and t["error"] > p.max_tile_error:
                reasons.append(_reason("warn", "solver",
                                       f"{t['name']}: tile error {t['error']:.3g} > max_tile_error {p.max_tile_error}"))
    for c in metrics.get("loops") or ():
        if c["max_error"] > p.max_loop_closure:
            reasons.append(_reason("warn", "solver",
                                   f"cycle {c['name']}: closure error {c['max_error']:.3g} > max_loop_closure {p.max_loop_closure}"))
    fus = metrics.get("fusion")
    if fus:
        for r in fus.get("ncc", ()):
            a, b = r["ncc_after"], r["ncc_before"]
            if a is None:
                continue
            if a < p.min_ncc_after:
                reasons.append(_reason("warn", "fusion", f"{r['name']}: NCC after {a:.3f} < min_ncc_after {p.min_ncc_after}"))
            if ncc_fell(b, a, r.get("ncc_se_before"), r.get("ncc_se_after"), p.max_ncc_drop, p.ncc_drop_sigmas):
                # Worse than the stage positions: the alignment did harm there.
                se = float(np.hypot(r.get("ncc_se_before") or 0.0, r.get("ncc_se_after") or 0.0))
                reasons.append(_reason("fail", "fusion",
                                       f"{r['name']}: NCC fell from {b:.3f} to {a:.3f} (more than max_ncc_drop {p.max_ncc_drop} "
                                       f"and {p.ncc_drop_sigmas:g} standard errors of the difference, {se:.3f}): worse than the input positions"))
        seam = fus.get("seam")
        if seam and seam.get("ratio") is not None and seam["ratio"] > p.max_seam_ratio:
            reasons.append(_reason("warn", "fusion",
                                   f"seam gradient ratio {seam['ratio']:.3f} > max_seam_ratio {p.max_seam_ratio}"))
    for r in metrics.get("verify") or ():
        for t in r.get("reverted", ()):
            reasons.append(_reason("fail", "verify", f"round {r.get('round')}: {t['name']} kept its input registration: "
                                   f"its alignment made its overlaps worse ({t['reason']})"))
        for n in r.get("still_worse", ()):
            reasons.append(_reason("fail", "verify", f"round {r.get('round')}: overlap {n} is worse than the round's input"))
    truth = metrics.get("truth")
    if truth and truth["rms_voxels"] > p.max_truth_rms_voxels:
        reasons.append(_reason("fail", "ground truth",
                               f"RMS error {truth['rms_voxels']:.3g} voxels > max_truth_rms_voxels {p.max_truth_rms_voxels}"))
    level = "fail" if any(r["level"] == "fail" for r in reasons) else "warn" if reasons else "pass"
    return {"verdict": level, "reasons": reasons, "thresholds": params.model_dump(mode="json")}
