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


def test_pairs_fitted_in_threads_give_the_loop_s_links_and_report(tmp_path, monkeypatch):
    """The fits of a round's pairs run side by side (scipy's filters and resampling release the
    GIL); the links and the report are those of fitting them one after another, bit for bit."""
    import json
    import threading

    from rhapso_core.autoparams import resolve_parameters
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, match
    from rhapso_core.pipeline import overlap_affine_links as links
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    paths = write_dataset(tmp_path / "d", SyntheticParams(
        grid=(3, 1, 1), tile_size_xyz=(128, 128, 32), overlap=0.25, voxel_size_xyz=(0.5, 0.5, 1.0),
        jitter_voxels=(2.0, 2.0, 1.0), blob_density=1000.0, fibre_count=0, n_levels=2,
        chunk_size_xyz=(64, 64, 32), seed=5))
    xml, store = str(paths.xml), str(tmp_path / "ip.zarr")
    p = resolve_parameters(xml, PipelineParams(detection={"dsxy": 1, "dsz": 1})).params
    m, _ = p.round_params("rigid")
    for plan in detect.plan_views(xml, p.detection):
        detect.store_view(store, plan, detect.merge_view(plan, [detect.run_chunk(xml, plan.view, t, plan.params)
                                                                for t in plan.tasks]))
    records = [match.match_pair(xml, store, a, b, p.detection.label, m) for a, b in match.plan_pairs(xml)]
    assert sum(r.ok for r in records) >= 2, records

    fitted_in = []
    fit_pair = links._fit_pair
    monkeypatch.setattr(links, "_fit_pair", lambda *a: (fitted_in.append(threading.get_ident()), fit_pair(*a))[1])
    oa = p.stitching.overlap_affine
    got = {}
    for workers in (1, 2):
        monkeypatch.setattr(links, "_fit_workers", lambda params, w=workers: w)
        fitted_in.clear()
        got[workers] = links.measure_overlap_affines(xml, store, records, p.detection.label, oa, p.solver.min_matches)
        assert len(set(fitted_in)) == workers
    assert json.dumps(got[1], sort_keys=True) == json.dumps(got[2], sort_keys=True)
    anchors, report = got[2]
    assert anchors is not None and len(anchors["affine_links"]) >= 2, report


def test_fits_at_once_are_bounded_by_the_memory_available(monkeypatch):
    from types import SimpleNamespace

    import psutil

    from rhapso_core.pipeline import overlap_affine_links as links

    params = OverlapAffineParams()
    per_pair = links._FIT_ARRAYS * 4 * params.max_crop_voxels
    monkeypatch.setattr(links, "available_cores", lambda: 8)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=3 * per_pair))
    assert links._fit_workers(params) == 1  # half of it holds one pair's working set at its largest
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=100 * per_pair))
    assert links._fit_workers(params) == 8
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=per_pair // 4))
    assert links._fit_workers(params) == 1  # never none
