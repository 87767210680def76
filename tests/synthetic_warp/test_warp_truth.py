"""The z-warp of the synthetic generator: rendering follows it, the ground truth records it,
and overlap_consistency measures what two warped tiles disagree by."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.synthetic import (
    AnalyticSpecimen,
    GroundTruth,
    SyntheticParams,
    ViewTruth,
    VolumeSpecimen,
    WarpError,
    ZWarp,
    overlap_consistency,
    render_tile,
    tile_affine_um,
    tile_grid,
    view_blob_centres,
    write_dataset,
)

WARPED = dict(grid=(2, 1, 1), tile_size_xyz=(64, 40, 96), overlap=0.25, voxel_size_xyz=(0.5, 0.5, 1.0),
              warp_amplitude_voxels=(3.0, 2.0, 1.5), warp_periods=1.5, seed=5)


def test_defaults_leave_tiles_unwarped_and_poses_unchanged():
    plain = tile_grid(SyntheticParams(seed=3))
    warped = tile_grid(SyntheticParams(seed=3, warp_amplitude_voxels=(2.0, 2.0, 0.0)))
    assert all(t.warp is None for t in plain), "warp is off by default"
    for a, b in zip(plain, warped):
        # The warp draws from its own random stream: turning it on moves no tile.
        assert np.array_equal(a.true_affine, b.true_affine)
        assert b.warp is not None and np.allclose(np.abs(b.warp.amplitude_xyz), [2.0, 2.0, 0.0])
    assert len({t.warp.phase for t in warped}) == len(warped), "each tile has its own phase"


def test_voxel_to_world_inverts_exactly():
    tile = tile_grid(SyntheticParams(**WARPED))[1]
    view = ViewTruth.from_tile(tile)
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 1, (500, 3)) * (np.array(tile.size_xyz) - 1)
    w = view.voxel_to_world(v)
    assert np.allclose(w, tile.voxel_to_world(v))
    # Tolerated: 1e-8 voxels (Newton on the z equation converges to ~1e-10).
    assert np.abs(view.world_to_voxel(w) - v).max() < 1e-8
    # The warp is not an affine: the best affine through the mapping leaves about the amplitude.
    from rhapso_core import models

    a = models.make_model("affine").fit(v, w)
    assert np.sqrt(np.mean(np.sum((tf.apply(a, v) - w) ** 2, axis=1))) > 1.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"warp_amplitude_voxels": (-1.0, 0.0, 0.0)}, "warp_amplitude_voxels"),
        ({"warp_periods": 0.0}, "warp_periods"),
        # 2 pi * 1 * 12 / 64 > 1: the z mapping would fold.
        ({"tile_size_xyz": (64, 64, 64), "warp_amplitude_voxels": (0.0, 0.0, 12.0)}, "warp_amplitude_voxels"),
        # jitter 3 + warp 14 on each side exceeds the 30.7-voxel x overlap.
        ({"warp_amplitude_voxels": (14.0, 0.0, 0.0)}, "warp_amplitude_voxels"),
    ],
)
def test_bad_warp_parameters_name_themselves(kwargs, name):
    with pytest.raises(ValidationError) as info:
        SyntheticParams(**kwargs)
    assert name in str(info.value)


def test_a_folding_warp_is_refused():
    with pytest.raises(WarpError, match="folds"):
        ZWarp(np.array([0.0, 0.0, 20.0]), 1.0, 0.0, 64.0)


def _lattice_specimen(tile, p, spacing_um=9.0):
    """Isolated blobs (sigma 1.2 um) on a lattice over the tile's true footprint."""
    lo, hi = tf.view_bounding_box(tile_affine_um(tile, p), tile.size_xyz)
    axes = [np.arange(lo[i] + 4.0, hi[i] - 4.0, spacing_um) for i in range(3)]
    c = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return AnalyticSpecimen(c, np.full(len(c), 1.2), np.full(len(c), 1000.0))


def test_rendered_blobs_sit_where_the_warped_truth_says():
    """Noise-free warped tile of isolated blobs: each blob's sub-voxel peak (quadratic fit of log
    intensity on its 3x3x3 neighbourhood) is where ``view_blob_centres`` (the exact inverse of the
    warped mapping) predicts. Tolerated: 0.05 voxel (the warp bends a blob slightly, so log intensity
    is not exactly quadratic in view voxels). Control: the unwarped affine prediction is off by
    more than 1 voxel somewhere."""
    p = SyntheticParams(**WARPED)
    tile = tile_grid(p)[0]
    spec = _lattice_specimen(tile, p)
    img = render_tile(spec, tile_affine_um(tile, p), tile.size_xyz, warp=tile.warp).astype(np.float64) + 1e-3
    view = ViewTruth.from_tile(tile)
    vb = view_blob_centres(view, p.world_unit_um, spec.blob_centres_um, spec.blob_sigma_um, spec.blob_amplitude,
                           margin_voxels=2)
    flat = tf.apply(tf.invert(tf.scaling([p.world_unit_um] * 3) @ tile.true_affine), spec.blob_centres_um[vb.index])
    off = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    design = np.column_stack([off**2, off[:, 0] * off[:, 1], off[:, 0] * off[:, 2], off[:, 1] * off[:, 2], off,
                              np.ones(len(off))])
    found = []
    for c in vb.centres_xyz:
        r = np.rint(c).astype(int)
        coef = np.linalg.lstsq(design, np.log(img[r[2] + off[:, 2], r[1] + off[:, 1], r[0] + off[:, 0]]), rcond=None)[0]
        h = np.array([[2 * coef[0], coef[3], coef[4]], [coef[3], 2 * coef[1], coef[5]], [coef[4], coef[5], 2 * coef[2]]])
        found.append(r + np.linalg.solve(h, -coef[6:9]))
    found = np.array(found)
    assert len(found) >= 30, f"only {len(found)} blobs inside the tile"
    err = np.abs(found - vb.centres_xyz).max()
    assert err < 0.05, f"rendered blob centres {err:.3f} voxels from the warped truth"
    assert np.abs(found - flat).max() > 1.0, "the warp must move blobs (else this test proves nothing)"


def test_volume_specimen_is_sampled_through_the_warp():
    """A volume at integer placement, rendered through a warp, equals each plane of the volume
    shifted by that plane's warp (scipy.ndimage.shift, linear). Tolerated: 1e-3 of the intensity."""
    rng = np.random.default_rng(1)
    vol = ndimage.gaussian_filter(rng.random((40, 40, 40)), 2.0).astype(np.float32)
    spec = VolumeSpecimen(vol, (1.0, 1.0, 1.0), origin_um=np.zeros(3))
    warp = ZWarp(np.array([2.5, -1.5, 0.0]), 1.0, 0.3, 24.0)
    img = render_tile(spec, tf.translation([8.0, 8.0, 8.0]), (24, 24, 24), interpolation_order=1, warp=warp)
    s = warp.shift(np.arange(24.0))
    for z in range(24):
        ref = ndimage.shift(vol[8 + z], (-s[z, 1], -s[z, 0]), order=1)[8:32, 8:32]
        assert np.abs(img[z] - ref).max() < 1e-3 * vol.max(), f"plane {z}"


def test_ground_truth_records_the_warp(tmp_path):
    p = SyntheticParams(**{**WARPED, "n_levels": 1, "blob_density": 50.0, "fibre_count": 2})
    paths = write_dataset(tmp_path / "w", p)
    raw = json.loads(paths.ground_truth.read_text())
    assert all("warp" in v for v in raw["views"])
    gt = GroundTruth.load(paths.ground_truth)
    for t, v in zip(tile_grid(p), gt.views):
        assert np.array_equal(v.warp.amplitude_xyz, t.warp.amplitude_xyz) and v.warp.phase == t.warp.phase
    plain = write_dataset(tmp_path / "p", SyntheticParams(**{**WARPED, "warp_amplitude_voxels": (0, 0, 0),
                                                             "n_levels": 1, "blob_density": 50.0, "fibre_count": 2}))
    assert not any("warp" in v for v in json.loads(plain.ground_truth.read_text())["views"]), \
        "an unwarped dataset writes the same ground truth as before the warp existed"

    # overlap_consistency of the true affines (warp ignored): the two tiles' relative warp,
    # recomputed here directly; 0 without a warp.
    true = {v.view_id: v.true_affine for v in gt.views}
    rec = overlap_consistency(gt, true)
    a, b = gt.views
    from rhapso_core.synthetic.consistency import overlap_points

    va, vb = overlap_points(a, b)
    expect = np.linalg.norm(tf.apply(a.true_affine, va) - tf.apply(b.true_affine, vb), axis=1)
    assert rec.n_points == len(va) > 500
    assert np.isclose(rec.rms_world, np.sqrt(np.mean(expect**2)))
    assert rec.rms_voxels > 1.0, "two warped tiles' affine parts disagree by about the warp"
    # Tolerated: 1e-9 world units (float round-off of the exact inverse).
    exact = np.linalg.norm(a.voxel_to_world(va) - b.voxel_to_world(vb), axis=1)
    assert exact.max() < 1e-9, "the exact warped mappings put each overlap point at one world position"
    plain_gt = GroundTruth.load(plain.ground_truth)
    plain_rec = overlap_consistency(plain_gt, {v.view_id: v.true_affine for v in plain_gt.views})
    assert plain_rec.max_world < 1e-9, "without a warp the true affines agree exactly"
