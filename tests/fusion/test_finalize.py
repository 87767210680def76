"""finalize: accumulators to output values, against the formula written out in NumPy.

The compiled loop must give the formula's float64 arithmetic bit for bit (tolerance: none)
for every overlap strategy, integer and float outputs, covered and uncovered voxels
(``acc_b`` 0, 1 and fractional), values below ``lo`` and above ``hi`` (clipped), halves
(rounded to even), and NaN pixels and weights (float outputs: NaN out where a NaN weight
is, as before).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.fusion.kernels import MODES, finalize


def _formula(a, b, mode, lo, hi, max_value, is_int, dtype):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = a / b if (mode <= 1 or mode == 5) else a
        if is_int:
            v = np.rint(np.minimum(np.maximum((v - lo) / (hi - lo) * max_value, 0.0), max_value))
    return np.where(b <= 0.0, 0.0, v).astype(dtype)


@pytest.mark.parametrize("mode", sorted(MODES.values()))
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32])
def test_finalize_matches_the_formula(mode, dtype):
    rng = np.random.default_rng(mode)
    shape = (7, 11, 13)
    b = rng.choice([0.0, 1.0, 0.25, 1.7, 3.0], shape).astype(np.float32)
    a = (rng.normal(2000.0, 3000.0, shape) * b).astype(np.float32)
    a.flat[:4] = [-50.0, 70000.0, 200.5, 201.5]  # below lo, above hi, halves
    b.flat[:4] = 1.0
    if np.dtype(dtype).kind == "f":
        # NaN pixels (content_based's weights of a NaN tile): a NaN weight counts as covered.
        a.flat[4:7] = [np.nan, 3.0, np.nan]
        b.flat[4:7] = [1.0, np.nan, np.nan]
    is_int = np.dtype(dtype).kind == "u"
    max_value = float(np.iinfo(dtype).max) if is_int else 0.0
    lo, hi = (0.0, max_value) if is_int else (0.0, 1.0)
    out = np.empty(shape, dtype)
    finalize(a, b, out, mode, lo, hi, max_value, is_int)
    np.testing.assert_array_equal(out, _formula(a, b, mode, lo, hi, max_value, is_int, dtype))
    assert (out[b == 0] == 0).all() and (b == 0).any()


def test_finalize_with_an_intensity_range():
    # lo and hi other than the dtype's: (v - lo) / (hi - lo) * 65535, clipped.
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1000.0, (5, 6, 7)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (5, 6, 7)).astype(np.float32)
    out = np.empty(a.shape, np.uint16)
    finalize(a, b, out, MODES["avg_blend"], 100.0, 400.0, 65535.0, True)
    np.testing.assert_array_equal(out, _formula(a, b, 1, 100.0, 400.0, 65535.0, True, np.uint16))
    assert (out == 0).any() and (out == 65535).any()
