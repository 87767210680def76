"""Synthetic point-cloud pairs with known ground truth for the matching tests (not a conftest:
its module name would clash with other test folders' conftests when imported by name)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class SyntheticPair:
    a: np.ndarray  # (N, 3) world x y z
    b: np.ndarray  # (M, 3) world x y z
    truth: np.ndarray  # (4, 4): maps a's shared points onto b's (before noise)
    partner: np.ndarray  # (N,) index into b of a's true partner, -1 for a's own extra points

    def correct(self, idx_a: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
        """Mask of the pairs ``(idx_a[k], idx_b[k])`` that are true correspondences."""
        return self.partner[idx_a] == idx_b


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    th = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * (k @ k)


def affine(linear, t, center=None) -> np.ndarray:
    """4x4 affine ``x -> L (x - c) + c + t`` (rotation about ``c`` keeps the cloud in place)."""
    out = np.eye(4)
    out[:3, :3] = linear
    c = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64)
    out[:3, 3] = c + np.asarray(t, dtype=np.float64) - linear @ c
    return out


def make_pair(
    seed: int,
    truth: np.ndarray,
    n_shared: int = 600,
    n_extra: int = 0,
    noise: float = 0.03,
    box=(200.0, 200.0, 120.0),
    min_spacing: float = 4.0,
) -> SyntheticPair:
    """A's points = shared + own extras; B's = truth(shared) + N(0, noise) per axis, + own extras, shuffled.

    Points are uniform in ``box`` (world units) with a minimum spacing, like detected
    blobs that do not overlap.
    """
    rng = np.random.default_rng(seed)
    box = np.asarray(box, dtype=np.float64)
    need = n_shared + 2 * n_extra
    pts = np.zeros((0, 3))
    while pts.shape[0] < need:
        cand = rng.uniform(0.0, 1.0, size=(need * 2, 3)) * box
        allp = np.vstack([pts, cand])
        tree = cKDTree(allp)
        keep = np.ones(allp.shape[0], dtype=bool)
        for i, j in sorted(tree.query_pairs(min_spacing)):
            if keep[i] and keep[j]:
                keep[j] = False
        pts = allp[keep]
    pts = pts[:need]
    shared, extra_a, extra_b = pts[:n_shared], pts[n_shared : n_shared + n_extra], pts[n_shared + n_extra :]
    a = np.vstack([shared, extra_a])
    moved = shared @ truth[:3, :3].T + truth[:3, 3] + rng.normal(0.0, noise, size=shared.shape)
    # B's own points are drawn in A's frame and moved too, so both sides cover the same region.
    b_extra = extra_b @ truth[:3, :3].T + truth[:3, 3]
    b = np.vstack([moved, b_extra])
    perm = rng.permutation(b.shape[0])
    b = b[perm]
    where = np.argsort(perm)
    partner = np.full(a.shape[0], -1, dtype=np.int64)
    partner[:n_shared] = where[:n_shared]
    return SyntheticPair(a, b, np.asarray(truth, dtype=np.float64), partner)


def model_error(model: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    """RMS distance between where ``model`` and ``truth`` put ``points`` (world units)."""
    d = points @ (model[:3, :3] - truth[:3, :3]).T + (model[:3, 3] - truth[:3, 3])
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))
