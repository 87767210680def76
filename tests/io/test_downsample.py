"""Mean downsampling against a brute-force block mean, edges included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rhapso_core.io import downsample_mean, downsampled_shape


def _brute(a: np.ndarray, f) -> np.ndarray:
    out = np.zeros(downsampled_shape(a.shape, f))
    for idx in itertools.product(*(range(n) for n in out.shape)):
        sl = tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, f))
        out[idx] = a[sl].mean()
    return out


@pytest.mark.parametrize("shape,f", [((7, 10, 13), (2, 2, 2)), ((5, 9, 4), (1, 3, 4)), ((4, 4, 4), (4, 4, 4))])
def test_matches_block_mean_with_partial_edges(shape, f):
    a = np.random.default_rng(1).normal(size=shape)
    got = downsample_mean(a, f)
    assert got.shape == tuple(-(-n // k) for n, k in zip(shape, f))
    np.testing.assert_allclose(got, _brute(a, f), rtol=0, atol=1e-12)  # float64 sums: exact to round-off


def test_integer_rounding_and_no_edge_darkening():
    a = np.full((3, 3, 3), 1000, dtype=np.uint16)
    got = downsample_mean(a, (2, 2, 2))
    assert got.dtype == np.uint16
    # skimage's downscale_local_mean would give 1000 * 4/8 etc. on the edge blocks.
    assert np.all(got == 1000)
    b = np.array([[[1, 2]]], dtype=np.uint8)
    assert downsample_mean(b, (1, 1, 2))[0, 0, 0] == 2  # 1.5 rounds half to even


def test_input_unchanged_and_bad_factors():
    a = np.arange(8.0).reshape(2, 2, 2)
    before = a.copy()
    downsample_mean(a, (2, 1, 1))
    np.testing.assert_array_equal(a, before)
    with pytest.raises(ValueError, match="factors"):
        downsample_mean(a, (0, 1, 1))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32])
@pytest.mark.parametrize("f", [(2, 2, 2), (3, 1, 2), (1, 4, 3)])
def test_compiled_path_matches_brute_mean_per_dtype(dtype, f):
    # The 3-D kernel must equal the float64 block mean, rounded half to even for integers
    # (negative halves included), on shapes with partial windows on every axis.
    rng = np.random.default_rng(7)
    lo, hi = (-300, 300) if np.dtype(dtype).kind == "i" else (0, 250)
    a = rng.integers(lo, hi, size=(9, 11, 14)).astype(dtype)
    want = _brute(a.astype(np.float64), f)
    got = downsample_mean(a, f)
    assert got.dtype == a.dtype
    if np.dtype(dtype).kind in "ui":
        np.testing.assert_array_equal(got, np.rint(want).astype(dtype))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.uint64, np.bool_])
def test_other_dtypes_take_the_reference_route(dtype):
    a = (np.arange(3 * 5 * 7) % 5).reshape(3, 5, 7).astype(dtype)
    got = downsample_mean(a, (2, 2, 2))
    assert got.dtype == a.dtype and got.shape == (2, 3, 4)
    want = _brute(a.astype(np.float64), (2, 2, 2))
    if dtype is np.bool_:
        np.testing.assert_array_equal(got, want >= 0.5)
    elif np.dtype(dtype).kind in "ui":
        np.testing.assert_array_equal(got, np.rint(want).astype(dtype))
    else:
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-3)
