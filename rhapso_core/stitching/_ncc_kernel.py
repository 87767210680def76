"""Pearson correlation of two equally shaped float32 arrays (any strides) in one compiled kernel.

Phase-correlation peak verification and sub-voxel refinement evaluate it a few dozen times per
pair on crops of up to millions of voxels; numpy's version allocates two float64 copies per call.
Here: a pass for the means and a pass for the centred products, float64 accumulators, no copies.

The rows are read as runs of a flat buffer with unsigned offsets, and the sums may be
reassociated (``fastmath={"reassoc", "contract"}``, no NaN or infinity assumptions), so the
compiler keeps several partial sums in vector registers: 3.1-4.4x the one-chain loop on overlap
crops (``bench/bench_alignment_filters.py``). A chain of float64 additions waits for each
addition (4 cycles), which was the whole cost. Signed indices block this: numba tests them for
negative values, a select per load. The result differs from the one-chain sum by rounding only
(1e-14 relative on a million voxels), and is the same on every call on one machine. The buffers
are passed read-only whatever the caller's arrays (the chunk cache's are read-only): one compiled
signature, not one per combination.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

__all__ = ["ncc_f32"]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _ncc_rows(fa, sa0, sa1, fb, sb0, sb1, n0, n1, n2):  # pragma: no cover - compiled
    """Pearson r of the ``n0 x n1`` rows of ``n2`` float32 values at ``fa[i * sa0 + j * sa1 + k]`` and
    ``fb[i * sb0 + j * sb1 + k]`` (flat buffers, offsets in elements)."""
    n = n0 * n1 * n2
    ta = 0.0
    tb = 0.0
    for i in range(n0):
        for j in range(n1):
            oa = uint64(i * sa0 + j * sa1)
            ob = uint64(i * sb0 + j * sb1)
            for k in range(n2):
                ta += fa[oa + uint64(k)]
                tb += fb[ob + uint64(k)]
    ma = ta / n
    mb = tb / n
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for i in range(n0):
        for j in range(n1):
            oa = uint64(i * sa0 + j * sa1)
            ob = uint64(i * sb0 + j * sb1)
            for k in range(n2):
                da = fa[oa + uint64(k)] - ma
                db = fb[ob + uint64(k)] - mb
                saa += da * da
                sbb += db * db
                sab += da * db
    den = math.sqrt(saa * sbb)
    if not (den > 0.0) or not math.isfinite(den):
        return -np.inf
    return sab / den


def _rows(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``a`` (3 axes, float32) as a flat buffer from its first element and its two outer strides in elements.

    Rows must be contiguous and the outer strides non-negative; any other layout is copied first.
    """
    item = a.itemsize
    if a.strides[2] != item or a.strides[0] < 0 or a.strides[1] < 0 or any(s % item for s in a.strides):
        a = np.ascontiguousarray(a)
    span = 1 + sum((n - 1) * s // item for n, s in zip(a.shape, a.strides))
    flat = np.lib.stride_tricks.as_strided(a, shape=(span,), strides=(item,), writeable=False)
    return flat, a.strides[0] // item, a.strides[1] // item


def ncc_f32(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two float32 arrays of the same shape and at most 3 axes; -inf when either is constant."""
    if a.size == 0:
        return -np.inf
    while a.ndim < 3:
        a, b = a[None], b[None]
    fa, sa0, sa1 = _rows(a)
    fb, sb0, sb1 = _rows(b)
    return float(_ncc_rows(fa, sa0, sa1, fb, sb0, sb1, *a.shape))
