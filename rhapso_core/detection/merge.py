"""Merging chunk results: duplicate removal (``combine_distance``) and the ``max_spots`` cap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from rhapso_core.detection.params import DetectionParams
from rhapso_core.detection.points import InterestPoints

__all__ = ["combine_close", "combine_across_planes", "cap_spatially", "merge_points", "CAP_CELLS_PER_AXIS"]

# Grid of the spatially balanced cap: this many cells along the region's longest axis.
CAP_CELLS_PER_AXIS = 8


def _strength_order(points: InterestPoints) -> np.ndarray:
    """Indices by decreasing |DoG|, ties broken by position (z, y, x) for determinism."""
    loc = points.loc_xyz
    return np.lexsort((loc[:, 0], loc[:, 1], loc[:, 2], -np.abs(points.dog.astype(np.float64))))


def combine_close(points: InterestPoints, distance: float) -> InterestPoints:
    """Greedy non-maximum suppression: strongest |DoG| first, drop points within ``distance``.

    Parameters
    ----------
    points : InterestPoints
    distance : float
        Merge radius in full-resolution view voxels (Euclidean, x y z); 0 removes only
        exact duplicates.
    """
    n = len(points)
    if n < 2:
        return points
    order = _strength_order(points)
    pts = points.subset(order)
    tree = cKDTree(pts.loc_xyz)
    pairs = tree.query_pairs(r=max(float(distance), 1e-9), output_type="ndarray")
    if pairs.size == 0:
        return pts
    return pts.subset(_keep_strongest(n, pairs))


def _keep_strongest(n: int, pairs: np.ndarray) -> np.ndarray:
    """Mask of the points kept when, among ``n`` points in strength order, the weaker of each
    pair in ``pairs`` (rows of two indices) is dropped if the stronger one is kept."""
    nbrs = [[] for _ in range(n)]
    for i, j in pairs:
        nbrs[min(i, j)].append(max(i, j))
    keep = np.ones(n, bool)
    for i in range(n):
        if keep[i]:
            for j in nbrs[i]:
                keep[j] = False
    return keep


def combine_across_planes(points: InterestPoints, radius_xy: float) -> InterestPoints:
    """One point per blob of a stack detected plane by plane: strongest |DoG| first, drop
    points of other planes within ``radius_xy`` in x, y (full-resolution pixels).

    A blob thicker than a plane is found in each plane it shows in, at the same x, y;
    left as several points, its copies become each other's nearest neighbours and every
    descriptor looks alike. The kept point is the plane where the blob is strongest.
    """
    n = len(points)
    if n < 2 or np.unique(points.loc_xyz[:, 2]).size < 2:
        return points
    pts = points.subset(_strength_order(points))
    loc = pts.loc_xyz
    pairs = cKDTree(loc[:, :2]).query_pairs(r=max(float(radius_xy), 1e-9), output_type="ndarray")
    if pairs.size == 0:
        return pts
    pairs = pairs[loc[pairs[:, 0], 2] != loc[pairs[:, 1], 2]]
    return pts.subset(_keep_strongest(n, pairs))


def cap_spatially(points: InterestPoints, max_spots: int,
                  bounds_xyz: np.ndarray | None = None) -> InterestPoints:
    """Keep at most ``max_spots`` points, spread over the region rather than brightest-first.

    Rule: the region (``bounds_xyz`` = [[xmin, ymin, zmin], [xmax, ymax, zmax]], full-res
    view voxels; default the points' bounding box) is cut into a grid of
    ``CAP_CELLS_PER_AXIS`` cells along its longest axis and proportionally fewer (>= 1)
    along the others, fewer still if needed so that there are at most ``max_spots``
    cells (then every non-empty cell keeps at least one point). Points are ranked by
    |DoG| inside their cell; all rank-0 points
    (each cell's strongest) are taken first, strongest first, then all rank-1 points,
    and so on until ``max_spots`` are taken. So a dim half of the view keeps points
    even when the other half is much brighter.
    """
    n = len(points)
    if max_spots <= 0 or n <= max_spots:
        return points
    loc = points.loc_xyz
    if bounds_xyz is None:
        lo, hi = loc.min(axis=0), loc.max(axis=0)
    else:
        b = np.asarray(bounds_xyz, dtype=np.float64).reshape(2, 3)
        lo, hi = b[0], b[1]
    span = np.maximum(hi - lo, 1e-9)
    g = CAP_CELLS_PER_AXIS
    while True:
        cells = np.clip(np.rint(g * span / span.max()), 1, g).astype(np.int64)
        if g == 1 or int(np.prod(cells)) <= max_spots:
            break
        g -= 1
    idx = np.clip(np.floor((loc - lo) / span * cells).astype(np.int64), 0, cells - 1)
    cell_id = (idx[:, 2] * cells[1] + idx[:, 1]) * cells[0] + idx[:, 0]
    strength = np.abs(points.dog.astype(np.float64))
    order = np.lexsort((loc[:, 0], loc[:, 1], loc[:, 2], -strength, cell_id))
    sorted_cells = cell_id[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_cells)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - run_start
    take = np.lexsort((loc[:, 0], loc[:, 1], loc[:, 2], -strength, rank))[:max_spots]
    return points.subset(np.sort(take))


def merge_points(parts: Sequence[InterestPoints], params: DetectionParams,
                 bounds_xyz: np.ndarray | None = None, renumber: bool = True) -> InterestPoints:
    """Join chunk results of one region: combine close points, cap, canonical order, ids.

    Parameters
    ----------
    parts : sequence of InterestPoints
        Results of :func:`~rhapso_core.detection.view.detect_chunk` for one region.
    params : DetectionParams
        Uses ``combine_distance`` (full-res voxels) and ``max_spots`` (count, 0 = no cap).
    bounds_xyz : (2, 3) array, optional
        Region [min, max] corners in full-res view voxels (x y z) for the cap's grid.
    renumber : bool
        Give ids 0..N-1 in position order (z, y, x).
    """
    pts = InterestPoints.concat(list(parts))
    if params.combine_distance > 0:
        pts = combine_close(pts, params.combine_distance)
    if params.dimensions == "2d":
        # The DoG's own scale (full-res pixels): blobs closer than that are not told apart in a plane either.
        pts = combine_across_planes(pts, params.sigma * params.dsxy)
    pts = cap_spatially(pts, params.max_spots, bounds_xyz)
    pts = pts.sorted_by_position()
    return pts.renumbered() if renumber else pts
