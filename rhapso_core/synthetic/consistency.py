"""Overlap consistency: how far apart two tiles put the same specimen point after registration.

:func:`~rhapso_core.synthetic.scoring.score` compares each view with a true *affine*;
a warped tile (:class:`~rhapso_core.synthetic.warp.ZWarp`) has none, and what fusion
shows is whether overlapping tiles agree. So: for specimen points on a grid inside the
overlap of two tiles' true footprints, find each tile's view voxel of the point (the
exact inverse of its true, warped mapping), map both with the SOLVED registration, and
measure the distance. The figure needs no gauge (a global transform moves both
positions alike) and reads unsplit and split XMLs alike: in a split XML
(``split.viewerimgloader``), a parent voxel ``v`` is mapped by every sub-view whose
box ``[min, max]`` (``SetupIdDefinition``) holds it, as ``view_to_world(sub) @ (v - min)``,
and the mean of those positions is taken (to first order what a blending fusion shows).

Figures are world units, micrometres and voxels of the finest axis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.synthetic.scoring import ScoreError, solved_affines
from rhapso_core.synthetic.truth import GroundTruth, ViewTruth

__all__ = ["PairConsistency", "OverlapConsistency", "overlap_consistency", "overlap_points", "solved_mappers"]

Mapper = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PairConsistency:
    """Disagreement of two overlapping views (ground-truth setups) over their overlap points."""

    timepoint: int
    setup_a: int
    setup_b: int
    n_points: int
    rms_voxels: float
    max_voxels: float
    nominal_rms_voxels: float


@dataclass(frozen=True)
class OverlapConsistency:
    """Distance between two tiles' solved world positions of the same specimen points.

    ``*_world`` figures are world units (``world_unit_um`` um), ``*_um`` micrometres,
    ``*_voxels`` voxels of the finest axis (``voxel_um`` um). ``nominal_*`` are the same
    figures for the nominal stage poses, for reference.
    """

    world_unit_um: float
    voxel_um: float
    split: bool
    n_pairs: int
    n_points: int
    rms_world: float
    max_world: float
    rms_um: float
    max_um: float
    rms_voxels: float
    max_voxels: float
    nominal_rms_voxels: float
    nominal_max_voxels: float
    per_pair: tuple[PairConsistency, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_pair"] = [asdict(p) for p in self.per_pair]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def summary(self) -> str:
        kind = "split" if self.split else "unsplit"
        return (
            f"overlap consistency ({kind}, {self.n_pairs} pairs, {self.n_points} points): RMS {self.rms_voxels:.4g} vox "
            f"= {self.rms_um:.4g} um, max {self.max_voxels:.4g} vox (nominal: RMS {self.nominal_rms_voxels:.4g} vox)"
        )


def _warp_margin_world(v: ViewTruth) -> np.ndarray:
    if v.warp is None:
        return np.zeros(3)
    return np.abs(v.true_affine[:3, :3]) @ np.abs(v.warp.amplitude_xyz)


def _inside(p: np.ndarray, size_xyz, margin: float) -> np.ndarray:
    hi = np.asarray(size_xyz, dtype=np.float64) - 1.0 - margin
    return np.all((p >= margin) & (p <= hi), axis=1)


def overlap_points(
    a: ViewTruth, b: ViewTruth, points: int = 4000, margin_voxels: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Specimen points seen by both views, as each view's voxels ``(va, vb)`` (each (N, 3), xyz).

    A regular world grid of about ``points`` points fills the intersection of the two
    true footprints' bounding boxes (widened by the warp amplitude); only points whose
    exact view voxels lie at least ``margin_voxels`` inside both views are kept.
    """
    la, ha = tf.view_bounding_box(a.true_affine, a.size_xyz)
    lb, hb = tf.view_bounding_box(b.true_affine, b.size_xyz)
    lo = np.maximum(la - _warp_margin_world(a), lb - _warp_margin_world(b))
    hi = np.minimum(ha + _warp_margin_world(a), hb + _warp_margin_world(b))
    ext = hi - lo
    if np.any(ext <= 0):
        return np.zeros((0, 3)), np.zeros((0, 3))
    spacing = (np.prod(ext) / max(points, 1)) ** (1.0 / 3.0)
    n = np.maximum(np.ceil(ext / spacing).astype(int), 2)
    axes = [lo[i] + (np.arange(n[i]) + 0.5) * ext[i] / n[i] for i in range(3)]
    world = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    va, vb = a.world_to_voxel(world), b.world_to_voxel(world)
    keep = _inside(va, a.size_xyz, margin_voxels) & _inside(vb, b.size_xyz, margin_voxels)
    return va[keep], vb[keep]


def _load(solved: Any) -> Any:
    if isinstance(solved, (str, os.PathLike)):
        from rhapso_core.spimdata import load_xml

        return load_xml(Path(solved))
    return solved


def solved_mappers(solved: Any) -> tuple[dict[tuple[int, int], Mapper], bool]:
    """Per parent view ``(timepoint, setup)``, a function parent view voxels (N, 3) -> solved world.

    ``solved`` is a path to a BigStitcher XML, a SpimData, or a mapping ``{view: 4x4}``.
    For a split dataset the parent's sub-views are used (see the module docstring).
    Returns the mappers and whether the dataset was split.
    """
    from rhapso_core.spimdata import SplitImageLoader

    sd = _load(solved)
    loader = getattr(sd, "image_loader", None)
    if isinstance(sd, Mapping) or not isinstance(loader, SplitImageLoader):
        return {v: (lambda p, a=a: tf.apply(a, p)) for v, a in solved_affines(sd).items()}, False
    affines = solved_affines(sd)
    by_setup: dict[int, list[tuple[int, np.ndarray]]] = {}
    for (tp, setup), a in affines.items():
        by_setup.setdefault(setup, []).append((tp, a))
    children: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for d in loader.setup_ids:
        for tp, a in by_setup.get(d.new_id, ()):
            box = (np.asarray(d.min, dtype=np.float64), np.asarray(d.max, dtype=np.float64), a)
            children.setdefault((tp, int(d.old_id)), []).append(box)

    def mapper(subs):
        def f(p: np.ndarray) -> np.ndarray:
            p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
            acc, cnt = np.zeros_like(p), np.zeros(len(p))
            for lo, hi, a in subs:
                m = np.all((p >= lo) & (p <= hi), axis=1)
                acc[m] += tf.apply(a, p[m] - lo)
                cnt[m] += 1
            if np.any(cnt == 0):
                raise ScoreError(f"{int(np.sum(cnt == 0))} parent voxels lie in no sub-view of the split dataset")
            return acc / cnt[:, None]

        return f

    return {v: mapper(subs) for v, subs in children.items()}, True


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e**2))) if e.size else 0.0


def overlap_consistency(
    ground_truth: GroundTruth | str | os.PathLike,
    solved: Any,
    points_per_pair: int = 4000,
    margin_voxels: float = 0.0,
) -> OverlapConsistency:
    """Disagreement of overlapping tiles under a solved registration (unsplit or split XML).

    Parameters
    ----------
    ground_truth : GroundTruth or path
        The dataset's ground truth (``ground_truth.json``); its views are the parent tiles.
    solved : path, SpimData or mapping
        The registration: an XML over the same views, or a split XML of them
        (``split.viewerimgloader``); or ``{view id: 4x4 view voxel -> world affine}``.
    points_per_pair : int, default 4000
        About how many grid points to sample in each overlap's bounding box (points).
    margin_voxels : float, default 0
        Keep only points at least this far inside both tiles (view voxels).

    Returns
    -------
    OverlapConsistency
        RMS and max of ``|solved_a(va) - solved_b(vb)|`` over all overlap points, where
        ``va``, ``vb`` are two tiles' exact voxels of the same specimen point.

    Raises
    ------
    ScoreError
        The registration lacks a tile of the ground truth, or no two tiles overlap.
    """
    truth = ground_truth if isinstance(ground_truth, GroundTruth) else GroundTruth.load(ground_truth)
    mappers, split = solved_mappers(solved)
    missing = [v.view_id for v in truth.views if v.view_id not in mappers]
    if missing:
        raise ScoreError(f"solved registration lacks view(s) {missing[:5]} (timepoint, setup) of the ground truth")
    unit, vox = truth.world_unit_um, truth.finest_voxel_um
    to_vox = unit / vox
    pairs, errs, nominal_errs = [], [], []
    views = truth.views
    for i, a in enumerate(views):
        for b in views[i + 1 :]:
            if a.timepoint != b.timepoint:
                continue
            va, vb = overlap_points(a, b, points_per_pair, margin_voxels)
            if not len(va):
                continue
            e = np.linalg.norm(mappers[a.view_id](va) - mappers[b.view_id](vb), axis=1)
            en = np.linalg.norm(tf.apply(a.nominal_affine, va) - tf.apply(b.nominal_affine, vb), axis=1)
            errs.append(e)
            nominal_errs.append(en)
            pairs.append(PairConsistency(
                a.timepoint, a.setup, b.setup, int(e.size), _rms(e) * to_vox, float(e.max()) * to_vox, _rms(en) * to_vox,
            ))
    if not pairs:
        raise ScoreError("no two views of the ground truth overlap: nothing to measure")
    e, en = np.concatenate(errs), np.concatenate(nominal_errs)
    return OverlapConsistency(
        world_unit_um=unit,
        voxel_um=vox,
        split=split,
        n_pairs=len(pairs),
        n_points=int(e.size),
        rms_world=_rms(e),
        max_world=float(e.max()),
        rms_um=_rms(e) * unit,
        max_um=float(e.max()) * unit,
        rms_voxels=_rms(e) * to_vox,
        max_voxels=float(e.max()) * to_vox,
        nominal_rms_voxels=_rms(en) * to_vox,
        nominal_max_voxels=float(en.max()) * to_vox,
        per_pair=tuple(pairs),
    )
