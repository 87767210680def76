"""Fusing tiles with their true transforms reproduces the specimen; kernel == scipy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionParams, FusionView, fuse_block, make_output_grid, output_to_view
from rhapso_core.fusion.kernels import trilinear_sample
from rhapso_core.image_source import ArraySource

from fusion_truth import CountingSource, sample_world, tiles_to_views


def _full_box(grid):
    return tuple((0, n) for n in grid.shape_zyx)


def _truth_on_grid(specimen, grid):
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in grid.shape_zyx], indexing="ij")
    idx = np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(np.float64)
    return sample_world(specimen, tf.apply(grid.out_to_world(), idx)).reshape(grid.shape_zyx)


def _coverage_count(grid, views):
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in grid.shape_zyx], indexing="ij")
    idx = np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(np.float64)
    count = np.zeros(len(idx), np.int32)
    for v in views:
        p = tf.apply(output_to_view(grid, v), idx)
        count += np.all((p >= -1e-4) & (p <= np.asarray(v.size_xyz) - 1 + 1e-4), axis=1)
    return count.reshape(grid.shape_zyx)


def _ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_fused_reproduces_specimen(tiled_dataset, dtype):
    specimen, poses, tiles, _ = tiled_dataset
    views = tiles_to_views(tiles, poses)
    grid = make_output_grid(views)
    out = fuse_block(_full_box(grid), grid, views, FusionParams(output_dtype=dtype))
    assert out.dtype == np.dtype(dtype)
    truth = _truth_on_grid(specimen, grid)
    covered = _coverage_count(grid, views) > 0
    assert covered.mean() > 0.9, "the 2x2 grid should cover most of its bounding box"
    ncc = _ncc(out[covered].astype(np.float64), truth[covered])
    # Tolerated: trilinear vs cubic-spline resampling of a smooth specimen (sigma 3 voxels).
    assert ncc >= 0.99, f"NCC {ncc:.5f} < 0.99"
    assert np.all(out[~covered] == 0), "voxels covered by no view must be 0"


def test_coarse_output_reads_matching_level(tiled_dataset):
    specimen, poses, tiles, _ = tiled_dataset
    views = tiles_to_views(tiles, poses)
    counted = [FusionView(CountingSource(v.source), v.view_to_world, v.size_xyz, v.view_id) for v in views]
    grid = make_output_grid(counted, voxel_size_xyz=(2.0, 2.0, 2.0))
    out = fuse_block(_full_box(grid), grid, counted, FusionParams(output_dtype="float32"))
    for v in counted:
        assert set(v.source.reads) == {1}, f"view {v.view_id} read levels {v.source.reads}, want only 1"
    covered = _coverage_count(grid, views) > 0
    # Level 1 voxels are means of 2x2x2 level-0 voxels: compare with the specimen
    # averaged over the 8 points +-0.5 around each output voxel (a centred box of width 2).
    truth = np.zeros(grid.shape_zyx)
    for d in np.array(np.meshgrid(*[[-0.5, 0.5]] * 3)).reshape(3, -1).T:
        shifted = dataclasses.replace(grid, origin_xyz=grid.origin_xyz + d)
        truth += _truth_on_grid(specimen, shifted) / 8
    ncc = _ncc(out[covered].astype(np.float64), truth[covered])
    # Tolerated: trilinear sampling of the coarse level smooths a little more.
    assert ncc >= 0.99, f"NCC at level 1 {ncc:.5f} < 0.99"
    # A half-voxel geometry error (the classic level-offset bug) would drop it below:
    off = _truth_on_grid(specimen, dataclasses.replace(grid, origin_xyz=grid.origin_xyz + 0.5))
    assert ncc > _ncc(out[covered].astype(np.float64), off[covered]) + 0.01


def _seam_gradient_error(specimen, views, fuse_views):
    grid = make_output_grid(views)
    out = fuse_block(_full_box(grid), grid, fuse_views, FusionParams(output_dtype="float32"))
    truth = _truth_on_grid(specimen, grid)
    count = _coverage_count(grid, views)
    inner = ndimage.minimum_filter(count, size=3) > 0
    seam = inner & (ndimage.maximum_filter(count, size=3) != ndimage.minimum_filter(count, size=3))
    rest = inner & ~seam
    err = np.sqrt(sum((gf - gt) ** 2 for gf, gt in zip(np.gradient(out.astype(np.float64)), np.gradient(truth))))
    gmag = np.sqrt(sum(g**2 for g in np.gradient(truth)))
    return err[seam].mean() / gmag[rest].mean(), err[rest].mean() / gmag[rest].mean(), seam.sum()


def test_no_step_at_tile_borders(tiled_dataset):
    specimen, poses, tiles, _ = tiled_dataset
    views = tiles_to_views(tiles, poses)
    seam_err, rest_err, n_seam = _seam_gradient_error(specimen, views, views)
    assert n_seam > 1000, "the test needs seam voxels to look at"
    # Tolerated: gradient error at the places where a view starts or ends at most 5% of
    # the specimen's mean gradient and at most 2x the error elsewhere.
    assert seam_err < 0.05, f"gradient error at seams {seam_err:.4f} of mean gradient"
    assert seam_err < 2 * rest_err + 0.01, f"seam {seam_err:.4f} vs elsewhere {rest_err:.4f}"
    # Control: one view fused with a transform off by 2 voxels shows a step there.
    wrong = list(views)
    v = wrong[1]
    wrong[1] = FusionView(v.source, tf.translation([2.0, 0, 0]) @ v.view_to_world, v.size_xyz, v.view_id)
    bad_seam, _, _ = _seam_gradient_error(specimen, views, wrong)
    assert bad_seam > 2 * seam_err, "a misregistered tile must produce a visible seam error"


def test_trilinear_kernel_matches_map_coordinates():
    rng = np.random.default_rng(3)
    vol = rng.random((9, 11, 13)).astype(np.float32)
    coords = rng.uniform(0, 1, (3, 5000)) * (np.array(vol.shape)[:, None] - 1)
    coords[:, :10] = np.array(vol.shape)[:, None] - 1  # exactly on the far edge
    coords[:, 10:20] = 0.0
    ours = trilinear_sample(vol, coords)
    ref = ndimage.map_coordinates(vol.astype(np.float64), coords, order=1, mode="nearest")
    # Tolerated: 1e-4 absolute on values in [0, 1] (float rounding only).
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_rotated_view_matches_map_coordinates():
    """One rotated, scaled view fused on its own == scipy order-1 resampling of it."""
    rng = np.random.default_rng(4)
    img = ndimage.gaussian_filter(rng.random((20, 30, 40)), 1.0).astype(np.float32) * 1000
    ang = np.deg2rad(7.0)
    rot = np.eye(4)
    rot[:3, :3] = [[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]]
    pose = tf.translation([5.0, -3.0, 2.0]) @ rot @ tf.scaling([1.0, 1.0, 2.0])
    view = FusionView(ArraySource([img]), pose, (40, 30, 20), 0)
    grid = make_output_grid([view])
    out = fuse_block(_full_box(grid), grid, [view], FusionParams(overlap_strategy="avg", output_dtype="float32"))
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in grid.shape_zyx], indexing="ij")
    idx = np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(np.float64)
    p = tf.apply(output_to_view(grid, view), idx)
    inside = np.all((p >= -1e-4) & (p <= np.array([39, 29, 19]) + 1e-4), axis=1)
    ref = ndimage.map_coordinates(img.astype(np.float64), p[inside][:, ::-1].T, order=1, mode="nearest")
    got = out.reshape(-1)[inside]
    # Tolerated: 1e-4 relative to the value range (float32 accumulation).
    np.testing.assert_allclose(got, ref, atol=1e-4 * 1000, rtol=0)
    assert np.all(out.reshape(-1)[~inside] == 0)
