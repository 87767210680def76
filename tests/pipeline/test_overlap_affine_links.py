"""Overlap-affine links: the points' test that guards a fit, and the links' form in the solve."""

import numpy as np

from rhapso_core import transforms
from rhapso_core.image_source import level_to_level0
from rhapso_core.pipeline.overlap_affine_links import (
    AFFINE_LINK_LABEL, _points_f_test, affine_solver_links, replaced_pairs, round_fits_affines,
)
from rhapso_core.solver import SolverParams
from rhapso_core.stitching.params import OverlapAffineParams


def _matches(rng, truth, n=80, noise=0.25):
    pa = rng.uniform([190, 0, 0], [220, 200, 26], (n, 3))
    return pa, transforms.apply(truth, pa) + rng.normal(0, noise, (n, 3))


def test_the_points_accept_the_true_affine_and_refuse_a_slid_one():
    """Matches with 0.25 voxel of noise per axis: the true transform passes in at least 19 of 20 draws
    (p = 0.001 per draw); one slid by half a voxel along x, or scaled by 1 % along x, never passes."""
    truth = np.eye(4)
    truth[:3, :3] += [[0.008, 0.003, 0.0], [-0.002, -0.006, 0.0], [0.0, 0.001, 0.004]]
    truth[:3, 3] = [-187.0, 2.0, 0.3]
    slid, scaled = truth.copy(), truth.copy()
    slid[0, 3] += 0.5
    scaled[0, :3] *= 1.01
    passed = {"truth": 0, "slid": 0, "scaled": 0}
    for seed in range(20):
        pa, pb = _matches(np.random.default_rng(seed), truth)
        for name, m in (("truth", truth), ("slid", slid), ("scaled", scaled)):
            stat, crit = _points_f_test(pa, pb, m)
            passed[name] += stat <= crit
    assert passed["truth"] >= 19 and passed["slid"] == 0 and passed["scaled"] == 0, passed


def test_solver_links_carry_the_pair_weight_on_a_grid_over_the_box():
    a2w = {(0, 0): np.eye(4), (0, 1): transforms.translation([180.0, 0.0, 0.0])}
    geometry = {v: (m, (220, 200, 26)) for v, m in a2w.items()}
    matrix = np.eye(4)
    matrix[:3, 3] = [-180.0, 0.0, 0.0]
    anchors = {"xml": "x.xml", "links": [], "affine_links": [
        {"view_a": [0, 0], "view_b": [0, 1], "box_min_xyz": [182.0, 2.0, 2.0], "box_max_xyz": [217.0, 197.0, 23.0],
         "matrix": matrix.tolist(), "weight": 54.0},
        {"view_a": [0, 0], "view_b": [0, 9], "box_min_xyz": [0, 0, 0], "box_max_xyz": [1, 1, 1],
         "matrix": np.eye(4).tolist(), "weight": 5.0}]}  # a view the solve does not see: left out
    links = affine_solver_links(anchors, geometry)
    assert len(links) == 1
    lk = links[0]
    assert lk.label == AFFINE_LINK_LABEL and lk.n == 27
    assert np.isclose(np.sum(lk.weight), 54.0)
    np.testing.assert_allclose(lk.pa, lk.pb, atol=1e-9)  # the views already agree under this matrix
    assert lk.pa[:, 0].min() == 182.0 and lk.pa[:, 0].max() == 217.0
    assert replaced_pairs([anchors]) == {frozenset(((0, 0), (0, 1))), frozenset(((0, 0), (0, 9)))}


def test_a_flat_box_gets_one_row_of_virtual_matches_across_its_plane():
    geometry = {(0, 0): (np.eye(4), (100, 100, 1)), (0, 1): (np.eye(4), (100, 100, 1))}
    anchors = {"affine_links": [{"view_a": [0, 0], "view_b": [0, 1], "box_min_xyz": [80.0, 0.0, 0.0],
                                 "box_max_xyz": [99.0, 99.0, 0.0], "matrix": np.eye(4).tolist(), "weight": 9.0}]}
    (lk,) = affine_solver_links(anchors, geometry)
    assert lk.n == 9 and np.all(lk.pa[:, 2] == 0.0)


def test_only_rounds_that_may_choose_an_affine_fit_them():
    on, off = OverlapAffineParams(), OverlapAffineParams(enabled=False)
    assert round_fits_affines(SolverParams(model="affine"), on)
    assert round_fits_affines(SolverParams(model="auto", max_model="affine"), on)
    assert not round_fits_affines(SolverParams(model="rigid"), on)
    assert not round_fits_affines(SolverParams(model="auto", max_model="rigid"), on)
    assert not round_fits_affines(SolverParams(model="affine"), off)


def test_level_voxels_map_to_full_resolution_centres():
    m = level_to_level0((1, 2, 4))  # z y x factors
    np.testing.assert_allclose(transforms.apply(m, np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])),
                               [[1.5, 0.5, 0.0], [5.5, 2.5, 1.0]])


def test_phase_held_pairs_carry_their_link_weight_and_only_faces():
    from rhapso_core.pipeline.overlap_affine_links import phase_held

    k = lambda a, b, status="ok": {"view_a": [0, a], "view_b": [0, b], "status": status}  # noqa: E731
    anchors = [{"links": [k(0, 1), k(1, 2, "low_correlation"), k(0, 4)], "weights": [2.0, 1.0, 1.0]},
               None, {"links": [k(3, 4)]}]
    held = phase_held(anchors)
    assert held == {frozenset(((0, 0), (0, 1))): 16.0, frozenset(((0, 0), (0, 4))): 8.0,
                    frozenset(((0, 3), (0, 4))): 8.0}
    faces = {frozenset(((0, 0), (0, 1))), frozenset(((0, 3), (0, 4)))}
    assert set(phase_held(anchors, faces)) == faces
