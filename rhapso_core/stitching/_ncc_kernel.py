"""Pearson correlation of two equally shaped float32 arrays (any strides) in one compiled kernel.

Phase-correlation peak verification and sub-voxel refinement evaluate it a few dozen times per
pair on crops of up to millions of voxels; numpy's version allocates two float64 copies per call.
Here: a pass for the means and a pass for the centred products, float64 accumulators, no copies.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["ncc_f32"]


@njit(cache=True, nogil=True)
def _ncc3(a, b):  # pragma: no cover - compiled
    n0, n1, n2 = a.shape
    n = n0 * n1 * n2
    sa = 0.0
    sb = 0.0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                sa += a[i, j, k]
                sb += b[i, j, k]
    ma = sa / n
    mb = sb / n
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                da = a[i, j, k] - ma
                db = b[i, j, k] - mb
                saa += da * da
                sbb += db * db
                sab += da * db
    den = math.sqrt(saa * sbb)
    if not (den > 0.0) or not math.isfinite(den):
        return -np.inf
    return sab / den


def ncc_f32(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two float32 arrays of the same shape and at most 3 axes; -inf when either is constant."""
    while a.ndim < 3:
        a, b = a[None], b[None]
    return float(_ncc3(a, b))
