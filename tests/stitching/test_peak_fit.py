"""The phase's sub-voxel pull toward the integer shift, measured by resampling the crop half a voxel."""

import numpy as np
import pytest
from scipy import ndimage

from rhapso_core.stitching.peak_fit import _estimate, bias_from_steps, locking_bias

@pytest.mark.parametrize("d", [0.1, 0.25, 0.4, -0.3])
def test_first_harmonic_pull_is_recovered_exactly(d):
    """An estimator g(d) = d - a sin(2 pi d) (the classic pixel locking): the two half-voxel steps give b(d)."""
    a = 0.06
    g = lambda x: x - a * np.sin(2 * np.pi * x)  # noqa: E731
    b, bound = bias_from_steps(g(d), g(d - 0.5), g(d + 0.5))
    assert b == pytest.approx(-a * np.sin(2 * np.pi * d), abs=1e-12)
    assert bound == pytest.approx(abs(b), abs=1e-12)


def test_an_estimate_that_does_not_follow_the_data_has_a_quarter_voxel_bound():
    b, bound = bias_from_steps(0.1, 0.1, 0.1)
    assert bound == pytest.approx(0.25) and b == pytest.approx(0.0)


def _pair(v, oa, ob, sl):
    """Two tiles cut from ``v`` at sub-voxel offsets, resampled as the generator's real-volume mode does."""
    return ndimage.shift(v, -np.asarray(oa), order=1)[sl], ndimage.shift(v, -np.asarray(ob), order=1)[sl]


def test_bound_covers_the_z_error_of_real_texture_and_is_small_on_smooth_texture(cellfinder_ch0):
    """The real mouse-brain crop (z sampled at 5 um), two tiles resampled at random sub-voxel offsets (z, y, x):
    on every axis where the NCC peak is off by more than 0.05 voxel, the bound is at least a third of the error
    (measured: half or more; z bounds 0.04-0.07, x 0.09-0.13 voxel for errors up to 0.1 and 0.2), and there are
    such axes. Smaller errors come from noise the blocks' spread measures, not from the pull.
    A smooth texture (sigma 3 voxels) resampled the same way: bound under 0.1 voxel on every axis (measured
    0.03-0.06: the resampling's own border effects on a small crop).
    Tolerances are in voxels of each axis. (Measured alike on the in-repository crop and, 26 planes deep
    instead of 20, on the whole volume the crop was cut from.)"""
    from rhapso_core.synthetic.specimen import load_tiff_planes

    v = load_tiff_planes(cellfinder_ch0).astype(np.float32)
    rng = np.random.default_rng(1)
    big = 0
    for i in range(4):
        oa, ob = rng.uniform(-0.5, 0.5, 3), rng.uniform(-0.5, 0.5, 3)
        sl = (slice(2, 22), slice(8 + 40 * i, 128 + 40 * i), slice(200, 240))
        f, m = _pair(v, oa, ob, sl)
        err = _estimate(f, m, np.zeros(3, np.int64)) - (ob - oa)
        _, bound = locking_bias(f, m, np.zeros(3, np.int64))
        off = np.abs(err) > 0.05
        assert np.all(bound[off] >= np.abs(err[off]) / 3), (err, bound)
        big += int(np.sum(off))
    assert big >= 2
    smooth = ndimage.gaussian_filter(np.random.default_rng(2).normal(size=(40, 64, 64)), 3.0).astype(np.float32)
    f, m = _pair(smooth, (0.2, -0.1, 0.3), (-0.2, 0.25, 0.1), (slice(6, 34), slice(6, 58), slice(6, 30)))
    _, bound = locking_bias(f, m, np.zeros(3, np.int64))
    assert np.all(bound < 0.1), bound
