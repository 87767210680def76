"""The pyramid's mean kernel is bit-identical to its previous form (issue 21).

``_reference`` is the kernel as it was before the factor-2 fast path (kept here, compiled
the same way, as the reference); the current :func:`rhapso_core.io.downsample_mean` must
give the same bytes for integer and float inputs, odd shapes (partial windows) and
factors with and without the fast path. Tolerance: none (``array_equal``).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from rhapso_core.io import downsample_mean, downsampled_shape


@numba.njit(cache=True)
def _reference(a, fz, fy, fx, round_to_int, out):
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


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 17, 31), (8, 16, 32), (1, 5, 2)])
@pytest.mark.parametrize("f", [(2, 2, 2), (1, 2, 2), (2, 3, 2), (2, 2, 3)])
def test_kernel_matches_previous_bit_for_bit(dtype, shape, f):
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f":
        a = (rng.standard_normal(shape) * 1e3).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    want = np.empty(downsampled_shape(a.shape, f), a.dtype)
    _reference(a, *f, a.dtype.kind in "ui", want)
    got = downsample_mean(a, f)
    np.testing.assert_array_equal(got, want)
