"""The compiled Pearson correlation (peak verification's NCC) against NumPy's, on every layout it is given.

Tolerance: 1e-12 absolute in r. The kernel sums in a different order from NumPy (several partial
sums per vector register), so the two differ by rounding: about 1e-14 on a million voxels.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.stitching._ncc_kernel import ncc_f32
from rhapso_core.stitching.phase import _slices, ncc


def _numpy_r(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def _pair(shape, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    a = (rng.random(shape) * 1000 + 200).astype(np.float32)
    b = (0.8 * a + noise * 1000 * rng.random(shape)).astype(np.float32)
    return a, b


@pytest.mark.parametrize("shape", [(7,), (3, 5), (1, 1, 9), (4, 6, 33), (5, 37, 3), (2, 3, 1), (40, 70, 90)])
def test_contiguous_arrays_of_any_shape(shape):
    a, b = _pair(shape)
    assert ncc_f32(a, b) == pytest.approx(_numpy_r(a, b), abs=1e-12)


def test_every_layout_a_caller_can_pass():
    a, b = _pair((12, 30, 41), seed=1)
    views = {
        "shared voxels under a shift": lambda x: x[_slices((2, -3, 5), x.shape)[0]],
        "steps on every axis": lambda x: x[::2, 1::3, ::2],
        "reversed axes": lambda x: x[::-1, :, ::-1],
        "transposed": lambda x: x.transpose(2, 0, 1),
        "a single column": lambda x: x[:, :, 7],
    }
    for name, view in views.items():
        va, vb = view(a), view(b)
        expected = _numpy_r(va, vb)
        assert ncc_f32(va, vb) == pytest.approx(expected, abs=1e-12), name
        # One operand contiguous, the other a view: each is laid out on its own.
        assert ncc_f32(np.ascontiguousarray(va), vb) == pytest.approx(expected, abs=1e-12), name


def test_overlap_crops_as_peak_verification_compares_them():
    a, b = _pair((96, 64, 34), seed=2, noise=0.3)
    sf, sm = _slices((1, -2, 3), a.shape)
    got = ncc(a[sf], b[sm])  # the float32 route of phase.ncc
    assert got == pytest.approx(_numpy_r(a[sf], b[sm]), abs=1e-12)
    assert got == ncc(a[sf], b[sm])  # the same value on every call


def test_constant_or_not_finite_has_no_correlation():
    a, b = _pair((4, 5, 6), seed=3)
    assert ncc_f32(np.full_like(a, 7.0), b) == -np.inf
    assert ncc_f32(a, np.full_like(b, 7.0)) == -np.inf
    nan = a.copy()
    nan[1, 2, 3] = np.nan
    assert ncc_f32(nan, b) == -np.inf
    inf = a.copy()
    inf[0, 0, 0] = np.inf
    assert ncc_f32(inf, b) == -np.inf


def test_read_only_and_empty_arrays():
    a, b = _pair((6, 7, 8), seed=5)
    expected = _numpy_r(a, b)
    ro = a.copy()
    ro.flags.writeable = False  # as the chunk cache hands them out
    assert ncc_f32(ro, b) == pytest.approx(expected, abs=1e-12)
    assert ncc_f32(a, b) == ncc_f32(ro, b)
    assert ncc_f32(a[:, :, :0], b[:, :, :0]) == -np.inf


def test_perfect_and_inverse_correlation():
    a, _ = _pair((9, 10, 11), seed=4)
    assert ncc_f32(a, (3 * a + 7).astype(np.float32)) == pytest.approx(1.0, abs=1e-12)
    assert ncc_f32(a, (-a).astype(np.float32)) == pytest.approx(-1.0, abs=1e-12)
