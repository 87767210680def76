"""The overlap affine fit (rhapso_core.stitching.overlap_affine) against known affines.

A smooth random texture is the fixed crop; the moving crop is the same texture seen through a
known affine (resampled with cubic splines, then given another gain and offset). The fit
starts 1.2 voxels and 0.6 % of scale away and must land within 0.05 voxel of the truth at
the compared box's corners: the resampling's own error is a few hundredths there.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rhapso_core import transforms
from rhapso_core.stitching.overlap_affine import fit_overlap_affine, sample_grid

TOLERANCE = 0.05  # voxels at the box corners


def _texture(shape, seed, sigma=2.0):
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (1000.0 + 400.0 * t / t.std()).astype(np.float32)


def _affine(lin, shift):
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = shift
    return m


def _seen_through(fixed, fixed_to_moving, gain=1.7, offset=120.0):
    """moving(A x) = fixed(x): moving voxel y samples the fixed texture at A^-1 y (x y z frames)."""
    inv = transforms.invert(fixed_to_moving)
    # scipy maps output (z y x) to input (z y x): reverse the axes of the x y z affine
    p = np.eye(4)[[2, 1, 0, 3]]
    m = p @ inv @ p
    out = ndimage.affine_transform(fixed.astype(np.float64), m[:3, :3], m[:3, 3], order=3, mode="nearest")
    return (gain * out + offset).astype(np.float32)


def _corner_error(m, truth, box):
    c = transforms.box_corners(box[0], box[1])
    return float(np.max(np.linalg.norm(transforms.apply(m, c) - transforms.apply(truth, c), axis=1)))


def test_recovers_a_known_affine_from_a_perturbed_start():
    fixed = _texture((30, 70, 90), seed=1)
    truth = _affine(np.array([[1.008, 0.004, -0.003], [-0.005, 0.993, 0.006], [0.002, -0.004, 1.005]]),
                    [2.0, -1.5, 0.7])
    moving = _seen_through(fixed, truth)
    start = _affine(np.eye(3) * 1.006, [3.0, -0.6, 0.2])  # 1.2 voxels and 0.6 % of scale off
    box = np.array([[8.0, 8.0, 6.0], [80.0, 60.0, 23.0]])
    before = _corner_error(start, truth, box)
    fit = fit_overlap_affine(fixed, (0, 0, 0), moving, (0, 0, 0), start, box, sigma_zyx=(1.0, 1.0, 1.0))
    assert fit.ok, fit
    assert before > 1.0
    assert _corner_error(fit.matrix, truth, box) < TOLERANCE, (fit, before)
    assert fit.ncc_after > fit.ncc_before
    assert fit.corner_se < TOLERANCE


def test_crops_with_offsets_give_the_same_fit():
    """The crops' origins place them in the views' voxel frames: a crop of the moving view fits alike."""
    fixed = _texture((30, 70, 90), seed=2)
    truth = _affine(np.eye(3) + np.array([[0.006, 0.0, 0.0], [0.0, -0.004, 0.003], [0.0, 0.0, 0.0]]), [1.0, 0.5, 0.0])
    moving = _seen_through(fixed, truth)
    box = np.array([[20.0, 15.0, 5.0], [70.0, 55.0, 24.0]])
    whole = fit_overlap_affine(fixed, (0, 0, 0), moving, (0, 0, 0), np.eye(4), box)
    cut = fit_overlap_affine(fixed[2:28, 10:62, 15:78], (15, 10, 2), moving[:, 5:, 10:], (10, 5, 0), np.eye(4), box)
    assert whole.ok and cut.ok
    assert _corner_error(cut.matrix, truth, box) < TOLERANCE
    assert _corner_error(whole.matrix, cut.matrix, box) < 0.01


def test_a_single_plane_keeps_its_normal_row_and_column():
    fixed = _texture((1, 80, 100), seed=3)[0:1]
    lin = np.array([[1.006, -0.01, 0.0], [0.01, 0.996, 0.0], [0.0, 0.0, 1.0]])
    truth = _affine(lin, [1.5, -0.8, 0.0])
    plane = _seen_through(np.repeat(fixed, 3, axis=0), truth)[1:2]  # z-invariant texture: one plane of it
    box = np.array([[6.0, 6.0, 0.0], [92.0, 72.0, 0.0]])
    start = np.eye(4)
    start[2, 3] = 0.0
    fit = fit_overlap_affine(fixed, (0, 0, 0), plane, (0, 0, 0), start, box, sigma_zyx=(0.0, 1.0, 1.0))
    assert fit.ok, fit
    assert _corner_error(fit.matrix, truth, box) < TOLERANCE
    np.testing.assert_array_equal(fit.matrix[2], start[2])
    np.testing.assert_array_equal(fit.matrix[:, 2], start[:, 2])


def test_unrelated_images_do_not_correlate():
    """Two different textures: whatever the fit does, its correlation stays far below any usable link."""
    fixed = _texture((24, 60, 60), seed=4)
    moving = _texture((24, 60, 60), seed=5)
    fit = fit_overlap_affine(fixed, (0, 0, 0), moving, (0, 0, 0), np.eye(4), np.array([[5.0, 5.0, 4.0],
                                                                                        [54.0, 54.0, 19.0]]))
    assert not (fit.ok and fit.ncc_after >= 0.3), fit


def test_too_small_an_overlap_is_refused():
    fixed = _texture((4, 12, 12), seed=6)
    fit = fit_overlap_affine(fixed, (0, 0, 0), fixed, (0, 0, 0), np.eye(4), np.array([[2.0, 2.0, 1.0],
                                                                                     [9.0, 9.0, 2.0]]))
    assert fit.status == "too_small"
    np.testing.assert_array_equal(fit.matrix, np.eye(4))


@pytest.mark.parametrize("box,cap", [((0, 0, 0, 299, 49, 9), 20_000), ((0, 0, 0, 9, 9, 9), 10_000)])
def test_sample_grid_strides_the_longest_axes_first(box, cap):
    b = np.array(box, dtype=float).reshape(2, 3)
    g = sample_grid(b, cap)
    assert len(g) <= cap * 1.05
    assert set(np.unique(g[:, 2])) == set(range(int(b[0, 2]), int(b[1, 2]) + 1))  # the thin z keeps every plane
    assert g.min(axis=0).tolist() == b[0].tolist()


@pytest.mark.parametrize("shape", [(96, 256, 34), (7, 33, 5), (1, 20, 30)])
def test_the_crops_are_smoothed_as_scipy_smooths_them(shape):
    # The fit's smoothing moved from scipy to rhapso_core.exact_gaussian: the fits must not
    # change by a bit (tolerance: none), whatever the crop's shape, sigma or memory layout.
    from rhapso_core.stitching.overlap_affine import _smooth

    rng = np.random.default_rng(2)
    crop = (rng.random(shape) * 4000).astype(np.uint16)
    for sigma in [(1.0, 1.0, 1.0), (0.5, 2.0, 2.0), (0.0, 1.0, 1.0)]:
        want = ndimage.gaussian_filter(crop.astype(np.float32), sigma, mode="nearest")
        for a in (crop, crop[:, :, ::-1]):  # C-ordered, then a view that is not
            got = _smooth(a, sigma)
            ref = want if a is crop else ndimage.gaussian_filter(a.astype(np.float32), sigma, mode="nearest")
            assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), ref.view(np.uint32))
