"""Interest points of split views: real points moved into sub-view frames, and fake correspondences.

Frames: "parent" coordinates are full-resolution voxels of the original view, x y z;
"sub-view" coordinates are voxels of a sub-view, ``parent - offset``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["in_box", "fake_point_count", "draw_fake_points", "jitter_pair", "fake_rng"]


def in_box(loc_xyz: np.ndarray, lo_xyz: Sequence[float], hi_xyz: Sequence[float]) -> np.ndarray:
    """Boolean mask of points (N, 3) inside the inclusive box ``[lo, hi]`` (BigStitcher's ``contains``)."""
    loc = np.asarray(loc_xyz, dtype=np.float64).reshape(-1, 3)
    return np.all((loc >= np.asarray(lo_xyz, dtype=np.float64)) & (loc <= np.asarray(hi_xyz, dtype=np.float64)), axis=1)


def fake_point_count(lo_xyz: Sequence[int], hi_xyz: Sequence[int], point_density: float, min_points: int, max_points: int) -> int:
    """Fake points for an overlap box: ``ceil(point_density * voxels / 100^3)`` clamped to ``[min_points, max_points]``.

    ``voxels`` counts the voxels of the inclusive box ``[lo, hi]`` (BigStitcher's rule).
    """
    voxels = float(np.prod(np.asarray(hi_xyz, dtype=np.float64) - np.asarray(lo_xyz, dtype=np.float64) + 1.0))
    return int(min(max_points, max(min_points, math.ceil(point_density * voxels / 1.0e6))))


def fake_rng(seed: int, timepoint: int, setup_a: int, setup_b: int) -> np.random.Generator:
    """The random stream of one sub-view pair: independent of the order pairs are processed in."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(timepoint), int(setup_a), int(setup_b))))


def draw_fake_points(
    lo_xyz: Sequence[int],
    hi_xyz: Sequence[int],
    n: int,
    rng: np.random.Generator,
    real_xyz: np.ndarray | None = None,
    exclude_radius: float = 0.0,
    min_points: int = 0,
) -> np.ndarray:
    """Uniform random positions (parent voxels, x y z) in the inclusive box ``[lo, hi]``.

    Parameters
    ----------
    lo_xyz, hi_xyz : 3 numbers
        The overlap box (parent view voxels).
    n : int
        Candidates drawn.
    rng : numpy.random.Generator
    real_xyz : (M, 3) array, optional
        Real interest points of the parent view (parent voxels).
    exclude_radius : float, default 0
        Candidates closer than this to a real point are dropped (voxels; 0 = keep all).
    min_points : int, default 0
        If fewer candidates survive, the dropped ones farthest from real points are
        kept as well up to this many, so a sub-view pair never loses its tie.

    Returns
    -------
    (K, 3) float64 array, ``min(n, max(min_points, survivors)) <= K <= n``
    """
    lo = np.asarray(lo_xyz, dtype=np.float64)
    hi = np.asarray(hi_xyz, dtype=np.float64)
    pts = lo + rng.random((int(n), 3)) * (hi - lo)
    if exclude_radius <= 0 or real_xyz is None or len(real_xyz) == 0 or n == 0:
        return pts
    dist, _ = cKDTree(np.asarray(real_xyz, dtype=np.float64).reshape(-1, 3)).query(pts, k=1)
    keep = dist >= exclude_radius
    if keep.sum() < min_points:
        # Top up with the least crowded rejected candidates.
        rejected = np.flatnonzero(~keep)
        extra = rejected[np.argsort(-dist[rejected], kind="stable")][: min_points - int(keep.sum())]
        keep[extra] = True
    return pts[keep]


def jitter_pair(
    parent_xyz: np.ndarray, error: float, rng: np.random.Generator, voxel_step_xyz=(1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """The two ends of fake correspondences (parent voxels, x y z), each moved by an
    independent Gaussian of standard deviation ``error`` *world units* per axis.

    ``voxel_step_xyz`` is the world length of one parent voxel along each axis. The
    jitter is isotropic in the world, so an anisotropic view (z voxels 4x longer, say)
    is not jittered 4x more along z, which would pull each sub-view's affine around.
    """
    p = np.asarray(parent_xyz, dtype=np.float64).reshape(-1, 3)
    if error <= 0:
        return p.copy(), p.copy()
    sigma = error / np.asarray(voxel_step_xyz, dtype=np.float64)
    return p + rng.normal(0.0, 1.0, p.shape) * sigma, p + rng.normal(0.0, 1.0, p.shape) * sigma
