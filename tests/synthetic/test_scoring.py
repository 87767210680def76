"""score(): zero at the truth, jitter statistics at the nominal poses, gauge removal."""

import json

import numpy as np
import pytest

from rhapso_core import transforms as tf
from rhapso_core.synthetic import GroundTruth, ScoreError, SyntheticParams, ViewTruth, sample_points, score, tile_grid
from rhapso_core.synthetic.geometry import rotation_matrix


def _truth(**kw) -> GroundTruth:
    p = SyntheticParams(**{"grid": (3, 2, 2), "tile_size_xyz": (128, 96, 32), "seed": 11, **kw})
    views = tuple(ViewTruth.from_tile(t) for t in tile_grid(p))
    return GroundTruth(views=views, world_unit_um=p.world_unit_um, params=p.model_dump(mode="json"))


def _true(truth):
    return {v.view_id: v.true_affine for v in truth.views}


def _rigid(angle_deg=7.0, t=(120.0, -40.0, 15.0)):
    g = np.eye(4)
    g[:3, :3] = rotation_matrix(np.array([1.0, 2.0, 0.5]), np.deg2rad(angle_deg))
    g[:3, 3] = t
    return g


@pytest.mark.parametrize("gauge", ["none", "translation", "rigid", "affine"])
def test_true_transforms_score_zero(gauge):
    truth = _truth(rotation_deg=1.0, scale_jitter=0.01, shear=0.01)
    s = score(truth, _true(truth), gauge=gauge)
    assert s.rms_um < 1e-6 and s.max_um < 1e-6 and s.max_voxels < 1e-6, s.summary()
    assert s.nominal_rms_um > 0.1, "the nominal poses are off by the stage jitter"


def test_nominal_score_is_the_jitter_statistics():
    """Translation-only jitter, no gauge: every sample point of a view is off by its jitter vector,
    so RMS / max equal the jitter magnitudes' (point-count weighted) RMS / max. Tolerated: 1e-9."""
    truth = _truth(world_unit="um")
    s = score(truth, {v.view_id: v.nominal_affine for v in truth.views}, gauge="none")
    pts = sample_points(truth)
    n = np.array([len(pts[v.view_id]) for v in truth.views])
    j = np.array([np.linalg.norm(v.jitter_world) for v in truth.views]) * truth.world_unit_um
    assert s.n_points == n.sum() and all(pv.n_points == k for pv, k in zip(s.per_view, n))
    assert abs(s.rms_um - np.sqrt(np.sum(n * j**2) / n.sum())) < 1e-9
    assert abs(s.max_um - j.max()) < 1e-9
    assert abs(s.rms_voxels - s.rms_um / 0.5) < 1e-9, "voxels are the finest axis (0.5 um)"
    assert abs(s.nominal_rms_um - s.rms_um) < 1e-12 and abs(s.nominal_max_um - s.max_um) < 1e-12
    for pv, jv in zip(s.per_view, j):
        assert abs(pv.rms_um - jv) < 1e-9 and abs(pv.max_um - jv) < 1e-9
    # Jitter is uniform in +-(3, 3, 1) voxels of (0.5, 0.5, 2) um: at most |(1.5, 1.5, 2)| um.
    assert 0.3 < s.rms_um < np.linalg.norm([1.5, 1.5, 2.0])


def test_translation_gauge_removes_the_mean_jitter():
    truth = _truth()
    s = score(truth, {v.view_id: v.nominal_affine for v in truth.views}, gauge="translation")
    pts = sample_points(truth)
    n = np.array([len(pts[v.view_id]) for v in truth.views])
    jit = np.array([v.jitter_world for v in truth.views]) * truth.world_unit_um
    centred = np.linalg.norm(jit - (n[:, None] * jit).sum(0) / n.sum(), axis=1)
    assert abs(s.rms_um - np.sqrt(np.sum(n * centred**2) / n.sum())) < 1e-9
    assert abs(s.max_um - centred.max()) < 1e-9


@pytest.mark.parametrize("gauge", ["rigid", "affine"])
def test_a_global_rigid_transform_is_removed(gauge):
    truth = _truth(rotation_deg=1.0, scale_jitter=0.01, shear=0.01)
    g = _rigid()
    moved = {k: g @ a for k, a in _true(truth).items()}
    s = score(truth, moved, gauge=gauge)
    assert s.max_um < 1e-6, s.summary()
    assert np.allclose(np.array(s.gauge_affine), tf.invert(g), atol=1e-9), "the gauge is the inverse global map"
    assert score(truth, moved, gauge="none").rms_um > 10.0, "without gauge removal the motion shows"


def test_a_global_affine_needs_the_affine_gauge():
    truth = _truth()
    g = _rigid()
    g[:3, :3] = g[:3, :3] @ np.array([[1.02, 0.01, 0.0], [0.0, 0.99, 0.02], [0.0, 0.0, 1.01]])
    moved = {k: g @ a for k, a in _true(truth).items()}
    assert score(truth, moved, gauge="affine").max_um < 1e-6
    assert score(truth, moved, gauge="rigid").rms_um > 0.5


def test_one_displaced_view_is_reported_per_view():
    truth = _truth()
    solved = _true(truth)
    bad = truth.views[4].view_id
    shift = np.array([3.0, -4.0, 0.0])  # world units (finest voxels = 0.5 um): |shift| = 5 voxels
    solved[bad] = tf.translation(shift) @ solved[bad]
    s = score(truth, solved, gauge="none")
    for pv in s.per_view:
        want = 5.0 if (pv.timepoint, pv.setup) == bad else 0.0
        assert abs(pv.rms_voxels - want) < 1e-9 and abs(pv.max_voxels - want) < 1e-9
        assert abs(pv.rms_um - want * 0.5) < 1e-9
    assert abs(s.max_voxels - 5.0) < 1e-9
    # Under a rigid gauge the others absorb part of it, but the error stays on the displaced view.
    sr = score(truth, solved, gauge="rigid")
    worst = max(sr.per_view, key=lambda v: v.rms_um)
    assert (worst.timepoint, worst.setup) == bad and 0.0 < sr.rms_um < s.rms_um


def test_accepts_setup_keys_and_3x4_affines_and_is_json_able(tmp_path):
    truth = _truth()
    solved = {v.setup: v.true_affine[:3] for v in truth.views}
    s = score(truth, solved)
    assert s.max_um < 1e-6
    d = json.loads(s.to_json())
    assert d["gauge"] == "rigid" and len(d["per_view"]) == len(truth.views)
    truth.save(tmp_path / "gt.json")
    assert score(tmp_path / "gt.json", solved).max_um < 1e-6


def test_missing_view_and_bad_gauge_raise():
    truth = _truth()
    solved = _true(truth)
    del solved[(0, 3)]
    with pytest.raises(ScoreError, match=r"\(0, 3\)"):
        score(truth, solved)
    with pytest.raises(ScoreError, match="gauge"):
        score(truth, _true(truth), gauge="similarity")


def test_sample_points_are_corners_and_overlap_centres():
    truth = _truth()
    pts = sample_points(truth)
    # 3 x 2 x 2 grid: a corner tile touches 7 others (faces, edges and the diagonal).
    first = pts[truth.views[0].view_id]
    assert first.shape == (8 + 7, 3)
    size = np.asarray(truth.views[0].size_xyz)
    assert np.all(first[8:] > 0) and np.all(first[8:] < size - 1), "overlap centres lie inside the tile"
