"""Separable, in-place Gaussian smoothing of float32 volumes (numba).

Why not ``scipy.ndimage.gaussian_filter``: it filters through float64 line buffers and
needs a second full-size output array; these kernels work in float32, vectorise over
the contiguous x axis, use the kernel's symmetry (half the multiplications) and
overwrite their input using only plane-sized scratch buffers. Boundaries use scipy's
``reflect`` mode (``d c b a | a b c d``). No ``fastmath``: results must be bit-identical
whatever the chunking, so the order of floating-point operations is fixed.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rhapso_core.detection.params import GAUSS_TRUNCATE

__all__ = ["half_kernel", "gauss_inplace", "mirror_index"]


def half_kernel(sigma: float, truncate: float = GAUSS_TRUNCATE) -> np.ndarray:
    """Right half ``w[0..R]`` of a sampled, unit-sum Gaussian of ``sigma`` voxels, float32."""
    r = max(1, int(math.ceil(truncate * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    return w[r:].astype(np.float32)


def kernel_radius(sigma: float, truncate: float = GAUSS_TRUNCATE) -> int:
    return max(1, int(math.ceil(truncate * sigma)))


@numba.njit(cache=True)
def mirror_index(n, r):
    """Indices for positions ``-r .. n + r - 1`` under half-sample reflection (any r)."""
    out = np.empty(n + 2 * r, np.int64)
    period = 2 * n
    for i in range(n + 2 * r):
        j = (i - r) % period
        if j >= n:
            j = period - 1 - j
        out[i] = j
    return out


@numba.njit(parallel=True, cache=True)
def _pass_z(a, w):
    nz, ny, nx = a.shape
    r = w.shape[0] - 1
    zmap = mirror_index(nz, r)
    for y in numba.prange(ny):
        buf = np.empty((nz, nx), np.float32)
        for z in range(nz):
            for x in range(nx):
                buf[z, x] = a[z, y, x]
        for z in range(nz):
            out = a[z, y]
            w0 = w[0]
            for x in range(nx):
                out[x] = w0 * buf[z, x]
            for d in range(1, r + 1):
                lo = buf[zmap[z + r - d]]
                hi = buf[zmap[z + r + d]]
                wd = w[d]
                for x in range(nx):
                    out[x] += wd * (lo[x] + hi[x])


@numba.njit(parallel=True, cache=True)
def _pass_yx(a, wy, wx):
    nz, ny, nx = a.shape
    ry = wy.shape[0] - 1
    rx = wx.shape[0] - 1
    ymap = mirror_index(ny, ry)
    xmap = mirror_index(nx, rx)
    for z in numba.prange(nz):
        plane = a[z]
        buf = plane.copy()
        for y in range(ny):
            out = plane[y]
            w0 = wy[0]
            src = buf[y]
            for x in range(nx):
                out[x] = w0 * src[x]
            for d in range(1, ry + 1):
                lo = buf[ymap[y + ry - d]]
                hi = buf[ymap[y + ry + d]]
                wd = wy[d]
                for x in range(nx):
                    out[x] += wd * (lo[x] + hi[x])
        row = np.empty(nx + 2 * rx, np.float32)
        for y in range(ny):
            out = plane[y]
            for i in range(nx + 2 * rx):
                row[i] = out[xmap[i]]
            # Shifted views, not row[x + rx - d]: numba wraps an index it cannot prove
            # non-negative, and that per-element test kept LLVM from vectorising the loop
            # (the x pass took 89 ms of a 96 x 256 x 256 plane stack, now 20; same bits).
            w0 = wx[0]
            mid = row[rx:rx + nx]
            for x in range(nx):
                out[x] = w0 * mid[x]
            for d in range(1, rx + 1):
                wd = wx[d]
                lo = row[rx - d:rx - d + nx]
                hi = row[rx + d:rx + d + nx]
                for x in range(nx):
                    out[x] += wd * (lo[x] + hi[x])


def gauss_inplace(a: np.ndarray, sigma: float, in_plane: bool = False) -> np.ndarray:
    """Smooth a C-contiguous float32 (z, y, x) array in place with an isotropic Gaussian.

    Parameters
    ----------
    a : ndarray, float32, C-contiguous, 3D
        Overwritten with the result.
    sigma : float
        Standard deviation in voxels (all axes); kernel radius ``ceil(4 sigma)``.
    in_plane : bool, default False
        Smooth each z plane on its own (y and x only): 2-D detection.
    """
    if a.dtype != np.float32 or not a.flags.c_contiguous or a.ndim != 3:
        raise ValueError("gauss_inplace needs a C-contiguous 3D float32 array")
    w = half_kernel(sigma)
    if a.size == 0:
        return a
    if not in_plane:
        _pass_z(a, w)
    _pass_yx(a, w, w)
    return a
