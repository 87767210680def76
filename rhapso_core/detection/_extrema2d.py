"""8-neighbour in-plane DoG extrema and 2-D quadratic sub-pixel localisation (numba).

The 2-D counterpart of :mod:`._extrema` for single planes and for views detected plane by
plane: every plane is smoothed and scanned on its own, a candidate must beat its 8
in-plane neighbours, and the Newton fit moves only in y and x. In a thin stack a blob
shows in several planes: a point is kept only in the plane where its DoG is highest at
its pixel (compared with the planes above and below, when the array holds them), and
its z is refined by a parabola through the three planes' values (clamped to half a
plane); at the stack's first or last plane, and in a single plane, z is the plane's.
Output has the same layout as :func:`._extrema.find_and_localize`.
"""

from __future__ import annotations

import numba
import numpy as np

from rhapso_core.detection._extrema import _as_arrays, _beats, _candidate_sign

__all__ = ["find_and_localize_2d"]


@numba.njit(cache=True, nogil=True)
def _is_extremum_2d(dog, z, y, x, v, sign):
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            if not _beats(v, dog[z, y + dy, x + dx], sign):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def _localize_2d(dog, z, py, px, max_moves, res):
    """Newton step on the in-plane central-difference quadratic; res = (oz, oy, ox, value, pz, py, px)."""
    nz, ny, nx = dog.shape
    y, x = py, px
    last_y, last_x = 0, 0
    for move in range(max_moves + 1):
        if y < 1 or x < 1 or y > ny - 2 or x > nx - 2:
            return False
        c = np.float64(dog[z, y, x])
        gy = 0.5 * (np.float64(dog[z, y + 1, x]) - dog[z, y - 1, x])
        gx = 0.5 * (np.float64(dog[z, y, x + 1]) - dog[z, y, x - 1])
        hyy = np.float64(dog[z, y + 1, x]) - 2.0 * c + dog[z, y - 1, x]
        hxx = np.float64(dog[z, y, x + 1]) - 2.0 * c + dog[z, y, x - 1]
        hxy = 0.25 * (np.float64(dog[z, y + 1, x + 1]) - dog[z, y + 1, x - 1]
                      - dog[z, y - 1, x + 1] + dog[z, y - 1, x - 1])
        det = hyy * hxx - hxy * hxy
        scale = abs(hyy) + abs(hxx)
        if not (abs(det) > 1e-12 * scale * scale) or scale == 0.0:
            return False
        oy = -(hxx * gy - hxy * gx) / det
        ox = -(-hxy * gy + hyy * gx) / det
        if not (np.isfinite(oy) and np.isfinite(ox)):
            return False
        # As in 3-D: step one pixel toward an offset beyond 0.5, never straight back.
        moved = False
        if abs(oy) > 0.5:
            step = 1 if oy > 0 else -1
            if step != -last_y:
                y += step
                last_y = step
                moved = True
            elif abs(oy) > 1.0:
                return False
        if abs(ox) > 0.5:
            step = 1 if ox > 0 else -1
            if step != -last_x:
                x += step
                last_x = step
                moved = True
            elif abs(ox) > 1.0:
                return False
        if not moved:
            res[0] = z
            res[1] = y + oy
            res[2] = x + ox
            res[3] = c + 0.5 * (gy * oy + gx * ox)
            res[4] = z
            res[5] = y
            res[6] = x
            return True
    return False


@numba.njit(cache=True, nogil=True)
def find_and_localize_2d(dog, z0, z1, y0, y1, x0, x1, threshold, want_max, want_min, max_moves):
    """In-plane extrema whose integer candidate lies in the core box; every plane of it is scanned.

    Returns ``loc_zyx`` (N, 3) float64 (z integer), ``value`` (N,) and ``peak_zyx`` (N, 3) int64.
    """
    nz, ny, nx = dog.shape
    t3 = np.float32(threshold / 3.0)
    locs = []
    res = np.empty(7)
    # The scan is _extrema.find_and_localize's with the in-plane tests: as one scan taking the
    # tests as a jitted argument it ran 2-3x slower (numba 0.68), so the loop is written twice.
    for z in range(max(z0, 0), min(z1, nz)):
        for y in range(max(y0, 1), min(y1, ny - 1)):
            row = dog[z, y]
            for x in range(max(x0, 1), min(x1, nx - 1)):
                v = row[x]
                sign = _candidate_sign(v, t3, want_max, want_min)
                if sign == 0:
                    continue
                if not _is_extremum_2d(dog, z, y, x, v, sign):
                    continue
                if not _localize_2d(dog, z, y, x, max_moves, res):
                    continue
                if sign * res[3] < threshold:
                    continue
                py = np.int64(res[5])
                px = np.int64(res[6])
                c = sign * np.float64(dog[z, py, px])
                lo = sign * np.float64(dog[z - 1, py, px]) if z >= 1 else -np.inf
                hi = sign * np.float64(dog[z + 1, py, px]) if z + 1 < nz else -np.inf
                if lo > c or hi > c:
                    continue  # the blob is stronger in another plane: it is found there
                if z >= 1 and z + 1 < nz:
                    curv = lo - 2.0 * c + hi
                    if curv < 0.0:
                        oz = 0.5 * (lo - hi) / curv
                        res[0] = z + min(0.5, max(-0.5, oz))
                locs.append((res[0], res[1], res[2], res[3], res[4], res[5], res[6]))
    return _as_arrays(locs)
