"""In-plane models for coplanar point sets, and the one function that chooses a model.

Points that lie in one plane (a single-plane tile, a maximum projection, the one plane
of a three-plane stack in which DoG extrema can exist) say nothing about the tilt of
that plane or about a scale along its normal: a 3-D affine fit to them is undetermined
and a 3-D rigid fit is decided by noise. Such points get an :class:`InPlaneModel`: the
chosen model (translation, rigid, similarity or affine) is fitted to the in-plane
coordinates, and the transform keeps the normal direction, the position along it and
every out-of-plane term at identity. For a plane normal to z this is the 2-D model in
x, y with the z row and column of the 4x4 kept ``[0, 0, 1, 0]``.

Whether points are coplanar is read from the points themselves (:func:`planarity`): the
spread of the cloud along its thinnest principal direction, expressed in voxels of that
direction. :func:`choose_model` is the single place that turns a model kind plus that
verdict into a :class:`~rhapso_core.models.Model`; matching (RANSAC), the global solver
and the ground-truth score all call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rhapso_core.models import InterpolatedModel, Model, _DEGENERATE, as_batches, make_model

__all__ = [
    "PlanarKind",
    "Planarity",
    "InPlaneModel",
    "planarity",
    "choose_model",
    "plane_basis",
    "MIN_THICKNESS_VOXELS",
]

PlanarKind = Literal["translation", "rigid", "similarity", "affine"]

#: A point cloud thinner than this (standard deviation along its thinnest principal
#: direction, in voxels of the coarsest view along that direction) counts as coplanar.
#: Why one voxel: a DoG point is localised to a fraction of a voxel, so a spread below
#: one voxel is of the order of the localisation error itself (the three-plane stack
#: whose extrema all sit in its middle plane, spread only by the sub-voxel fit), and a
#: fit of the tilt from it would fit noise. A stack with extrema over several planes
#: (spread of one plane or more) determines its out-of-plane terms and is fitted in 3-D.
MIN_THICKNESS_VOXELS = 1.0

_MIN_MATCHES = {"translation": 1, "rigid": 2, "similarity": 2, "affine": 3}


def plane_basis(normal: Sequence[float]) -> np.ndarray:
    """Rotation ``R`` (3x3) whose rows are two in-plane unit vectors and the unit ``normal``.

    ``R @ x`` gives a point's in-plane coordinates (first two) and its height along the
    normal (third). For ``normal = (0, 0, +-1)`` the in-plane axes are x and +-y, so 2-D
    parameters read as x, y ones.
    """
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    if n[2] < 0:
        n = -n
    # The in-plane axis closest to world x keeps the plane frame close to x, y.
    e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.array([0.0, 1.0, 0.0]) - n[1] * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return np.stack([e1, e2, n])


@dataclass(frozen=True)
class InPlaneModel(Model):
    """A 2-D model in the plane normal to ``normal``; the normal direction is kept.

    ``kind`` is translation (1 match), rigid (2), similarity (rotation and one scale, 2)
    or affine (3). Fits are batched like every :class:`~rhapso_core.models.Model`; a
    sample that does not determine the model (one point for rigid, collinear points for
    affine) gives an all-NaN affine. The fitted 4x4 maps ``x -> R^T B R x + R^T t``
    with ``B = [[A, 0], [0, 1]]`` (``A`` the 2x2 in-plane linear part) and ``t`` having
    no normal component, so heights along the normal never change.
    """

    kind: PlanarKind = "affine"
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)
    name: str = "in-plane affine"
    min_matches: int = 3
    _basis: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self):
        if self.kind not in _MIN_MATCHES:
            raise ValueError(f"unknown in-plane model '{self.kind}' (expected translation, rigid, similarity or affine)")
        object.__setattr__(self, "_basis", plane_basis(self.normal))
        object.__setattr__(self, "min_matches", _MIN_MATCHES[self.kind])
        object.__setattr__(self, "name", f"in-plane {self.kind}")

    def fit_batch(self, p, q, w=None):
        p, q, w = as_batches(p, q, w)
        r = self._basis
        u = (p @ r.T)[..., :2]
        v = (q @ r.T)[..., :2]
        wsum = w.sum(axis=1)
        safe = np.where(wsum > 0, wsum, 1.0)
        uc = np.einsum("bn,bnk->bk", w, u) / safe[:, None]
        vc = np.einsum("bn,bnk->bk", w, v) / safe[:, None]
        du = u - uc[:, None]
        dv = v - vc[:, None]
        b = p.shape[0]
        bad = wsum <= 0
        if self.kind == "translation":
            lin = np.broadcast_to(np.eye(2), (b, 2, 2)).copy()
        elif self.kind in ("rigid", "similarity"):
            dot = np.einsum("bn,bnk,bnk->b", w, du, dv)
            cross = np.einsum("bn,bn->b", w, du[..., 0] * dv[..., 1] - du[..., 1] * dv[..., 0])
            spread = np.einsum("bn,bnk,bnk->b", w, du, du)
            theta = np.arctan2(cross, dot)
            c, s = np.cos(theta), np.sin(theta)
            scale = np.ones(b)
            if self.kind == "similarity":
                scale = (c * dot + s * cross) / np.where(spread > 0, spread, 1.0)
            lin = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2) * scale[:, None, None]
            # One point (or coincident points) leaves the rotation free.
            size = np.einsum("bn,bnk,bnk->b", w, u, u)
            bad |= spread <= _DEGENERATE**1.5 * np.maximum(size, 1e-300)
        else:
            cov_uu = np.einsum("bn,bni,bnj->bij", w, du, du)
            cov_vu = np.einsum("bn,bni,bnj->bij", w, dv, du)
            sv = np.linalg.svd(cov_uu, compute_uv=False)
            bad |= sv[:, 1] <= _DEGENERATE * np.maximum(sv[:, 0], 1e-300)
            cov_uu[bad] = np.eye(2)
            lin = np.linalg.solve(cov_uu.transpose(0, 2, 1), cov_vu.transpose(0, 2, 1)).transpose(0, 2, 1)
        plane = np.zeros((b, 4, 4))
        plane[:, :2, :2] = lin
        plane[:, 2, 2] = 1.0
        plane[:, 3, 3] = 1.0
        plane[:, :2, 3] = vc - np.einsum("bij,bj->bi", lin, uc)
        rot = np.eye(4)
        rot[:3, :3] = r
        out = np.einsum("ij,bjk,kl->bil", rot.T, plane, rot)
        out[bad] = np.nan
        return out


@dataclass(frozen=True)
class Planarity:
    """How flat a point cloud is.

    Attributes
    ----------
    planar : bool
        The cloud's spread along ``normal`` is below the threshold (or it has < 3 points
        in general position, which determines no 3-D model either).
    normal : (3,) tuple
        Unit direction of least spread (world frame, x y z).
    thickness_voxels : float
        Standard deviation along ``normal`` in voxels of the coarsest view along it
        (world units when no view affines were given).
    n_points : int
    reason : str
        One line for logs and QC ("coplanar: spread 0 voxel along (0, 0, 1)").
    """

    planar: bool
    normal: tuple[float, float, float]
    thickness_voxels: float
    n_points: int
    reason: str

    def to_dict(self) -> dict:
        return {"planar": self.planar, "normal": list(self.normal), "thickness_voxels": self.thickness_voxels,
                "n_points": self.n_points, "reason": self.reason}


def _voxel_length(direction: np.ndarray, world_to_voxel: np.ndarray) -> float:
    """World length of one voxel step along ``direction`` in the coarsest of the views whose inverse linear
    parts (world -> voxel, (V, 3, 3)) are given (1 if none)."""
    if len(world_to_voxel) == 0:
        return 1.0
    # All views at once: a solve calls this for every view's normal, so a loop would cost views squared calls.
    g = np.linalg.norm(world_to_voxel @ direction, axis=1)
    with np.errstate(divide="ignore"):
        return float(np.max(np.where(g > 0, 1.0 / g, np.inf)))


def planarity(
    points_world: np.ndarray,
    voxel_to_world: Sequence[np.ndarray] = (),
    min_thickness_voxels: float = MIN_THICKNESS_VOXELS,
) -> Planarity:
    """Decide whether points lie in one plane, from their spread (SVD), not from a flag.

    Parameters
    ----------
    points_world : (N, 3) float
        The points (world frame, x y z), e.g. both sides of a pair's candidates, or every
        matched point of a solve.
    voxel_to_world : sequence of (4, 4), optional
        The views' current view voxel -> world affines: the spread is measured in voxels
        of the coarsest view along each principal direction (a 2 um z voxel counts for
        four 0.5 um xy ones). Empty: world units are taken as voxels.
    min_thickness_voxels : float, default MIN_THICKNESS_VOXELS
        Spread (standard deviation, voxels) below which the cloud is coplanar.

    Returns
    -------
    Planarity
    """
    p = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    n = p.shape[0]
    if n < 3:
        return Planarity(False, (0.0, 0.0, 1.0), float("nan"), n, f"{n} points: too few to tell")
    d = p - p.mean(axis=0)
    _, s, vt = np.linalg.svd(d, full_matrices=False)
    # Candidate normals: the views' own image-plane normals first (the optical axis is where
    # a single plane or a thin stack is thin; the SVD's thinnest direction of a thin, noisy
    # strip of points can lean by a few degrees), then the principal directions.
    # Each view's world -> voxel linear part, inverted once (every candidate direction needs all of them).
    inverses = (np.linalg.inv(np.stack([np.asarray(a, dtype=np.float64)[:3, :3] for a in voxel_to_world]))
                if len(voxel_to_world) else np.zeros((0, 3, 3)))
    cands = []
    for inv in inverses:
        v = inv.T @ np.array([0.0, 0.0, 1.0])
        cands.append(v / np.linalg.norm(v))
    n_view = len(cands)
    cands += [vt[k] for k in range(3)]
    std = np.array([np.sqrt(np.mean((d @ c) ** 2)) for c in cands])
    vox = np.array([_voxel_length(c, inverses) for c in cands])
    thick = std / vox
    flat = thick < min_thickness_voxels
    if n_view and flat[:n_view].any():
        k = int(np.argmin(np.where(flat[:n_view], thick[:n_view], np.inf)))
    else:
        k = n_view + int(np.argmin(thick[n_view:]))
    normal = cands[k] / np.linalg.norm(cands[k])
    if normal[int(np.argmax(np.abs(normal)))] < 0:
        normal = -normal
    normal_t = tuple(float(x) for x in np.round(normal, 12))
    planar = bool(flat[k])
    word = "coplanar" if planar else "3-D"
    reason = (f"{word}: spread {thick[k]:.3g} voxel along ({normal[0]:.3g}, {normal[1]:.3g}, {normal[2]:.3g}) "
              f"(threshold {min_thickness_voxels:g})")
    return Planarity(planar, normal_t, float(thick[k]), n, reason)


def choose_model(
    kind: str,
    lam: float = 0.0,
    regularizer: str = "rigid",
    plane: Planarity | None = None,
) -> Model:
    """The model to fit: ``kind`` (regularised toward ``regularizer`` by ``lam``), in-plane if ``plane`` says so.

    Parameters
    ----------
    kind : {"translation", "rigid", "similarity", "affine"}
        "similarity" exists only in the plane (3-D similarity raises ValueError).
    lam : float
        Weight of the regulariser: ``(1 - lam) * kind + lam * regularizer``.
    regularizer : str
        Model the fit is pulled toward.
    plane : Planarity, optional
        From :func:`planarity`; when ``plane.planar`` the in-plane models about
        ``plane.normal`` are used. None: 3-D models.
    """
    if plane is None or not plane.planar:
        if kind == "similarity" or regularizer == "similarity":
            raise ValueError("the similarity model exists only for coplanar points (in-plane)")
        return make_model(kind, lam, regularizer)  # type: ignore[arg-type]
    main = InPlaneModel(kind=kind, normal=plane.normal)  # type: ignore[arg-type]
    if lam == 0.0 or kind == regularizer:
        return main
    return InterpolatedModel(main=main, regularizer=InPlaneModel(kind=regularizer, normal=plane.normal), lam=lam)  # type: ignore[arg-type]
