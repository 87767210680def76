"""Iterative closest point refinement of a pair model (optional, after RANSAC).

Starting from RANSAC's model, every point of A is moved into B's frame and
paired with its nearest point of B within ``max_distance`` (one-to-one: a B
point keeps only its closest A point); the model is refitted on those pairs,
and this repeats until the pairs stop changing. This uses all points of the
overlap, not only the descriptor candidates, so it can add matches that the
descriptors missed (BigStitcher's "ICP refinement").
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from rhapso_core import transforms
from rhapso_core.models import IllDefinedFit, Model

__all__ = ["icp_refine", "one_to_one"]


def one_to_one(idx_a: np.ndarray, idx_b: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Positions of the pairs to keep so that every index appears once, lowest ``score`` first.

    Each A index keeps its lowest-score pair, then each B index keeps its lowest-score
    pair among those. Returns sorted positions into the input arrays.
    """
    idx_a = np.asarray(idx_a)
    idx_b = np.asarray(idx_b)
    if idx_a.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(idx_a.size), score, idx_a))
    _, first = np.unique(idx_a[order], return_index=True)
    keep = order[first]
    order = keep[np.lexsort((keep, score[keep], idx_b[keep]))]
    _, first = np.unique(idx_b[order], return_index=True)
    return np.sort(order[first]).astype(np.int64)


def icp_refine(
    points_a: np.ndarray,
    points_b: np.ndarray,
    model: Model,
    affine: np.ndarray,
    max_distance: float = 5.0,
    iterations: int = 10,
    min_matches: int = 12,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Refine ``affine`` (A world -> B world) by nearest-neighbour pairs.

    Parameters
    ----------
    points_a, points_b : (N, 3), (M, 3) float
        Points of both views in the world frame, x y z.
    model : rhapso_core.models.Model
        Model refitted each round.
    affine : (4, 4) float
        Start model, mapping A's points onto B's.
    max_distance : float
        Pairs farther apart than this after applying the model are ignored (world units).
    iterations : int
        Upper bound on rounds.
    min_matches : int
        Stop (returning None if it happens in the first round) when fewer pairs remain.

    Returns
    -------
    (affine, idx_a, idx_b) or None
        Refined model and the pairs it was fitted on; None if no round had enough pairs.
    """
    pa = np.asarray(points_a, dtype=np.float64)
    pb = np.asarray(points_b, dtype=np.float64)
    tree = cKDTree(pb)
    result = None
    prev = None
    current = np.asarray(affine, dtype=np.float64)
    for _ in range(iterations):
        d, j = tree.query(transforms.apply(current, pa), distance_upper_bound=max_distance)
        ia = np.flatnonzero(np.isfinite(d))
        ib = j[ia]
        keep = one_to_one(ia, ib, d[ia])
        ia, ib = ia[keep], ib[keep]
        if ia.size < max(min_matches, model.min_matches):
            break
        key = (ia.tobytes(), ib.tobytes())
        if key == prev:
            break
        try:
            current = model.fit(pa[ia], pb[ib])
        except IllDefinedFit:
            break
        result = (current, ia.astype(np.int64), ib.astype(np.int64))
        prev = key
    return result
