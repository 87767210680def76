"""The vectorised Gaussian gives scipy's bytes in every boundary mode it offers, and so do the
content-based weights built on it.

Tolerated error: none. Every comparison is of the float32 bit patterns, because what is built
on the filter (``content_based`` fusion's output, the overlap fits, the resolved feature size)
must not change.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rhapso_core.fusion.content import _radius, content_weights
from rhapso_core.exact_gaussian import MODES, gaussian_filter, scipy_radius


def _scipy(img, sigma, radius, mode="mirror"):
    return ndimage.gaussian_filter(img, sigma, mode=mode, radius=radius, output=np.float32)


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


SHAPES = [(1, 1, 1), (1, 5, 7), (2, 3, 4), (7, 1, 9), (13, 17, 5), (30, 41, 300)]
FILTERS = [
    ((1.0, 1.0, 1.0), (3, 3, 3)),
    ((2.0, 0.5, 3.0), (6, 2, 9)),
    # Radii far longer than the lines: scipy mirrors the line again and again.
    ((20.0, 20.0, 40.0), (60, 60, 120)),
    # Skipped axes (sigma 0 or not above 1e-15) and a radius of 0.
    ((0.0, 2.0, 0.0), (0, 6, 0)),
    ((1e-16, 0.3, 1.0), (0, 0, 3)),
    # Radii of 1-7 taps: every remainder of the four-tap sweeps.
    ((0.4, 1.0, 2.0), (1, 2, 7)),
]


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("sigma,radius", FILTERS)
def test_same_bits_as_scipy_in_and_out_of_place(shape, sigma, radius, mode):
    rng = np.random.default_rng(sum(shape))
    # Both signs and a wide range, so any other order of the additions would round differently.
    img = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 4, shape)).astype(np.float32)
    keep = img.copy()
    want = _scipy(img, sigma, radius, mode)
    got = gaussian_filter(img, sigma, radius, mode)
    assert _same_bits(got, want)
    assert _same_bits(img, keep), "the input must not be modified"
    gaussian_filter(img, sigma, radius, mode, output=img)
    assert _same_bits(img, want), "in place, as scipy's output= allows"


def test_an_edge_voxel_of_each_mode_extends_the_line_as_scipy_does():
    # One line, radius 5 > its 4 voxels: the extension repeats. A one-hot input shows which
    # extended copies of voxel 0 each output voxel sees, so a wrong extension cannot hide in
    # the other voxels' values.
    img = np.zeros((1, 1, 4), np.float32)
    img[0, 0, 0] = 1.0
    for mode in MODES:
        assert _same_bits(gaussian_filter(img, (0, 0, 2.0), (0, 0, 5), mode), _scipy(img, (0, 0, 2.0), (0, 0, 5), mode)), mode


@pytest.mark.parametrize("sigma,truncate", [(1.0, 4.0), (0.6666666666666666, 3.0), (11.390625, 3.0), (2.5, 4.0)])
def test_scipy_radius_is_gaussian_filter1d_s_rule(sigma, truncate):
    # scipy's default radius, from its truncate, gives the same bits as ours from scipy_radius.
    rng = np.random.default_rng(5)
    img = rng.random((5, 6, 40)).astype(np.float32)
    want = ndimage.gaussian_filter(img, (0, 0, sigma), mode="reflect", truncate=truncate)
    assert _same_bits(gaussian_filter(img, (0, 0, sigma), (0, 0, scipy_radius(sigma, truncate)), "reflect"), want)


def test_a_tile_wider_than_one_column_tile():
    # The z and y passes take x in tiles of 128 columns; 600 columns leave a partial tile.
    rng = np.random.default_rng(3)
    img = (rng.random((9, 11, 600)) * 4000).astype(np.float32)
    for mode in MODES:
        assert _same_bits(gaussian_filter(img, (2.0, 3.0, 1.5), (6, 9, 5), mode),
                          _scipy(img, (2.0, 3.0, 1.5), (6, 9, 5), mode))


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int16", "float32", "float64"])
def test_content_weights_are_the_scipy_formula_byte_for_byte(dtype):
    # content_weights as it was written on scipy.ndimage before the vectorised filter
    # (a float32 copy of the pixels first); 8/16-bit pixels are now filtered as they are.
    rng = np.random.default_rng(7)
    top = {"uint8": 255, "int16": 32767}.get(dtype, 65535)
    src = (rng.random((24, 40, 52)) * top * 0.99).astype(dtype)
    if dtype == "float64":
        src += rng.random(src.shape) * 1e-3  # values float32 rounds
    s1, s2 = np.array([1.0, 3.0, 3.0]), np.array([2.0, 6.0, 6.0])
    img = src.astype(np.float32)
    w = ndimage.gaussian_filter(img, s1, mode="mirror", radius=_radius(s1), output=np.float32)
    np.subtract(img, w, out=w)
    np.square(w, out=w)
    ndimage.gaussian_filter(w, s2, mode="mirror", radius=_radius(s2), output=w)
    np.maximum(w, 0.0, out=w)
    assert _same_bits(content_weights(src, s1, s2), w)


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "int8"])
def test_small_integers_filter_as_scipy_filters_them(dtype):
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    img = rng.integers(info.min, info.max, (9, 14, 30), endpoint=True).astype(dtype)
    sigma, radius = (1.0, 2.5, 4.0), (3, 8, 12)
    for mode in MODES:
        assert _same_bits(gaussian_filter(img, sigma, radius, mode), _scipy(img, sigma, radius, mode))
        # With z and y skipped, the x pass is the first and only one to read the integers.
        assert _same_bits(gaussian_filter(img, (0.0, 0.0, 2.0), (0, 0, 6), mode),
                          _scipy(img, (0.0, 0.0, 2.0), (0, 0, 6), mode))


@pytest.mark.parametrize(
    "img,what",
    [
        (np.zeros((4, 4), np.float32), "3-D"),
        (np.zeros((4, 4, 4), np.float64), "float64"),
        (np.zeros((4, 4, 4), np.int32), "int32"),
        (np.zeros((4, 4, 8), np.float32)[:, :, ::2], "C-contiguous"),
    ],
)
def test_unsupported_arrays_are_refused(img, what):
    with pytest.raises(ValueError, match=what):
        gaussian_filter(img, (1.0, 1.0, 1.0), (3, 3, 3), "mirror")


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="'wrap'"):
        gaussian_filter(np.zeros((2, 2, 2), np.float32), (1.0, 1.0, 1.0), (3, 3, 3), "wrap")
