"""The linear part of each view's residual displacement field, from its pairs' matches.

Under the current registrations, view ``v``'s remaining error is a displacement field
``d_v(x) = t_v + L_v x`` (world, x y z) to first order: its translation and the rotation,
scale and shear a rigid or affine solve has still to find. A pair's matches ``p_a - p_b``
then sample ``d_b(x) - d_a(x) = (t_b - t_a) + (L_b - L_a) x`` at the matches' positions.

A pair's translation measured somewhere (its matches' mean at their centroid, a phase
shift at its overlap's centre) therefore differs from ``t_b - t_a`` by ``(L_b - L_a) x``.
Translations measured at different places close a loop of the grid only if the views do
not turn or scale: on a 3 x 3 single-plane mosaic after a rigid round, with 1 % of affine
left, the loops of the matches' means scattered by 0.19-0.31 pixel per link although each
mean was right to 0.03 (against the ground truth at its centroid). Removing ``(L_b - L_a) x``
first leaves what the loops are meant to show: errors a whole link shares.

``L_v`` is fitted from the spread of each pair's matches about their own mean (each pair's
translation is left free, so a bias every match of a pair shares, such as points sliding
along fibres, does not enter it), jointly over all pairs: a thin overlap measures its
gradient along its length, and the view's other overlaps the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import lsqr

__all__ = ["MAX_MATCHES_PER_PAIR", "residual_linear_parts", "translation_at"]

#: Matches per pair used for the fit, evenly chosen: a gradient needs few, and the sparse system stays
#: at most this many rows per pair and axis on grids of thousands of pairs.
MAX_MATCHES_PER_PAIR = 256


def residual_linear_parts(pairs: Sequence[tuple], origin_xyz) -> dict:
    """Per-view linear part ``L_v`` (3 x 3, world) of the residual fields, about ``origin_xyz``.

    ``pairs``: ``(view_a, view_b, x, disp)`` with ``x`` the matches' positions (n, 3, world)
    and ``disp`` their displacements ``p_a - p_b`` (n, 3). Only differences ``L_b - L_a``
    of views that pairs connect are determined; the rest (a common part, an axis no match
    spreads along, such as z on single planes) is the least-norm solution, zero where nothing
    measures it. Views absent from every pair get zeros.
    """
    views = sorted({v for a, b, _, _ in pairs for v in (a, b)})
    index = {v: i for i, v in enumerate(views)}
    rows, cols, vals, rhs = [], [], [], []
    row = 0
    o = np.asarray(origin_xyz, dtype=np.float64)
    for a, b, x, d in pairs:
        x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(d, dtype=np.float64).reshape(-1, 3)
        if len(x) < 2:
            continue
        pick = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_MATCHES_PER_PAIR)).round().astype(int))
        x, d = x[pick] - o, d[pick]
        xc = x - x.mean(axis=0)
        dc = d - d.mean(axis=0)
        n = len(x)
        r = np.repeat(np.arange(row, row + n), 3)
        for view, sign in ((b, 1.0), (a, -1.0)):
            rows.append(r)
            cols.append(np.tile(3 * index[view] + np.arange(3), n))
            vals.append(sign * xc.ravel())
        rhs.append(dc)
        row += n
    out = {v: np.zeros((3, 3)) for v in views}
    if not rhs:
        return out
    g = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(row, 3 * len(views))).tocsr()
    d_all = np.vstack(rhs)
    # Each output axis is its own least-squares problem with the same design (row k of every L_v).
    for k in range(3):
        sol = lsqr(g, d_all[:, k], atol=1e-12, btol=1e-12, iter_lim=20 * g.shape[1])[0]
        for v, i in index.items():
            out[v][k] = sol[3 * i:3 * i + 3]
    return out


def translation_at(t_xyz, x_xyz, view_a, view_b, linear: dict, origin_xyz) -> np.ndarray:
    """A pair's translation ``t_xyz`` measured at ``x_xyz``, moved to the origin: ``t - (L_b - L_a)(x - origin)``."""
    zero = np.zeros((3, 3))
    lb, la = linear.get(view_b, zero), linear.get(view_a, zero)
    return np.asarray(t_xyz, dtype=np.float64) - (lb - la) @ (np.asarray(x_xyz, dtype=np.float64)
                                                              - np.asarray(origin_xyz, dtype=np.float64))
