"""End-to-end pair matching on synthetic point clouds with known transforms."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
from matching_synth import affine, make_pair, model_error, rotation

from rhapso_core.matching import MatchingParams, match_descriptors, match_points, model_for
from rhapso_core.models import AffineModel, InterpolatedModel, RigidModel

NOISE = 0.03  # voxels per axis on B's positions (make_pair default)
CENTER = [100.0, 100.0, 60.0]


def assert_recovered(m, pr, max_error=0.1):
    assert m.ok, f"{m.status}: {m.reason}"
    correct = pr.correct(m.idx_a, m.idx_b)
    assert correct.all(), f"{(~correct).sum()} wrong correspondences"
    err = model_error(m.model, pr.truth, pr.a[pr.partner >= 0])
    assert err < max_error, f"model error {err:.4f} voxel"
    assert m.rms < 0.1, f"residual RMS {m.rms:.4f} voxel (noise {NOISE}/axis gives about 0.052)"
    assert len(np.unique(m.idx_a)) == m.n_inliers == len(np.unique(m.idx_b)), "one-to-one"


@pytest.mark.parametrize(
    "name, truth, params",
    [
        ("rigid", affine(rotation([1, 2, 3], 3.0), [7.0, -3.0, 2.0], CENTER), dict(model="rigid")),
        (
            "affine",
            affine(rotation([1, 0, 1], 2.0) @ np.array([[1.02, 0.01, 0], [0, 0.98, 0.01], [0.01, 0, 1.01]]), [5, 2, -1], CENTER),
            dict(model="affine", regularization_model="none"),
        ),
        ("rigid-regularised-affine", affine(rotation([0, 1, 0], 2.5), [-4.0, 6.0, 1.0], CENTER), dict()),
    ],
)
def test_known_transform_with_half_outlier_candidates(name, truth, params):
    # 900 shared points and 300 points of each side's own; with the ratio test off
    # (significance 1) every point of A gets a candidate and more than half of them
    # are wrong. RANSAC must keep exactly the right ones.
    pr = make_pair(1, truth, n_shared=900, n_extra=300)
    p = MatchingParams(significance=1.0, **params)
    cand = match_descriptors(pr.a, pr.b, significance=1.0)
    right = pr.correct(cand.idx_a, cand.idx_b)
    assert 1.0 - right.mean() > 0.5, "the case must have at least 50 % wrong candidates"
    m = match_points(pr.a, pr.b, p)
    assert_recovered(m, pr)
    assert m.n_candidates == len(cand)
    assert m.n_inliers >= 0.98 * right.sum(), f"{m.n_inliers} of {right.sum()} right candidates kept"
    # With the default ratio test the same pair gives few wrong candidates and the same model.
    d = match_points(pr.a, pr.b, MatchingParams(**params))
    assert_recovered(d, pr)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "params",
    [dict(), dict(model="translation", search_radius=30.0), dict(model="rigid", descriptor="rotation")],
)
def test_unrelated_clouds_give_no_pair(seed, params):
    rng = np.random.default_rng(100 + seed)
    a = rng.uniform(0, 1, (1000, 3)) * [200, 200, 120]
    b = rng.uniform(0, 1, (1000, 3)) * [200, 200, 120]
    m = match_points(a, b, MatchingParams(num_iterations=3000, **params))
    assert not m.ok and m.status in ("too few candidates", "no consensus", "filtered out")
    assert m.idx_a.size == 0 and m.idx_b.size == 0 and m.n_inliers == 0


def test_translation_offset_needs_search_radius_above_it():
    truth = affine(np.eye(3), [30.0, 0.0, 0.0])
    pr = make_pair(2, truth, n_shared=800, n_extra=100, box=(200, 200, 100))
    params = dict(model="translation", num_iterations=2000)
    wide = match_points(pr.a, pr.b, MatchingParams(search_radius=50.0, **params))
    assert_recovered(wide, pr)
    np.testing.assert_allclose(wide.model[:3, 3], [30.0, 0.0, 0.0], atol=0.01)
    narrow = match_points(pr.a, pr.b, MatchingParams(search_radius=20.0, **params))
    assert not narrow.ok, "true partners are 30 apart; a 20 radius must not find them"


def test_rotated_pair_needs_the_rotation_invariant_descriptor():
    truth = affine(rotation([1.0, 1.0, 0.0], 20.0), [3.0, 0.0, 0.0], CENTER)
    pr = make_pair(3, truth, n_shared=900, n_extra=150)
    rot = match_points(pr.a, pr.b, MatchingParams(model="rigid", descriptor="rotation"))
    assert_recovered(rot, pr)
    angle = np.degrees(np.arccos((np.trace(rot.model[:3, :3]) - 1) / 2))
    assert abs(angle - 20.0) < 0.01
    trans = match_points(pr.a, pr.b, MatchingParams(model="rigid", descriptor="translation"))
    # Not required to match; when it does, it must still be right.
    assert trans.n_candidates < rot.n_candidates
    if trans.ok:
        assert pr.correct(trans.idx_a, trans.idx_b).all()


def test_deterministic_for_a_seed():
    truth = affine(rotation([0, 0, 1], 2.0), [5.0, 5.0, 0.0], CENTER)
    pr = make_pair(4, truth, n_shared=700, n_extra=200)
    p = MatchingParams(num_iterations=3000, seed=11)
    m1, m2 = match_points(pr.a, pr.b, p), match_points(pr.a, pr.b, p)
    np.testing.assert_array_equal(m1.idx_a, m2.idx_a)
    np.testing.assert_array_equal(m1.idx_b, m2.idx_b)
    np.testing.assert_array_equal(m1.model, m2.model)
    assert m1.summary() == m2.summary()


def test_box_restricts_points_and_indices_refer_to_full_arrays():
    truth = affine(np.eye(3), [2.0, 1.0, 0.0])
    pr = make_pair(5, truth, n_shared=900, box=(200, 200, 100))
    box = np.array([[0.0, 0.0, 0.0], [100.0, 200.0, 100.0]])
    m = match_points(pr.a, pr.b, MatchingParams(model="translation", num_iterations=1000), box=box)
    assert m.ok
    assert np.all(pr.a[m.idx_a, 0] <= 100.0) and np.all(pr.b[m.idx_b, 0] <= 100.0)
    assert pr.correct(m.idx_a, m.idx_b).all()
    assert m.n_points_a < len(pr.a)
    none = match_points(pr.a, pr.b, box=np.array([[500.0, 0, 0], [600.0, 1, 1]]))
    assert none.status == "too few points"


def test_icp_refinement_adds_matches_the_descriptors_missed():
    truth = affine(rotation([1, 1, 1], 1.0), [3.0, -2.0, 1.0], CENTER)
    pr = make_pair(6, truth, n_shared=900, n_extra=300)
    base = match_points(pr.a, pr.b, MatchingParams(model="rigid"))
    icp = match_points(pr.a, pr.b, MatchingParams(model="rigid", icp_iterations=10, icp_max_distance=1.0))
    assert_recovered(icp, pr)
    # Points min 4 apart and 1-voxel ICP radius: every shared point is paired, no extra one.
    assert icp.n_inliers == 900 > base.n_inliers
    assert icp.extra["icp_matches"] == 900


def test_params_validation_and_seed_names():
    with pytest.raises(pydantic.ValidationError, match="num_neighbors"):
        MatchingParams(num_neighbors=0)
    with pytest.raises(pydantic.ValidationError, match="significance"):
        MatchingParams(significance=0.5)
    with pytest.raises(pydantic.ValidationError, match="num_neighbors"):
        MatchingParams(descriptor="rotation", num_neighbors=1)
    with pytest.raises(pydantic.ValidationError, match="typo_param"):
        MatchingParams(typo_param=1)
    assert MatchingParams(inlier_factor=7.5).max_epsilon == 7.5
    p = MatchingParams()
    assert (p.num_neighbors, p.redundancy, p.significance, p.num_iterations) == (3, 1, 3.0, 10000)
    # data-dependent values default to auto (resolved per dataset); on their own, BigStitcher's
    assert (p.max_epsilon, p.model_min_matches, p.search_radius) == ("auto", "auto", "auto")
    c = p.concrete()
    assert (c.max_epsilon, c.min_inlier_ratio, c.model_min_matches, c.lambda_value) == (5.0, 0.1, 12, 0.1)
    assert c.search_radius is None
    m = model_for(p)
    assert isinstance(m, InterpolatedModel) and m.lam == 0.1
    assert isinstance(model_for(MatchingParams(regularization_model="none")), AffineModel)
    assert isinstance(model_for(MatchingParams(model="rigid")), RigidModel)


def test_bad_points_raise_one_line_errors():
    with pytest.raises(ValueError, match="points_a must be"):
        match_points(np.zeros((10, 2)), np.zeros((10, 3)))
    bad = np.zeros((10, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="points_b has non-finite"):
        match_points(np.zeros((10, 3)), bad)


def test_package_docstring_example_runs():
    import doctest

    import rhapso_core.matching as matching

    result = doctest.testmod(matching)
    assert result.attempted > 0 and result.failed == 0
