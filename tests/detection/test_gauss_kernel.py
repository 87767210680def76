"""The detection's in-place Gaussian (rhapso_core.detection._gauss) against scipy's
``gaussian_filter`` (mode "reflect" and the kernel's radius, ceil(4 sigma): its documented
boundary and extent; scipy's own default radius rounds 4 sigma instead). Tolerance: float32
round-off of three separable passes, 1e-6 of the image's range."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rhapso_core.detection._gauss import gauss_inplace, kernel_radius


@pytest.mark.parametrize("shape", [(9, 23, 37), (5, 6, 7), (3, 40, 3)])
@pytest.mark.parametrize("sigma", [0.7, 1.8, 2.9])
def test_matches_scipy_in_3d_and_in_plane(shape, sigma):
    # Kernel radii up to 12 voxels on axes of 3: the reflection wraps more than once.
    img = np.random.default_rng(1).random(shape, dtype=np.float32) * 1000
    got = gauss_inplace(img.copy(), sigma)
    r = kernel_radius(sigma)
    ref = ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="reflect", radius=r)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * 1000)
    flat = gauss_inplace(img.copy(), sigma, in_plane=True)
    ref2 = ndimage.gaussian_filter(img.astype(np.float64), (0, sigma, sigma), mode="reflect", radius=r)
    np.testing.assert_allclose(flat, ref2, rtol=0, atol=1e-6 * 1000)


def test_the_result_does_not_depend_on_where_a_block_is_cut():
    """Bit-identical inner rows whatever the block: detection's chunks must agree exactly."""
    img = np.random.default_rng(2).random((12, 64, 96), dtype=np.float32)
    whole = gauss_inplace(img.copy(), 1.5)
    r = 7  # ceil(4 * 1.5) + 1: the part of a block its cut does not reach
    part = gauss_inplace(np.ascontiguousarray(img[:, :, 20:80]), 1.5)
    np.testing.assert_array_equal(part[:, :, r:-r], whole[:, :, 20 + r:80 - r])
