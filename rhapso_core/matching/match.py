"""Match one view pair end to end: descriptors -> RANSAC -> robust filter -> (ICP).

Pure computation: the caller gives both views' points already in the world
frame under the current registrations (x y z) and gets back index pairs into
those arrays plus a QC record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rhapso_core.models import IllDefinedFit, Model, make_model, residuals
from rhapso_core.planar import Planarity, choose_model, planarity

from .descriptors import match_descriptors
from .icp import icp_refine, one_to_one
from .pairs import points_in_box
from .params import MatchingParams
from .ransac import ransac, robust_filter

__all__ = ["PairMatch", "match_points", "model_for", "model_for_plane"]

# The robust filter never drops residuals below this fraction of max_epsilon.
_FILTER_FLOOR = 0.01


@dataclass(frozen=True, eq=False)
class PairMatch:
    """Correspondences of one view pair and their QC figures.

    Attributes
    ----------
    idx_a, idx_b : (K,) int64
        Row ``k`` says point ``idx_a[k]`` of A corresponds to point ``idx_b[k]`` of B;
        indices into the arrays given to :func:`match_points`. Empty unless ``ok``.
        One-to-one (no index repeats), sorted by ``idx_a``.
    model : (4, 4) float64 or None
        Model mapping A's world points onto B's (x y z), fitted on the correspondences;
        when not ``ok``, the best rejected model (QC) or None.
    n_points_a, n_points_b : int
        Points that took part (inside the overlap box if one was given).
    n_candidates : int
        Descriptor candidates that passed the ratio test.
    n_inliers : int
        Final correspondences (``len(idx_a)``).
    rms : float
        Root mean square of ``|model(a) - b|`` over the correspondences (world units;
        NaN when there are none).
    status : str
        ``"ok"``, ``"too few points"``, ``"too few candidates"``, ``"no consensus"``
        (RANSAC found no model passing its gates) or ``"filtered out"`` (the robust
        filter left too few).
    reason : str
        One line saying why, for logs and QC.
    """

    idx_a: np.ndarray
    idx_b: np.ndarray
    model: np.ndarray | None
    n_points_a: int
    n_points_b: int
    n_candidates: int
    n_inliers: int
    rms: float
    status: str
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        """JSON-ready QC record (no index arrays)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "n_points_a": self.n_points_a,
            "n_points_b": self.n_points_b,
            "n_candidates": self.n_candidates,
            "n_inliers": self.n_inliers,
            "rms": None if not np.isfinite(self.rms) else float(self.rms),
            "model": None if self.model is None else [float(v) for v in self.model[:3, :].ravel()],
            **self.extra,
        }


def model_for(params: MatchingParams) -> Model:
    """The :mod:`rhapso_core.models` model the parameters ask for."""
    if params.regularization_model == "none" or params.lambda_value == 0.0:
        return make_model(params.model)
    return make_model(params.model, params.lambda_value, params.regularization_model)


def model_for_plane(params: MatchingParams, plane: Planarity | None) -> Model:
    """:func:`model_for`, in the plane when ``plane`` says the points are coplanar."""
    if params.regularization_model == "none" or params.lambda_value == 0.0:
        return choose_model(params.model, plane=plane)
    return choose_model(params.model, params.lambda_value, params.regularization_model, plane)


def _fail(status, reason, n_a, n_b, n_cand, model=None):
    e = np.zeros(0, dtype=np.int64)
    return PairMatch(e, e.copy(), model, n_a, n_b, n_cand, 0, float("nan"), status, reason)


def match_points(
    points_a: np.ndarray,
    points_b: np.ndarray,
    params: MatchingParams | None = None,
    box: np.ndarray | None = None,
    voxel_to_world: Sequence[np.ndarray] = (),
) -> PairMatch:
    """Correspondences between two views' interest points.

    Parameters
    ----------
    points_a, points_b : (N, 3), (M, 3) float
        Interest points of views A and B in the world frame (x y z) under the current
        registrations.
    params : MatchingParams, optional
        Matching parameters (default: ``MatchingParams()``).
    box : (2, 3) float, optional
        World overlap box ``[min_xyz, max_xyz]`` (e.g. :attr:`Pair.overlap_box_world`):
        only points inside it take part. Returned indices still refer to the full arrays.
    voxel_to_world : sequence of (4, 4), optional
        The two views' view voxel -> world affines. They set the voxel size in which
        the points' flatness is judged (:func:`rhapso_core.planar.planarity`); coplanar
        points (a single plane, or a thin stack's extrema all in one plane) are matched
        with the in-plane version of the model, which keeps the normal axis. Empty:
        world units are taken as voxels.

    Returns
    -------
    PairMatch
    """
    params = (MatchingParams() if params is None else params).concrete()
    pa_all = np.asarray(points_a, dtype=np.float64)
    pb_all = np.asarray(points_b, dtype=np.float64)
    for name, arr in (("points_a", pa_all), ("points_b", pb_all)):
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ValueError(f"match_points: {name} must be (N, 3) x y z world points, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"match_points: {name} has non-finite coordinates")
    if box is not None:
        sel_a = np.flatnonzero(points_in_box(pa_all, box))
        sel_b = np.flatnonzero(points_in_box(pb_all, box))
    else:
        sel_a = np.arange(pa_all.shape[0])
        sel_b = np.arange(pb_all.shape[0])
    pa, pb = pa_all[sel_a], pb_all[sel_b]
    n_a, n_b = pa.shape[0], pb.shape[0]
    needed = params.neighbors_needed
    if n_a <= needed or n_b <= needed:
        return _fail("too few points", f"{n_a} and {n_b} points; each side needs more than {needed}", n_a, n_b, 0)

    plane = planarity(np.vstack([pa, pb]), voxel_to_world)
    model = model_for_plane(params, plane)
    min_inliers = max(params.model_min_matches, model.min_matches)
    cand = match_descriptors(
        pa,
        pb,
        num_neighbors=params.num_neighbors,
        redundancy=params.redundancy,
        significance=params.significance,
        search_radius=params.search_radius,
        kind=params.descriptor,
    )
    n_cand = len(cand)
    if n_cand < min_inliers:
        reason = f"{n_cand} candidate{'' if n_cand == 1 else 's'}, fewer than the {min_inliers} needed"
        return _fail("too few candidates", reason, n_a, n_b, n_cand)

    p, q = pa[cand.idx_a], pb[cand.idx_b]
    found = ransac(
        p,
        q,
        model,
        max_epsilon=params.max_epsilon,
        min_inlier_ratio=params.min_inlier_ratio,
        min_inliers=min_inliers,
        num_iterations=params.num_iterations,
        seed=params.seed,
    )
    if not found.ok:
        return _fail("no consensus", found.reason, n_a, n_b, n_cand, found.model)
    affine, inl = found.model, found.inliers
    if params.robust_filter:
        filt = robust_filter(
            p, q, model, inl, params.max_trust, min_inliers, floor=_FILTER_FLOOR * params.max_epsilon
        )
        if not filt.ok:
            return _fail("filtered out", filt.reason, n_a, n_b, n_cand, filt.model)
        affine, inl = filt.model, filt.inliers
    # Two candidates may share a point (several A points whose best is the same B point).
    keep = one_to_one(cand.idx_a[inl], cand.idx_b[inl], residuals(affine, p[inl], q[inl]))
    ia, ib = cand.idx_a[inl][keep], cand.idx_b[inl][keep]
    if ia.size < min_inliers:
        reason = f"{ia.size} one-to-one matches, fewer than {min_inliers}"
        return _fail("filtered out", reason, n_a, n_b, n_cand, affine)
    if ia.size != inl.size:
        try:
            affine = model.fit(pa[ia], pb[ib])
        except IllDefinedFit:
            return _fail("filtered out", "refit on one-to-one matches is ill-defined", n_a, n_b, n_cand, affine)
    extra: dict[str, Any] = {"ransac_inliers": int(found.inliers.size), "model_name": model.name}
    if plane.planar:
        extra["plane"] = plane.reason
    if params.icp_iterations > 0:
        refined = icp_refine(pa, pb, model, affine, params.icp_max_distance, params.icp_iterations, min_inliers)
        if refined is not None:
            affine, ia, ib = refined
            extra["icp_matches"] = int(ia.size)
    res = residuals(affine, pa[ia], pb[ib])
    order = np.argsort(ia, kind="stable")
    return PairMatch(
        sel_a[ia[order]].astype(np.int64),
        sel_b[ib[order]].astype(np.int64),
        affine,
        n_a,
        n_b,
        n_cand,
        int(ia.size),
        float(np.sqrt(np.mean(res**2))),
        "ok",
        "",
        extra,
    )
