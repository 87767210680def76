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

__all__ = ["LONG_AXIS_MARGINS", "inside_margins", "border_offset_statistic", "solve_subset", "solved_matches"]

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


def border_offset_statistic(x_xyz: np.ndarray, disp_xyz: np.ndarray, inside: np.ndarray) -> float:
    """How far the near-border matches' displacements lie from the interior ones', in their own noise.

    The interior matches' displacements ``p_a - p_b`` are fitted as a linear function of position (the
    views may still turn and scale against each other across the overlap); the near-border matches'
    mean residual from that fit, squared over its variance (the interior residuals' variance over the
    near-border count, plus the fit's own where they lie), summed over the axes that vary: about the
    number of such axes where the border bias is negligible. Needs more interior matches than the fit's
    parameters; else 0."""
    x = np.asarray(x_xyz, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(disp_xyz, dtype=np.float64).reshape(-1, 3)
    inside = np.asarray(inside, dtype=bool)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_out == 0:
        return 0.0
    xc = x - x[inside].mean(axis=0)
    design = np.hstack([np.ones((len(x), 1)), xc])
    if n_in <= design.shape[1] + 1:
        return 0.0
    coef = np.linalg.lstsq(design[inside], d[inside], rcond=None)[0]
    rank = np.linalg.matrix_rank(design[inside])
    res = d - design @ coef
    var = np.sum(res[inside] ** 2, axis=0) / max(n_in - rank, 1)
    axes = var > 1e-12
    if not np.any(axes):
        return 0.0
    mean_out = res[~inside].mean(axis=0)
    # The near-border mean's variance: its own matches' noise plus the fit's, extrapolated to where they lie.
    a = design[~inside].mean(axis=0)
    lever = float(a @ np.linalg.pinv(design[inside].T @ design[inside]) @ a)
    return float(np.sum(mean_out[axes] ** 2 / (var[axes] * (1.0 / n_out + lever))))


def solve_subset(keep: np.ndarray, min_matches: int, x_xyz=None, disp_xyz=None) -> np.ndarray:
    """The matches of one link the solve uses.

    All of them where leaving out the near-border ones (``~keep``) would leave fewer than half or than
    ``min_matches`` (a narrow overlap's matches are worth more than their bias). Given the matches'
    positions and displacements (world), the near-border ones are also kept where their offset from the
    interior fit (:func:`border_offset_statistic`, ``T`` over ``k`` axes) does not exceed ``k / (1 - f)``
    (``f`` the near-border fraction): that is where leaving them out costs the link more variance than
    their bias, as measured, adds in mean squared error (bias b over noise s per match, n matches: the
    pair's mean gains ``(f b)^2`` with them and ``s^2 f / (n (1 - f))`` without them, and ``T`` estimates
    ``k f n b^2 / s^2``). Real single planes (20-46 matches a link) kept theirs by this rule; dense
    generated ones (about 70) lost theirs."""
    keep = np.asarray(keep, dtype=bool)
    everything = np.ones(len(keep), dtype=bool)
    n_keep = int(keep.sum())
    if n_keep == len(keep) or n_keep < max(int(min_matches), (len(keep) + 1) // 2):
        return everything
    if x_xyz is not None and disp_xyz is not None:
        d = np.asarray(disp_xyz, dtype=np.float64).reshape(-1, 3)
        k = int(np.sum(np.var(d[keep], axis=0) > 1e-12))
        f = 1.0 - n_keep / len(keep)
        if border_offset_statistic(x_xyz, d, keep) <= max(k, 1) / (1.0 - f):
            return everything
    return keep


def solved_matches(points_a, points_b, idx_a, idx_b, size_a_xyz, size_b_xyz, min_matches: int,
                   world_a=None, world_b=None) -> np.ndarray:
    """Mask of a pair's matches (``idx_a``, ``idx_b`` into the views' stored points) the solve uses; the one
    rule for the solve and for every check that must see the matches the solve sees. ``world_a``,
    ``world_b``: the matched points in world coordinates (n, 3), for :func:`solve_subset`'s test."""
    keep = (inside_margins(points_a.loc_xyz[idx_a], size_a_xyz, points_a.border_margin_xyz)
            & inside_margins(points_b.loc_xyz[idx_b], size_b_xyz, points_b.border_margin_xyz))
    if world_a is None or world_b is None:
        return solve_subset(keep, min_matches)
    wa, wb = np.asarray(world_a, dtype=np.float64), np.asarray(world_b, dtype=np.float64)
    return solve_subset(keep, min_matches, (wa + wb) / 2.0, wa - wb)
