"""dsxy / dsz: pyramid level choice, in-memory mean downsampling and the exact mapping
x_full = F * x_work + (F - 1) / 2 back to full-resolution view voxels."""

from __future__ import annotations

import numpy as np
import pytest

from detection_blobs import match, mean_downsample, random_centres, render
from rhapso_core.detection import DetectionParams, choose_level, detect_view
from rhapso_core.image_source import ArraySource

SHAPE = (48, 160, 160)


def _scene(seed, sigma_zyx, n=25):
    rng = np.random.default_rng(seed)
    margin = 3 * np.asarray(sigma_zyx) + 4
    c = random_centres(rng, SHAPE, n, margin=margin, min_dist=6 * np.asarray(sigma_zyx))
    amps = rng.uniform(400, 1500, len(c))
    img = render(SHAPE, c, amps, sigma_zyx, background=100.0)
    return c, np.rint(img).astype(np.uint16)


def _detect(src, dsxy, dsz):
    p = DetectionParams(dsxy=dsxy, dsz=dsz, sigma=1.8, threshold=0.01, min_intensity=0,
                        max_intensity=1000, combine_distance=1.0)
    return detect_view(src, p)


@pytest.mark.parametrize(
    "dsxy,dsz,sigma_zyx,tol",
    [
        # blob sigma ~1.5-2 working voxels per axis; tolerated median error per axis,
        # full-res voxels: 0.1 * F (the localisation tolerance scaled by the factor)
        (2, 1, (2.0, 4.0, 4.0), 0.2),
        (3, 2, (3.0, 5.0, 5.0), 0.3),
        (1, 2, (3.0, 2.0, 2.0), 0.2),
    ],
)
def test_in_memory_factors_map_back_exactly(dsxy, dsz, sigma_zyx, tol):
    c, img = _scene(10 + dsxy + dsz, sigma_zyx)
    pts = _detect(ArraySource([img]), dsxy, dsz)
    d, i = match(c[:, ::-1], pts.loc_xyz, radius=2.0 * max(dsxy, dsz))
    assert np.all(np.isfinite(d)), f"{np.sum(~np.isfinite(d))} of {len(c)} blobs missed"
    err = pts.loc_xyz[i] - c[:, ::-1]
    med_abs = np.median(np.abs(err), axis=0)
    bias = np.median(err, axis=0)
    # a wrong half-voxel shift shows up as a bias of (F - 1) / 2 (>= 0.5 voxel here)
    assert np.all(med_abs <= tol), f"median |error| xyz {med_abs} > {tol}"
    assert np.all(np.abs(bias) <= tol / 2), f"median signed error xyz {bias} (shift bug?)"


def test_existing_level_is_used_and_composes():
    """dsxy=4 with a 2x level: read level 1 and average 2x2 more; same points as 4x from level 0."""
    sig = (2.0, 6.0, 6.0)
    c, img = _scene(21, sig)
    lvl1 = mean_downsample(img, (1, 2, 2))
    pyr = ArraySource([img, lvl1], factors=[(1, 1, 1), (1, 2, 2)])
    assert choose_level(pyr, (1, 4, 4)) == (1, (1, 2, 2))
    pts = _detect(pyr, 4, 1)
    ref = _detect(ArraySource([img]), 4, 1)
    d, i = match(c[:, ::-1], pts.loc_xyz, radius=8.0)
    assert np.all(np.isfinite(d)), "blob missed through the pyramid level"
    err = pts.loc_xyz[i] - c[:, ::-1]
    # tolerated: 0.4 full-res voxels per axis (0.1 working voxel at F = 4)
    assert np.all(np.median(np.abs(err), axis=0) <= 0.4), np.median(np.abs(err), axis=0)
    assert np.all(np.abs(np.median(err, axis=0)) <= 0.2), np.median(err, axis=0)
    # level 1 holds rounded means, so the two routes agree to rounding, not bit-exactly
    assert len(ref) == len(pts)
    dd, _ = match(ref.loc_xyz, pts.loc_xyz, radius=1.0)
    assert np.max(dd) < 0.05, f"level route differs from in-memory route by {np.max(dd):.3f}"


def test_choose_level_rules():
    a = np.zeros((16, 64, 64), np.uint16)
    pyr = ArraySource([a, a[:, ::2, ::2], a[::2, ::4, ::4]],
                      factors=[(1, 1, 1), (1, 2, 2), (2, 4, 4)])
    assert choose_level(pyr, (1, 2, 2)) == (1, (1, 1, 1))
    assert choose_level(pyr, (1, 4, 4)) == (1, (1, 2, 2))  # level 2 has z factor 2 > 1
    assert choose_level(pyr, (2, 8, 8)) == (2, (1, 2, 2))
    assert choose_level(pyr, (1, 3, 3)) == (0, (1, 3, 3))  # 2 does not divide 3
    assert choose_level(pyr, (2, 6, 6)) == (1, (2, 3, 3))
