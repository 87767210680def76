"""Block sums for in-memory mean downsampling (numba).

Integer images are summed exactly into int32 (uint16 x up to 32768 voxels per block),
so the median background stays exact; callers divide by the block size where a mean
is meant.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["block_sum"]


@numba.njit(parallel=True, cache=True)
def _block_sum(a, fz, fy, fx, out):
    nz, ny, nx = out.shape
    for z in numba.prange(nz):
        for y in range(ny):
            orow = out[z, y]
            for x in range(nx):
                orow[x] = 0
            for dz in range(fz):
                for dy in range(fy):
                    row = a[z * fz + dz, y * fy + dy]
                    for x in range(nx):
                        acc = orow[x]
                        for dx in range(fx):
                            acc += row[x * fx + dx]
                        orow[x] = acc


def block_sum(a: np.ndarray, factors_zyx, dtype) -> np.ndarray:
    """Sum ``a`` over non-overlapping blocks of ``factors_zyx``; a partial last block is dropped.

    Parameters
    ----------
    a : ndarray (z, y, x)
    factors_zyx : three ints >= 1
    dtype : output dtype (int32 for integer images, float32 otherwise)
    """
    fz, fy, fx = (int(f) for f in factors_zyx)
    shape = (a.shape[0] // fz, a.shape[1] // fy, a.shape[2] // fx)
    if (fz, fy, fx) == (1, 1, 1):
        return np.ascontiguousarray(a, dtype=dtype)
    out = np.empty(shape, dtype)
    if out.size:
        _block_sum(np.ascontiguousarray(a), fz, fy, fx, out)
    return out
