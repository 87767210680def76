"""Array-level phase correlation: verified peaks, aliases, sub-voxel fit, 2-D, limits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from rhapso_core.stitching import phase_correlate


def _texture(shape, seed=0):
    rng = np.random.default_rng(seed)
    fine = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    coarse = ndi.gaussian_filter(rng.normal(size=shape), 6.0)
    return (fine + 3.0 * coarse).astype(np.float32)


def _pair(big, true, crop, noise, rng):
    moved = ndi.shift(big, true, order=3, mode="nearest", prefilter=True)
    f = big[crop] + rng.normal(size=big[crop].shape) * noise
    m = moved[crop] + rng.normal(size=big[crop].shape) * noise
    return f, m


def test_subvoxel_shift_3d_within_a_tenth_of_a_voxel():
    """Known sub-voxel shifts of a thin (30-voxel) overlap crop with noise: error <= 0.1 voxel per axis."""
    big = _texture((40, 120, 70))
    sd = float(big.std())
    rng = np.random.default_rng(5)
    errs = []
    for _ in range(6):
        true = rng.uniform(-8, 8, 3) * [0.5, 1, 1]
        f, m = _pair(big, true, np.s_[10:30, 10:110, 20:50], 0.1 * sd, rng)
        res = phase_correlate(f, m)
        # moving(x) = fixed(x - true), so fixed(x) = moving(x + true): shift = -true
        errs.append(np.asarray(res.shift) + true)
        assert res.r > 0.5 and res.overlap_fraction >= 0.1
    assert np.abs(errs).max() <= 0.1, np.abs(errs).max(axis=0)


def test_single_plane_is_registered_in_plane():
    """A (1, y, x) crop: z shift exactly 0, in-plane error <= 0.1 pixel."""
    img = _texture((220, 220), seed=2)
    true = np.array([3.3, -6.7])
    moved = ndi.shift(img, true, order=3, mode="nearest")
    res = phase_correlate(img[None, 20:180, 30:70], moved[None, 20:180, 30:70])
    assert res.shift[0] == 0.0
    assert np.abs(np.asarray(res.shift[1:]) + true).max() <= 0.1


def test_alias_is_resolved_by_cross_correlation():
    """A shift beyond half the crop's width only appears as its periodic alias in the PCM."""
    big = _texture((1, 120, 200), seed=3)[0]
    true = np.array([0.0, 14.0])  # crop is 24 wide along x: the PCM peak sits at 14 - 24 = -10 too
    f = big[20:100, 100:124]
    m = ndi.shift(big, true, order=1)[20:100, 100:124]
    res = phase_correlate(f, m, min_overlap_fraction=0.05)
    assert res.shift[1] == pytest.approx(-14.0, abs=0.1)


def test_accept_limits_the_search():
    big = _texture((1, 120, 120), seed=4)[0]
    f = big[20:100, 20:100]
    m = ndi.shift(big, (0, 9), order=1)[20:100, 20:100]
    assert phase_correlate(f, m).shift[1] == pytest.approx(-9, abs=0.1)
    res = phase_correlate(f, m, accept=lambda s: abs(s[1]) < 5)
    assert res is None or abs(res.shift[1]) < 6  # never the rejected true peak


def test_constant_or_mismatched_crops():
    assert phase_correlate(np.ones((8, 8)), np.ones((8, 8))) is None
    with pytest.raises(ValueError, match="differ in shape"):
        phase_correlate(np.ones((8, 8)), np.ones((8, 9)))
