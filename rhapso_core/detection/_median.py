"""XY median background subtraction (numba sliding histogram).

``scipy.ndimage.median_filter`` with a (1, k, k) window selects each output from
k^2 values and costs ~0.5 us per voxel at k = 11; Rhapso's 20 s per chunk comes from
it. Here each (z, y) row keeps a two-level histogram of the window (fine bins of one
integer level, coarse bins of 256 levels) that is updated by one column in and one
out per step, and the median is tracked incrementally (Huang's algorithm). That is
exact for integer data, which is why callers pass integer block *sums* (mean times
the block size) rather than float means. Boundaries mirror like scipy's ``reflect``.
"""

from __future__ import annotations

import numba
import numpy as np

from rhapso_core.detection._gauss import mirror_index

__all__ = ["median_xy_int"]


@numba.njit(parallel=True, cache=True)
def _median_xy(codes, r, nbins, out):
    nz, ny, nx = codes.shape
    k = 2 * r + 1
    m = (k * k) // 2  # 0-based rank of the median
    ymap = mirror_index(ny, r)
    xmap = mirror_index(nx, r)
    ncoarse = (nbins >> 8) + 1
    npx = nx + 2 * r
    for z in numba.prange(nz):
        fine = np.zeros(nbins, np.int32)
        coarse = np.zeros(ncoarse, np.int32)
        # window rows of the current output row, x-padded and transposed so that one
        # window column is contiguous
        win = np.empty((npx, k), np.int32)
        plane = codes[z]
        med = 0
        lt = 0  # window values < med
        for y in range(ny):
            for dy in range(k):
                src = plane[ymap[y + dy]]
                for px in range(npx):
                    win[px, dy] = src[xmap[px]]
            # the histogram is empty here; lt is recomputed for the kept med
            lt = 0
            for px in range(2 * r):
                col = win[px]
                for dy in range(k):
                    v = col[dy]
                    fine[v] += 1
                    coarse[v >> 8] += 1
                    lt += v < med
            for x in range(nx):
                col = win[x + 2 * r]
                for dy in range(k):
                    v = col[dy]
                    fine[v] += 1
                    coarse[v >> 8] += 1
                    lt += v < med
                # move the tracked median so that lt <= m < lt + fine[med]
                while lt + fine[med] <= m:
                    lt += fine[med]
                    med += 1
                    if (med & 255) == 0:
                        c = med >> 8
                        while coarse[c] == 0:
                            c += 1
                        med = c << 8
                while lt > m:
                    med -= 1
                    if (med & 255) == 255:
                        c = med >> 8
                        while coarse[c] == 0:
                            c -= 1
                        med = (c << 8) + 255
                    lt -= fine[med]
                out[z, y, x] = med
                col = win[x]
                for dy in range(k):
                    v = col[dy]
                    fine[v] -= 1
                    coarse[v >> 8] -= 1
                    lt -= v < med
            # empty the histograms for the next row (cheaper than zeroing nbins)
            for px in range(nx, npx):
                col = win[px]
                for dy in range(k):
                    v = col[dy]
                    fine[v] -= 1
                    coarse[v >> 8] -= 1


def median_xy_int(values: np.ndarray, radius: int) -> np.ndarray:
    """Median over a (2r+1) x (2r+1) XY window of each plane of an integer (z, y, x) array.

    Parameters
    ----------
    values : ndarray of integers, (z, y, x)
        Any integer dtype; the value range (max - min) sets the histogram size, so keep
        it below ~2^24.
    radius : int
        Window radius r in voxels (window 2r + 1 in y and x).

    Returns
    -------
    ndarray, int32, same shape
    """
    values = np.asarray(values)
    if values.size == 0 or radius <= 0:
        return values.astype(np.int32, copy=True)
    lo = int(values.min())
    hi = int(values.max())
    if hi - lo >= 1 << 26:
        raise ValueError(f"median_filter: integer range {hi - lo} too large for the histogram")
    codes = np.ascontiguousarray(values - lo, dtype=np.int32) if lo else np.ascontiguousarray(
        values, dtype=np.int32)
    out = np.empty(values.shape, np.int32)
    # padding the bin count to a multiple of 256 keeps the coarse search in range
    nbins = ((hi - lo) | 255) + 1
    _median_xy(codes, int(radius), nbins, out)
    if lo:
        out += np.int32(lo)
    return out
