"""Matches the solve leaves out: points localised from voxels past their view's border.

A DoG point within about twice the outer Gaussian's sigma of a view's edge is found with
the filters reading mirrored voxels beyond the edge: a blob there meets its own mirror
image in the DoG's surround and its position is pushed off (generated single planes,
sigma 1.8: 0.22 pixel too far inside on average 2-4 pixels from the edge, within 0.03
beyond 4). An overlap lies at the edge of one of its two views, so the pair's matches
there carry that view's bias, and a translation bias along the strip's normal is what an
affine tile cannot tell from its true pose. Detection records the margin with each view's
points (:attr:`~rhapso_core.pointstore.StoredPoints.border_margin_xyz`); matching still uses
every point (RANSAC's consensus is sturdier with them); the solve leaves those matches
out where the pair keeps enough without them.

Measured (points-only affine solve, from the same matches): a 6 x 6 single-plane mosaic
with 1 % affine truth 0.21 -> 0.10 pixel RMS; the ``real-affine`` cell (3 x 2 tiles of real
texture) 0.62 -> 0.41 voxel; the ``fibres`` cell 0.43 -> 0.39. Dropping the points at
detection instead lost a pair of the ``fibres`` cell in matching (0.14 -> 0.98 voxel).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LONG_AXIS_MARGINS", "inside_margins", "solve_subset", "solved_matches"]

#: Margins an axis must span for matches near its borders to be left out (a quarter of it at most).
LONG_AXIS_MARGINS = 8


def inside_margins(loc_xyz: np.ndarray, size_xyz, margin_xyz) -> np.ndarray:
    """Mask of view-voxel positions (n, 3, x y z) at least ``margin_xyz`` inside the view's borders along
    each axis with a margin that is at least :data:`LONG_AXIS_MARGINS` margins long; all True where
    ``margin_xyz`` is None."""
    loc = np.asarray(loc_xyz, dtype=np.float64).reshape(-1, 3)
    keep = np.ones(len(loc), dtype=bool)
    if margin_xyz is None:
        return keep
    for ax, (n, m) in enumerate(zip(size_xyz, margin_xyz)):
        if m <= 0 or n < LONG_AXIS_MARGINS * m:
            continue
        keep &= (loc[:, ax] >= m) & (loc[:, ax] <= n - 1 - m)
    return keep


def solve_subset(keep: np.ndarray, min_matches: int) -> np.ndarray:
    """The matches of one link the solve uses: ``keep`` where it leaves at least half of them and at least
    ``min_matches``; otherwise all (a narrow or sparse overlap's matches are worth more than their bias)."""
    keep = np.asarray(keep, dtype=bool)
    n_keep = int(keep.sum())
    if n_keep >= max(int(min_matches), (len(keep) + 1) // 2):
        return keep
    return np.ones(len(keep), dtype=bool)


def solved_matches(points_a, points_b, idx_a, idx_b, size_a_xyz, size_b_xyz, min_matches: int) -> np.ndarray:
    """Mask of a pair's matches (``idx_a``, ``idx_b`` into the views' stored points) the solve uses; the one
    rule for the solve and for every check that must see the matches the solve sees."""
    keep = (inside_margins(points_a.loc_xyz[idx_a], size_a_xyz, points_a.border_margin_xyz)
            & inside_margins(points_b.loc_xyz[idx_b], size_b_xyz, points_b.border_margin_xyz))
    return solve_subset(keep, min_matches)
