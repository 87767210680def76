"""One compiled sweep of the iterative optimiser: every free tile fitted and moved, colour by colour.

The NumPy sweep (:func:`rhapso_core.solver.iterative.optimise_iterative`'s generic path) makes a
handful of array calls per colour for a few tiles of at most a few dozen compressed matches each,
so per-call overhead dominates (about 1 ms per iteration, hundreds of iterations per solve). Here
the same sweep runs in one call: the same colour order, the same targets (the partner tile's
current effective affine applied to its points, summed in the same order as ``apply_batch``),
the same fit (:func:`rhapso_core._fit_kernels.fit_blend`, what ``Model.fit_batch`` runs) and the
same damped update; a tile whose fit is ill-defined keeps its state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from rhapso_core._fit_kernels import fit_blend

__all__ = ["PackedGroups", "pack_groups", "sweep"]


@dataclass(frozen=True, eq=False)
class PackedGroups:
    """``HalfMatches.groups`` concatenated: rows ``starts[g]:starts[g + 1]`` are colour group ``g``;
    row ``r`` has ``counts[r]`` real matches (the rest is padding)."""

    tiles: np.ndarray  # (R,) int64
    p: np.ndarray  # (R, N, 3)
    w: np.ndarray  # (R, N)
    pp: np.ndarray  # (R, N, 3)
    ptile: np.ndarray  # (R, N) int64
    counts: np.ndarray  # (R,) int64
    starts: np.ndarray  # (G + 1,) int64


def pack_groups(groups) -> PackedGroups:
    """Pack ``(tiles, p, w, pp, ptile)`` batches whose real matches come first in each row, weights > 0."""
    nmax = max((g[1].shape[1] for g in groups), default=0)
    rows = sum(g[0].size for g in groups)
    tiles = np.zeros(rows, dtype=np.int64)
    p = np.zeros((rows, nmax, 3))
    w = np.zeros((rows, nmax))
    pp = np.zeros((rows, nmax, 3))
    ptile = np.zeros((rows, nmax), dtype=np.int64)
    counts = np.zeros(rows, dtype=np.int64)
    starts = np.zeros(len(groups) + 1, dtype=np.int64)
    r = 0
    for k, (t, gp, gw, gpp, gpt) in enumerate(groups):
        b, n = gw.shape
        tiles[r:r + b] = t
        p[r:r + b, :n] = gp
        w[r:r + b, :n] = gw
        pp[r:r + b, :n] = gpp
        ptile[r:r + b, :n] = gpt
        # Padding carries weight 0 and sits after the real matches (HalfMatches fills rows from the left).
        real = gw != 0
        counts[r:r + b] = np.where(real.any(axis=1), n - np.argmax(real[:, ::-1], axis=1), 0)
        r += b
        starts[k + 1] = r
    return PackedGroups(tiles, p, w, pp, ptile, counts, starts)


@njit(cache=True, nogil=True)
def sweep(eff, models, tiles, p, w, pp, ptile, counts, starts, main, reg, lam, damp):  # pragma: no cover - compiled
    """One Gauss-Seidel sweep in place on ``eff`` and ``models`` (n_tiles, 4, 4)."""
    nmax = p.shape[1]
    q = np.empty((1, nmax, 3))  # the targets of one row (a batch of one: fit_blend reads rows)
    fit = np.empty((1, 4, 4))
    tmp = np.empty((1, 4, 4))
    h = np.empty((3, 3))
    v = np.empty((3, 3))
    m = np.empty((3, 3))
    rhs = np.empty((3, 3))
    s = np.empty(3)
    for g in range(starts.shape[0] - 1):
        # Tiles of one colour share no link: fitting them one after another equals fitting them together.
        for r in range(starts[g], starts[g + 1]):
            n = counts[r]
            for k in range(n):
                e = eff[ptile[r, k]]
                x = pp[r, k, 0]
                y = pp[r, k, 1]
                z = pp[r, k, 2]
                for i in range(3):
                    q[0, k, i] = x * e[i, 0] + y * e[i, 1] + z * e[i, 2] + e[i, 3]
            fit_blend(p, q, w, r, 0, n, main, reg, lam, fit, 0, tmp, h, v, s, m, rhs)
            finite = True
            for i in range(4):
                for j in range(4):
                    if not math.isfinite(fit[0, i, j]):
                        finite = False
            if not finite:
                continue
            t = tiles[r]
            for i in range(4):
                for j in range(4):
                    models[t, i, j] = fit[0, i, j]
                    eff[t, i, j] += damp * (fit[0, i, j] - eff[t, i, j])
