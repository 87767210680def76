"""26-neighbour DoG extrema and quadratic sub-voxel localisation (numba).

One pass over the core of a chunk replaces ``maximum_filter`` + ``minimum_filter`` +
comparisons: almost every voxel fails the ``threshold / 3`` test after one load, so the
scan costs far less than one filter pass.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["find_and_localize"]


@numba.njit(cache=True, inline="always")
def _beats(v, u, sign):
    # Strictly above (maximum, sign 1) or below (minimum, sign -1) a neighbour's value.
    return v > u if sign > 0 else v < u


@numba.njit(cache=True, nogil=True)
def _is_extremum(dog, z, y, x, v, sign):
    for dz in range(-1, 2):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if dz == 0 and dy == 0 and dx == 0:
                    continue
                if not _beats(v, dog[z + dz, y + dy, x + dx], sign):
                    return False
    return True


@numba.njit(cache=True, nogil=True)
def _localize(dog, pz, py, px, max_moves, res):
    """Newton step on the central-difference quadratic; res = (oz, oy, ox, value, pz, py, px)."""
    nz, ny, nx = dog.shape
    p = np.array([pz, py, px], np.int64)
    last = np.zeros(3, np.int64)
    g = np.empty(3)
    h = np.empty((3, 3))
    for move in range(max_moves + 1):
        if p[0] < 1 or p[1] < 1 or p[2] < 1 or p[0] > nz - 2 or p[1] > ny - 2 or p[2] > nx - 2:
            return False
        z, y, x = p[0], p[1], p[2]
        c = np.float64(dog[z, y, x])
        g[0] = 0.5 * (np.float64(dog[z + 1, y, x]) - dog[z - 1, y, x])
        g[1] = 0.5 * (np.float64(dog[z, y + 1, x]) - dog[z, y - 1, x])
        g[2] = 0.5 * (np.float64(dog[z, y, x + 1]) - dog[z, y, x - 1])
        h[0, 0] = np.float64(dog[z + 1, y, x]) - 2.0 * c + dog[z - 1, y, x]
        h[1, 1] = np.float64(dog[z, y + 1, x]) - 2.0 * c + dog[z, y - 1, x]
        h[2, 2] = np.float64(dog[z, y, x + 1]) - 2.0 * c + dog[z, y, x - 1]
        h[0, 1] = h[1, 0] = 0.25 * (np.float64(dog[z + 1, y + 1, x]) - dog[z + 1, y - 1, x]
                                    - dog[z - 1, y + 1, x] + dog[z - 1, y - 1, x])
        h[0, 2] = h[2, 0] = 0.25 * (np.float64(dog[z + 1, y, x + 1]) - dog[z + 1, y, x - 1]
                                    - dog[z - 1, y, x + 1] + dog[z - 1, y, x - 1])
        h[1, 2] = h[2, 1] = 0.25 * (np.float64(dog[z, y + 1, x + 1]) - dog[z, y + 1, x - 1]
                                    - dog[z, y - 1, x + 1] + dog[z, y - 1, x - 1])
        # solve h @ off = -g by the adjugate (3x3, symmetric)
        c00 = h[1, 1] * h[2, 2] - h[1, 2] * h[2, 1]
        c01 = h[1, 2] * h[2, 0] - h[1, 0] * h[2, 2]
        c02 = h[1, 0] * h[2, 1] - h[1, 1] * h[2, 0]
        det = h[0, 0] * c00 + h[0, 1] * c01 + h[0, 2] * c02
        scale = abs(h[0, 0]) + abs(h[1, 1]) + abs(h[2, 2])
        if not (abs(det) > 1e-12 * scale * scale * scale) or scale == 0.0:
            return False
        c11 = h[0, 0] * h[2, 2] - h[0, 2] * h[2, 0]
        c12 = h[0, 2] * h[1, 0] - h[0, 0] * h[1, 2]
        c22 = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
        inv = 1.0 / det
        o0 = -(c00 * g[0] + c01 * g[1] + c02 * g[2]) * inv
        o1 = -(c01 * g[0] + c11 * g[1] + c12 * g[2]) * inv
        o2 = -(c02 * g[0] + c12 * g[1] + c22 * g[2]) * inv
        if not (np.isfinite(o0) and np.isfinite(o1) and np.isfinite(o2)):
            return False
        # move one voxel along each axis whose offset exceeds 0.5, except straight back
        # along an axis just moved (a peak within rounding of a voxel border would
        # otherwise oscillate until max_moves and be lost)
        moved = False
        o = (o0, o1, o2)
        for a in range(3):
            if abs(o[a]) > 0.5:
                step = 1 if o[a] > 0 else -1
                if step != -last[a]:
                    p[a] += step
                    last[a] = step
                    moved = True
                elif abs(o[a]) > 1.0:
                    return False  # not a border case: the fit is unreliable
        if not moved:
            res[0] = z + o0
            res[1] = y + o1
            res[2] = x + o2
            res[3] = c + 0.5 * (g[0] * o0 + g[1] * o1 + g[2] * o2)
            res[4] = z
            res[5] = y
            res[6] = x
            return True
    return False


@numba.njit(cache=True, inline="always")
def _candidate_sign(v, t3, want_max, want_min):
    # 1 / -1: a maximum / minimum candidate (beyond a third of the threshold, as
    # BigStitcher's pre-filter); 0: neither.
    if want_max and v >= t3:
        return 1
    if want_min and v <= -t3:
        return -1
    return 0


@numba.njit(cache=True, nogil=True)
def _as_arrays(locs):
    # (z, y, x, value, pz, py, px) tuples -> loc_zyx (N, 3), value (N,), peak_zyx (N, 3) int64.
    n = len(locs)
    loc = np.empty((n, 3))
    val = np.empty(n)
    peak = np.empty((n, 3), np.int64)
    for i in range(n):
        t = locs[i]
        loc[i, 0] = t[0]
        loc[i, 1] = t[1]
        loc[i, 2] = t[2]
        val[i] = t[3]
        peak[i, 0] = np.int64(t[4])
        peak[i, 1] = np.int64(t[5])
        peak[i, 2] = np.int64(t[6])
    return loc, val, peak


@numba.njit(cache=True, nogil=True)
def find_and_localize(dog, z0, z1, y0, y1, x0, x1, threshold, want_max, want_min, max_moves):
    """Extrema whose integer candidate lies in the core ``[z0, z1) x [y0, y1) x [x0, x1)``.

    Returns ``loc_zyx`` (N, 3) float64 in array coordinates, ``value`` (N,) float64 (fitted
    DoG) and ``peak_zyx`` (N, 3) int64 (final integer position).
    """
    nz, ny, nx = dog.shape
    t3 = np.float32(threshold / 3.0)
    locs = []
    res = np.empty(7)
    for z in range(max(z0, 1), min(z1, nz - 1)):
        for y in range(max(y0, 1), min(y1, ny - 1)):
            row = dog[z, y]
            for x in range(max(x0, 1), min(x1, nx - 1)):
                v = row[x]
                sign = _candidate_sign(v, t3, want_max, want_min)
                if sign == 0:
                    continue
                if not _is_extremum(dog, z, y, x, v, sign):
                    continue
                if not _localize(dog, z, y, x, max_moves, res):
                    continue
                if sign * res[3] < threshold:
                    continue
                locs.append((res[0], res[1], res[2], res[3], res[4], res[5], res[6]))
    return _as_arrays(locs)


@numba.njit(cache=True, nogil=True)
def localize_candidates(dog, cand_zyx, signs, threshold, max_moves):
    """Localise given integer candidates (as :func:`find_and_localize` does after its scan).

    Used by reference implementations that find candidates another way.
    """
    n = cand_zyx.shape[0]
    loc = np.empty((n, 3))
    val = np.empty(n)
    ok = np.zeros(n, np.bool_)
    res = np.empty(7)
    for i in range(n):
        if _localize(dog, cand_zyx[i, 0], cand_zyx[i, 1], cand_zyx[i, 2], max_moves, res):
            if signs[i] * res[3] >= threshold:
                ok[i] = True
                loc[i, 0] = res[0]
                loc[i, 1] = res[1]
                loc[i, 2] = res[2]
                val[i] = res[3]
    return loc[ok], val[ok]
