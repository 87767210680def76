"""Mean downsampling by integer factors, keeping partial edge blocks."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

__all__ = ["downsample_mean", "downsampled_shape"]


def downsampled_shape(shape_zyx: Sequence[int], factors_zyx: Sequence[int]) -> tuple[int, ...]:
    """``ceil(shape / factor)`` per axis, so edge voxels are never dropped."""
    return tuple(-(-int(n) // int(f)) for n, f in zip(shape_zyx, factors_zyx))


# Types whose window sums are exact in float64 (64-bit integers are not) and that numba
# compiles (float16 is not); others take the NumPy route below, with the same result.
_COMPILED_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32,
                                               np.float32, np.float64))


@numba.njit(cache=True, nogil=True)
def _window_mean_3d(a, fz, fy, fx, round_to_int, out):
    # One pass over the input, no float64 copy of it: the numpy route below needs about
    # ten bytes of temporaries per input voxel and made pyramids 20x slower.
    nz, ny, nx = a.shape
    oz, oy, ox = out.shape
    acc = np.empty(ox, np.float64)
    cnt_x = np.empty(ox, np.float64)
    for x in range(ox):
        cnt_x[x] = min(fx, nx - x * fx)
    for z in range(oz):
        z0, z1 = z * fz, min(z * fz + fz, nz)
        for y in range(oy):
            y0, y1 = y * fy, min(y * fy + fy, ny)
            acc[:] = 0.0
            for zz in range(z0, z1):
                for yy in range(y0, y1):
                    row = a[zz, yy]
                    if fx == 2:
                        # The common factor, as a fixed-width loop the compiler vectorises;
                        # the same float64 sums as the general loop below ((0 + a) + b).
                        for x in range(nx // 2):
                            acc[x] += np.float64(row[2 * x]) + np.float64(row[2 * x + 1])
                        if nx % 2:
                            acc[ox - 1] += np.float64(row[nx - 1])
                        continue
                    for x in range(ox):
                        s = 0.0
                        for xx in range(x * fx, min(x * fx + fx, nx)):
                            s += row[xx]
                        acc[x] += s
            n_zy = (z1 - z0) * (y1 - y0)
            orow = out[z, y]
            for x in range(ox):
                m = acc[x] / (n_zy * cnt_x[x])
                orow[x] = np.rint(m) if round_to_int else m


@numba.njit(cache=True, nogil=True)
def _window_mean_3d_small_int(a, fz, fy, fx, out):
    # 8- and 16-bit integers: the window sums in int32 are the same integers as the float64
    # sums above (both exact), divided the same way, so the result is bit-identical; int32
    # lanes are twice as many per vector as float64 and need no conversion (3x faster).
    nz, ny, nx = a.shape
    oz, oy, ox = out.shape
    acc = np.empty(ox, np.int32)
    cnt_x = np.empty(ox, np.float64)
    for x in range(ox):
        cnt_x[x] = min(fx, nx - x * fx)
    for z in range(oz):
        z0, z1 = z * fz, min(z * fz + fz, nz)
        for y in range(oy):
            y0, y1 = y * fy, min(y * fy + fy, ny)
            acc[:] = 0
            for zz in range(z0, z1):
                for yy in range(y0, y1):
                    row = a[zz, yy]
                    if fx == 2:
                        for x in range(nx // 2):
                            acc[x] += np.int32(row[2 * x]) + np.int32(row[2 * x + 1])
                        if nx % 2:
                            acc[ox - 1] += np.int32(row[nx - 1])
                        continue
                    for x in range(ox):
                        s = np.int32(0)
                        for xx in range(x * fx, min(x * fx + fx, nx)):
                            s += np.int32(row[xx])
                        acc[x] += s
            n_zy = (z1 - z0) * (y1 - y0)
            orow = out[z, y]
            for x in range(ox):
                orow[x] = np.rint(np.float64(acc[x]) / (n_zy * cnt_x[x]))


def downsample_mean(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean of each ``factors``-sized block; a partial edge block averages only the voxels it has.

    Not ``skimage.transform.downscale_local_mean``: it pads edge blocks with
    ``cval`` and divides by the full block size, which darkens the last plane,
    row and column of every level.

    Parameters
    ----------
    array : ndarray
        Any rank (usually (z, y, x)); left unchanged.
    factors : sequence of int
        Integer factor per axis (>= 1).

    Returns
    -------
    ndarray
        Shape ``ceil(array.shape / factors)``, same dtype as ``array``
        (integers rounded half to even and clipped to the dtype's range).
    """
    a = np.asarray(array)
    f = tuple(int(k) for k in factors)
    if len(f) != a.ndim or min(f) < 1:
        raise ValueError(f"factors {factors} must be one integer >= 1 per axis of a {a.ndim}-D array")
    if all(k == 1 for k in f):
        return a.copy()
    out_shape = downsampled_shape(a.shape, f)
    if a.ndim == 3 and a.dtype in _COMPILED_DTYPES and a.size:
        # Window sums in float64 are exact for integer inputs (8 x 65535 << 2**53), so
        # this is bit-identical to the reference below; the mean of integers never leaves
        # their range, so no clip is needed.
        out = np.empty(out_shape, a.dtype)
        if a.dtype.kind in "ui" and a.dtype.itemsize <= 2 and f[0] * f[1] * f[2] < 2**15:
            # |value| <= 65535 and fewer than 2**15 voxels per window: sums below 2**31.
            _window_mean_3d_small_int(np.ascontiguousarray(a), *f, out)
        else:
            _window_mean_3d(np.ascontiguousarray(a), *f, a.dtype.kind in "ui", out)
        return out
    pad = [(0, o * k - n) for o, k, n in zip(out_shape, f, a.shape)]
    work = np.pad(a.astype(np.float64, copy=False), pad)
    blocks = work.reshape([x for o, k in zip(out_shape, f) for x in (o, k)])
    sums = blocks.sum(axis=tuple(range(1, 2 * a.ndim, 2)))
    # Voxels per block: full factor inside, the remainder on the last block of each axis.
    counts = np.ones(out_shape)
    for ax, (o, k, n) in enumerate(zip(out_shape, f, a.shape)):
        c = np.full(o, float(k))
        c[-1] = n - (o - 1) * k
        counts = counts * c.reshape([-1 if i == ax else 1 for i in range(a.ndim)])
    mean = sums / counts
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return np.clip(np.rint(mean), info.min, info.max).astype(a.dtype)
    if a.dtype == np.bool_:
        return mean >= 0.5
    return mean.astype(a.dtype)
