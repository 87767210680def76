"""The overlap NCC's standard error (rhapso_core.qc.ncc_error.ncc_standard_error) and the drop rule
(ncc_fell) that the QC verdict and the round check share.

An overlap whose correlation one structure carries (a small diagonal overlap of a 3-D grid: one blob in
one corner, background and noise elsewhere) moved its NCC from 0.56 at stage positions 3 voxels off to
0.43 at the true registration; the QC called that "worse than the input" and failed an alignment 0.02
voxel from the truth. Tolerances: such an overlap's error is over 0.1, a textured one's under 0.02, and
the rule then ignores a 0.13 drop on the first and still catches a 0.1 drop on the second."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rhapso_core.qc.fusion import ncc, overlap_ncc
from rhapso_core.qc.ncc_error import UNKNOWN_ERROR, ncc_fell, ncc_standard_error
from rhapso_core.image_source import ArraySource


def _blocks(shape, k=3):
    idx = np.indices(shape).reshape(3, -1).T
    cell = np.minimum(idx * k // np.array(shape), k - 1)
    return (cell[:, 0] * k + cell[:, 1]) * k + cell[:, 2]


def test_one_structure_in_one_block_gives_a_large_error_texture_a_small_one():
    rng = np.random.default_rng(0)
    shape = (12, 12, 12)
    blob = np.zeros(shape)
    blob[1, 1, 1] = 1.0
    blob = ndimage.gaussian_filter(blob, 1.5) * 2000
    a = (blob + rng.normal(0, 1, shape)).ravel()
    b = (blob + rng.normal(0, 1, shape)).ravel()
    one = ncc_standard_error(a, b, _blocks(shape))
    tex = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    ta, tb = (tex + rng.normal(0, 0.05, shape)).ravel(), (tex + rng.normal(0, 0.05, shape)).ravel()
    many = ncc_standard_error(ta, tb, _blocks(shape))
    assert one > 0.1, one
    assert many < 0.02, many
    assert ncc(ta, tb) > 0.9


def test_ncc_fell_needs_both_the_fixed_bound_and_the_error():
    assert ncc_fell(0.56, 0.43, 0.35, 0.30, 0.05, 3.0) is False  # inside its noise
    assert ncc_fell(0.99, 0.89, 0.005, 0.01, 0.05, 3.0) is True  # a textured overlap spoiled
    assert ncc_fell(0.99, 0.96, 0.0, 0.0, 0.05, 3.0) is False  # under the fixed bound
    assert ncc_fell(0.99, 0.90, None, None, 0.05, 3.0) is True  # no error known: the fixed bound alone
    assert ncc_fell(None, 0.5, 0.0, 0.0, 0.05, 3.0) is False
    assert ncc_fell(0.9, 0.5, float("inf"), 0.0, 0.05, 3.0) is False  # unknowable: never "worse"
    one_block = ncc_standard_error(np.arange(10.0), np.arange(10.0) ** 2, np.zeros(10, dtype=int))
    assert one_block == UNKNOWN_ERROR and ncc_fell(1.0, -1.0, one_block, 0.0, 0.05, 3.0) is False


def test_overlap_ncc_reports_the_error_beside_the_value():
    rng = np.random.default_rng(1)
    vol = ndimage.gaussian_filter(rng.normal(0, 1, (40, 40, 60)), 1.5).astype(np.float32)  # z y x
    src_a = ArraySource([np.ascontiguousarray(vol[:, :, :40])])
    src_b = ArraySource([np.ascontiguousarray(vol[:, :, 20:])])
    eye = np.eye(4)
    shifted = np.eye(4)
    shifted[0, 3] = 20.0
    r = overlap_ncc(src_a, eye, (40, 40, 40), src_b, shifted, (40, 40, 40))
    assert r["ncc"] == pytest.approx(1.0, abs=1e-6) and 0.0 <= r["ncc_se"] < 0.01
    off = shifted.copy()
    off[0, 3] = 23.0  # three voxels off
    r3 = overlap_ncc(src_a, eye, (40, 40, 40), src_b, off, (40, 40, 40))
    assert r3["ncc"] < 0.5 and ncc_fell(r["ncc"], r3["ncc"], r["ncc_se"], r3["ncc_se"], 0.05, 3.0)
