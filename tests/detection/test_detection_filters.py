"""The numba filters against scipy.ndimage (the field's reference implementations)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from detection_blobs import add_noise, random_centres, render
from rhapso_core.detection import DetectionParams, detect_dog
from rhapso_core.detection._gauss import gauss_inplace
from rhapso_core.detection._median import median_xy_int
from rhapso_core.detection.dog import K, dog_response, dog_sigmas


@pytest.mark.parametrize("r", [1, 2, 5])
@pytest.mark.parametrize("shape", [(3, 40, 57), (2, 7, 9)])  # window larger than the plane too
def test_median_is_exact(r, shape):
    rng = np.random.default_rng(r)
    a = rng.integers(0, 3000, shape).astype(np.int32)
    a[:, 5:, 3:] += 20000  # a step: values in distant histogram blocks
    ref = ndimage.median_filter(a, size=(1, 2 * r + 1, 2 * r + 1), mode="reflect")
    np.testing.assert_array_equal(median_xy_int(a, r), ref)  # exact: no error tolerated


def test_median_signed_values():
    a = np.random.default_rng(0).integers(-500, 500, (2, 30, 30)).astype(np.int16)
    np.testing.assert_array_equal(
        median_xy_int(a, 3), ndimage.median_filter(a, size=(1, 7, 7), mode="reflect"))


@pytest.mark.parametrize("sigma", [0.8, 1.73, 3.1])
def test_gauss_matches_scipy(sigma):
    a = np.random.default_rng(1).random((20, 33, 47)).astype(np.float32)
    ref = ndimage.gaussian_filter(a.astype(np.float64), sigma, mode="reflect", truncate=4.0)
    out = gauss_inplace(a.copy(), sigma)
    # tolerated: float32 accumulation over three passes (values in [0, 1])
    assert np.max(np.abs(out - ref)) < 1e-5


def test_dog_matches_direct_definition():
    """G2 by a further blur of G1 equals G2 blurred from the input, within 2e-4 of the blob
    contrast (sampled Gaussians compose only approximately; BigStitcher's own ~3 sigma
    kernels differ from these by more)."""
    rng = np.random.default_rng(2)
    c = random_centres(rng, (30, 60, 60), 20, margin=4, min_dist=5)
    img = render((30, 60, 60), c, rng.uniform(0.2, 1, len(c)), 2.0, background=0.0)
    img = img.astype(np.float32)
    s1, s2, _ = dog_sigmas(1.8)
    g1 = ndimage.gaussian_filter(img.astype(np.float64), s1, mode="reflect")
    g2 = ndimage.gaussian_filter(img.astype(np.float64), s2, mode="reflect")
    ref = (g1 - g2) / (K - 1)
    out = dog_response(img.copy(), 1.8)
    inner = (slice(10, -10),) * 3
    assert np.max(np.abs(out - ref)[inner]) < 2e-4 * img.max()
    assert np.max(np.abs(out - ref)) < 2e-3 * img.max()  # borders: reflect of a reflect


def test_median_background_semantics():
    """median_filter=r detects on I - median_{(2r+1)^2, XY}(I), like Rhapso 0.4.5; the
    integer (histogram) and float (scipy) routes agree."""
    rng = np.random.default_rng(3)
    shape = (24, 80, 80)
    c = random_centres(rng, shape, 40, margin=5, min_dist=6)
    yy, xx = np.mgrid[:80, :80]
    img = render(shape, c, rng.uniform(200, 800, len(c)), 1.5) + 3 * xx[None] + 2 * yy[None]
    img = add_noise(rng, img)
    p = DetectionParams(dsxy=1, threshold=0.01, min_intensity=0, max_intensity=1000,
                        median_filter=4)
    got = detect_dog(img, p)
    bg = ndimage.median_filter(img.astype(np.float64), size=(1, 9, 9), mode="reflect")
    manual = detect_dog((img - bg).astype(np.float32), p.model_copy(update={"median_filter": 0}))
    float_route = detect_dog(img.astype(np.float32), p)
    assert len(got) == len(manual) == len(float_route) > 20
    np.testing.assert_allclose(got.loc_xyz, manual.loc_xyz, atol=1e-4)
    np.testing.assert_allclose(got.loc_xyz, float_route.loc_xyz, atol=1e-4)
