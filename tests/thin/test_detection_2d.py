"""The 2-D detection path: single planes and thin stacks.

Tolerance: a blob is localised to 0.05 pixel in x, y (noise-free), and its z is exactly
the plane's.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.detection import DetectionParams, detect_dog
from rhapso_core.detection.planes import min_planes_3d, resolve_dimensions

BLOBS = [(20.3, 18.6), (52.7, 40.2), (35.1, 70.8)]


def _plane(shape=(96, 96), blobs=BLOBS, sigma=2.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 100.0)
    for x, y in blobs:
        img += 1000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img


@pytest.mark.parametrize("dsxy", [1, 2])
def test_single_plane_tile_gets_its_blobs_with_z_of_the_plane(dsxy):
    img = _plane()[None].astype(np.uint16)
    pts = detect_dog(img, DetectionParams(dsxy=dsxy))
    assert len(pts) == len(BLOBS)
    got = sorted(map(tuple, np.round(pts.loc_xyz, 3)))
    for (x, y), g in zip(sorted(BLOBS), got):
        tol = 0.05 if dsxy == 1 else 0.15
        assert abs(g[0] - x) < tol and abs(g[1] - y) < tol, (g, x, y)
        assert g[2] == 0.0


def test_two_planes_are_detected_plane_by_plane():
    shifted = [(x + 3.0, y) for x, y in BLOBS]
    img = np.stack([_plane(), _plane(blobs=shifted)]).astype(np.uint16)
    pts = detect_dog(img, DetectionParams(dsxy=1))
    z = pts.loc_xyz[:, 2]
    assert sorted(np.unique(z).tolist()) == [0.0, 1.0]
    top = pts.loc_xyz[z == 1.0]
    assert np.allclose(np.sort(top[:, 0]), np.sort([x for x, _ in shifted]), atol=0.05)


def test_three_d_detection_is_unchanged_for_deep_stacks():
    zz, yy, xx = np.mgrid[:24, :40, :40]
    img = (100 + 1000 * np.exp(-((xx - 20.3) ** 2 + (yy - 18.6) ** 2 + (zz - 11.8) ** 2) / 8)).astype(np.uint16)
    pts = detect_dog(img, DetectionParams(dsxy=1))
    assert np.round(pts.loc_xyz, 1).tolist() == [[20.3, 18.6, 11.8]]


def test_dimensions_and_z_downsampling_follow_the_view_shape():
    p = DetectionParams(dsz=4)
    assert resolve_dimensions(p, (1, 512, 512)).dimensions == "2d"
    assert resolve_dimensions(p, (1, 512, 512)).dsz == 1
    need = min_planes_3d(p.concrete().sigma)
    assert resolve_dimensions(p, (need - 1, 512, 512)).dimensions == "2d"
    deep = resolve_dimensions(p, (need, 512, 512))
    assert deep.dimensions == "3d" and deep.dsz == 1  # never downsampled into a thin stack
    assert resolve_dimensions(p, (2 * need, 512, 512)).dsz == 2
    assert resolve_dimensions(p, (400, 512, 512)).dsz == 4
    assert resolve_dimensions(DetectionParams(dimensions="2d"), (400, 64, 64)).dimensions == "2d"
