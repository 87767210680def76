"""Accuracy of a registration against the ground truth of a synthetic dataset.

For every view, sample points are taken in its voxel frame: the 8 corners of the
tile (``[0, size - 1]`` per axis) and the centre of each region it overlaps another
view in (from the true poses). Each point is mapped to the world by the solved and
by the true view voxel -> world mapping (affine, or warped: :meth:`ViewTruth.voxel_to_world`;
for warped tiles :func:`~rhapso_core.synthetic.consistency.overlap_consistency` is the
more telling figure). A registration is only defined up to a
global transform (the gauge: which tile is fixed, or where the solver put the
whole), so the best single transform ``G`` of the gauge's kind mapping the solved
world positions onto the true ones is fitted over all points
(:mod:`rhapso_core.models`) and removed first. The error of a point is
``|G(solved(p)) - true(p)|``.

Figures are reported in micrometres and in voxels of the finest axis
(``min(voxel_size)``, the unit of BigStitcher's default world frame).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rhapso_core import models
from rhapso_core.model_registry import check_model_name
from rhapso_core.planar import choose_model, planarity
from rhapso_core import transforms as tf
from rhapso_core.synthetic.truth import GroundTruth, ViewTruth

__all__ = ["Score", "ViewError", "ScoreError", "score", "sample_points", "solved_affines"]

Gauge = str  # "none" or a registered model name (rhapso_core.model_registry)


class ScoreError(ValueError):
    """The solved registration cannot be compared with the ground truth."""


@dataclass(frozen=True)
class ViewError:
    """Displacement statistics of one view's sample points after gauge removal."""

    timepoint: int
    setup: int
    n_points: int
    rms_um: float
    max_um: float
    rms_voxels: float
    max_voxels: float
    nominal_rms_um: float
    nominal_max_um: float


@dataclass(frozen=True)
class Score:
    """Accuracy of a solved registration (and, for reference, of the nominal stage positions).

    ``*_um`` figures are micrometres; ``*_voxels`` are voxels of the finest axis
    (``voxel_um`` micrometres). ``gauge_affine`` is the removed global transform
    (world units, xyz, solved world -> true world); ``nominal_gauge_affine`` the one
    removed from the nominal poses.
    """

    gauge: str
    voxel_um: float
    n_views: int
    n_points: int
    rms_um: float
    max_um: float
    rms_voxels: float
    max_voxels: float
    nominal_rms_um: float
    nominal_max_um: float
    nominal_rms_voxels: float
    nominal_max_voxels: float
    gauge_affine: tuple[tuple[float, ...], ...]
    nominal_gauge_affine: tuple[tuple[float, ...], ...]
    per_view: tuple[ViewError, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gauge_affine"] = [list(r) for r in self.gauge_affine]
        d["nominal_gauge_affine"] = [list(r) for r in self.nominal_gauge_affine]
        d["per_view"] = [asdict(v) for v in self.per_view]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def summary(self) -> str:
        return (
            f"registration error ({self.gauge} gauge, {self.n_views} views, {self.n_points} points): "
            f"RMS {self.rms_um:.4g} um = {self.rms_voxels:.4g} vox, max {self.max_um:.4g} um = "
            f"{self.max_voxels:.4g} vox (nominal: RMS {self.nominal_rms_um:.4g} um, max {self.nominal_max_um:.4g} um)"
        )


def sample_points(truth: GroundTruth) -> dict[tuple[int, int], np.ndarray]:
    """Sample points per view (view voxels, xyz): tile corners, then overlap-region centres."""
    views = truth.views
    boxes = [tf.view_bounding_box(v.true_affine, v.size_xyz) for v in views]
    lo = np.array([b[0] for b in boxes])
    hi = np.array([b[1] for b in boxes])
    ilo = np.maximum(lo[:, None, :], lo[None, :, :])
    ihi = np.minimum(hi[:, None, :], hi[None, :, :])
    # A single-plane view's box is flat along its normal: there, touching counts as overlapping.
    flat = ((hi - lo) <= 1e-9)
    flat_pair = flat[:, None, :] | flat[None, :, :]
    overlaps = np.all(np.where(flat_pair, ihi >= ilo - 1e-9, ihi > ilo), axis=2)
    centres = (ilo + ihi) / 2.0
    out: dict[tuple[int, int], np.ndarray] = {}
    for a, v in enumerate(views):
        corners = tf.box_corners(np.zeros(3), np.asarray(v.size_xyz, dtype=np.float64) - 1.0)
        others = [b for b in range(len(views)) if b != a and overlaps[a, b]]
        if others:
            world = centres[a, others]
            corners = np.vstack([corners, v.world_to_voxel(world)])
        out[v.view_id] = corners
    return out


def _as_view_id(key: Any) -> tuple[int, int]:
    if isinstance(key, (int, np.integer)):
        return (0, int(key))
    if hasattr(key, "timepoint") and hasattr(key, "setup"):
        return (int(key.timepoint), int(key.setup))
    tp, setup = key
    return (int(tp), int(setup))


def solved_affines(solved: Any) -> dict[tuple[int, int], np.ndarray]:
    """View voxel -> world affines (xyz, 4x4) per ``(timepoint, setup)`` of a solved registration.

    ``solved`` may be a mapping ``{view id or setup: 4x4 affine}``, a path to a
    BigStitcher XML, or a SpimData object from :mod:`rhapso_core.spimdata` (the
    composed ``ViewRegistration`` transforms of each view are used).
    """
    if isinstance(solved, (str, os.PathLike)):
        from rhapso_core.spimdata import load_xml

        solved = load_xml(Path(solved))
    if isinstance(solved, Mapping):
        out = {}
        for key, value in solved.items():
            a = np.asarray(value, dtype=np.float64)
            if a.shape == (3, 4):
                a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
            if a.shape != (4, 4):
                raise ScoreError(f"solved affine of view {key} has shape {a.shape}, expected (4, 4)")
            out[_as_view_id(key)] = a
        return out
    return _spimdata_affines(solved)


def _spimdata_affines(spim: Any) -> dict[tuple[int, int], np.ndarray]:
    regs = getattr(spim, "registrations", None)
    if isinstance(regs, Mapping) and callable(getattr(spim, "view_to_world", None)):
        return {_as_view_id(v): np.asarray(spim.view_to_world(v), dtype=np.float64) for v in regs}
    if regs is None:
        regs = getattr(spim, "view_registrations", None)
    if regs is None:
        raise ScoreError(f"cannot read view registrations from a {type(spim).__name__}")
    items = regs.items() if isinstance(regs, Mapping) else ((getattr(r, "view_id", r), r) for r in regs)
    out = {}
    for key, reg in items:
        if hasattr(reg, "affine") and callable(reg.affine):
            a = reg.affine()
        elif hasattr(reg, "affine"):
            a = reg.affine
        elif hasattr(reg, "model"):
            a = reg.model() if callable(reg.model) else reg.model
        else:
            a = tf.compose(getattr(t, "affine", t) for t in getattr(reg, "transforms", reg))
        out[_as_view_id(key)] = np.asarray(a, dtype=np.float64)
    return out


def _fit_gauge(kind: str, p: np.ndarray, q: np.ndarray, affines=()) -> np.ndarray:
    if kind == "none":
        return np.eye(4)
    # Sample points of single-plane tiles are coplanar: the gauge is then the in-plane
    # model (a 3-D affine would be undetermined), keeping the normal axis.
    plane = planarity(q, affines)
    try:
        return choose_model(kind, plane=plane).fit(p, q)
    except models.IllDefinedFit as exc:
        raise ScoreError(f"cannot remove the {kind} gauge: {exc}") from None


def _errors(
    views: tuple[ViewTruth, ...],
    pts: dict[tuple[int, int], np.ndarray],
    affines: dict[tuple[int, int], np.ndarray],
    gauge: str,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    solved_w = [tf.apply(affines[v.view_id], pts[v.view_id]) for v in views]
    true_w = [v.voxel_to_world(pts[v.view_id]) for v in views]
    g = _fit_gauge(gauge, np.vstack(solved_w), np.vstack(true_w), [v.true_affine for v in views])
    per_view = [np.linalg.norm(tf.apply(g, s) - t, axis=1) for s, t in zip(solved_w, true_w)]
    return g, per_view, np.concatenate(per_view)


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e**2))) if e.size else 0.0


def score(ground_truth: GroundTruth | str | os.PathLike, solved: Any, gauge: Gauge = "rigid") -> Score:
    """Displacement error of a solved registration against the ground truth.

    Parameters
    ----------
    ground_truth : GroundTruth or path
        The dataset's ground truth (or its ``ground_truth.json``).
    solved : mapping, path or SpimData
        The solved view voxel -> world affines (world units of the dataset, xyz): see
        :func:`solved_affines`. Every view of the ground truth must be present; extra
        views are ignored.
    gauge : {"none", "translation", "rigid", "affine"}, default "rigid"
        Kind of the global transform removed before measuring: "affine" for affine
        solves, "rigid" (or "translation") otherwise; "none" compares absolute poses.

    Returns
    -------
    Score
        RMS and maximum displacement over all sample points (um and finest-axis voxels),
        the same for the nominal poses, and per-view figures.
    """
    truth = ground_truth if isinstance(ground_truth, GroundTruth) else GroundTruth.load(ground_truth)
    try:
        check_model_name(gauge, ("none",))
    except ValueError as e:
        raise ScoreError(f"gauge: {e}") from None
    affines = solved_affines(solved)
    missing = [v.view_id for v in truth.views if v.view_id not in affines]
    if missing:
        raise ScoreError(f"solved registration lacks view(s) {missing[:5]} (timepoint, setup) of the ground truth")
    pts = sample_points(truth)
    unit = truth.world_unit_um
    vox = truth.finest_voxel_um
    g, per_view, all_e = _errors(truth.views, pts, affines, gauge)
    nominal = {v.view_id: v.nominal_affine for v in truth.views}
    gn, per_view_n, all_n = _errors(truth.views, pts, nominal, gauge)
    views = tuple(
        ViewError(
            timepoint=v.timepoint,
            setup=v.setup,
            n_points=int(e.size),
            rms_um=_rms(e) * unit,
            max_um=float(e.max()) * unit,
            rms_voxels=_rms(e) * unit / vox,
            max_voxels=float(e.max()) * unit / vox,
            nominal_rms_um=_rms(en) * unit,
            nominal_max_um=float(en.max()) * unit,
        )
        for v, e, en in zip(truth.views, per_view, per_view_n)
    )
    return Score(
        gauge=gauge,
        voxel_um=vox,
        n_views=len(truth.views),
        n_points=int(all_e.size),
        rms_um=_rms(all_e) * unit,
        max_um=float(all_e.max()) * unit,
        rms_voxels=_rms(all_e) * unit / vox,
        max_voxels=float(all_e.max()) * unit / vox,
        nominal_rms_um=_rms(all_n) * unit,
        nominal_max_um=float(all_n.max()) * unit,
        nominal_rms_voxels=_rms(all_n) * unit / vox,
        nominal_max_voxels=float(all_n.max()) * unit / vox,
        gauge_affine=tuple(tuple(float(x) for x in r) for r in g),
        nominal_gauge_affine=tuple(tuple(float(x) for x in r) for r in gn),
        per_view=views,
    )
