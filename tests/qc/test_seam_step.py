"""The seam step ratio: gradient across inner view borders over the gradient along them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rhapso_core import transforms
from rhapso_core.qc.fusion import seam_visibility

GEOMETRY = {(0, 0): (np.eye(4), (70, 120, 10)), (0, 1): (transforms.translation([50, 0, 0]), (70, 120, 10))}


def _texture(shape, seed, sigma):
    v = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return (v / v.std() * 100 + 500).astype(np.float32)


def test_step_ratio_ignores_content_and_sees_a_step():
    """Content of any density gives a step ratio near 1 (within 0.15: isotropic texture), although the
    border band may differ from elsewhere (``ratio``: a bright structure along the border moves it);
    a step of three texture deviations across the border lifts it above 1.3."""
    for seed, sigma in ((1, 1.0), (2, 3.0)):
        img = _texture((10, 120, 120), seed, sigma)
        flat = seam_visibility(img, np.eye(4), GEOMETRY, seam_width=2.0)
        assert abs(flat["step_ratio"] - 1.0) < 0.15, flat
        stepped = img.copy()
        stepped[:, :, :70] += 300.0
        seam = seam_visibility(stepped, np.eye(4), GEOMETRY, seam_width=2.0)
        assert seam["step_ratio"] > 1.3, seam
    # Bright round structures on the border (content that happens to lie there): 'ratio' reads them as
    # a seam, 'step_ratio' does not (they are as steep along the border as across it).
    img = _texture((10, 120, 120), 3, 1.0)
    yy, xx = np.mgrid[0:120, 0:120]
    for y0 in range(4, 120, 8):
        img += (800.0 * np.exp(-((xx - 69.5) ** 2 + (yy - y0) ** 2) / (2 * 2.0 ** 2)))[None].astype(np.float32)
    m = seam_visibility(img, np.eye(4), GEOMETRY, seam_width=2.0)
    assert m["ratio"] > 1.3 and abs(m["step_ratio"] - 1.0) < 0.15, m


def test_step_ratio_follows_a_rotated_view():
    """The normal is the view's face normal in world: a view rotated by 90 degrees about z has its
    x border along world y; a step across it is seen."""
    img = _texture((10, 120, 120), 4, 1.5)
    rot = np.array([[0, -1, 0, 119], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)  # view x -> world y
    geometry = {(0, 0): (rot, (70, 120, 10)), (0, 1): (rot @ transforms.translation([50, 0, 0]), (70, 120, 10))}
    stepped = img.copy()
    stepped[:, :70, :] += 300.0
    assert seam_visibility(stepped, np.eye(4), geometry)["step_ratio"] > 1.3
    assert abs(seam_visibility(img, np.eye(4), geometry)["step_ratio"] - 1.0) < 0.15
