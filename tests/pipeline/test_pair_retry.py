"""A pair that fails is retried with escalations before it is given up (rhapso_core.pipeline.retry).

Generated 3 x 1 tiles, dim nuclei (60-200 photons over a background of 100) among
bright fibres: at the default detection (dsxy 2, threshold 0.008) the first pair's
15-voxel overlap yields 9 candidate matches, fewer than the 12 RANSAC needs.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.config import PipelineParams
from rhapso_core.pipeline import detect, match, solve
from rhapso_core.pipeline.retry import RetryParams, retry_failed_pairs, retry_pair
from rhapso_core.pointstore import PointStore
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.scoring import score
from rhapso_core.synthetic.write import write_dataset


@pytest.fixture(scope="module")
def dim(tmp_path_factory):
    root = tmp_path_factory.mktemp("retry")
    paths = write_dataset(root / "data", SyntheticParams(
        grid=(3, 1, 1), tile_size_xyz=(128, 128, 32), overlap=0.15, blob_density=1500.0,
        blob_amplitude=(60.0, 200.0), fibre_amplitude=(600.0, 2000.0), jitter_voxels=(2.0, 2.0, 1.0),
        n_levels=2, chunk_size_xyz=(64, 64, 32), seed=5))
    # The dataset-free fallbacks, not `auto`: with those the dim pair fails at first (what is
    # tested here is the retry; the resolver's finer detection matches it outright).
    base = PipelineParams()
    p = base.model_copy(update={"detection": base.detection.concrete(), "matching": base.matching.concrete()})
    xml, store = str(paths.xml), str(root / "ip.zarr")
    for plan in detect.plan_views(xml, p.detection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))
    m, _ = p.round_params("rigid")
    records = [match.match_pair(xml, store, a, b, "beads", m) for a, b in match.plan_pairs(xml)]
    return root, paths, store, p, m, records


def test_failed_pair_is_retried_and_recorded(dim, tmp_path):
    root, paths, store, p, m, records = dim
    first = {(r.view_a[1], r.view_b[1]): r for r in records}
    assert not first[(0, 1)].ok and first[(1, 2)].ok, [(r.status, r.reason) for r in records]
    kept = PointStore(store).read_correspondences((0, 1), (0, 2), "beads")
    retried = retry_failed_pairs(str(paths.xml), store, records, "beads", m, p.detection)
    rec = {(r.view_a[1], r.view_b[1]): r for r in retried}
    assert rec[(0, 1)].ok and rec[(0, 1)].n_inliers >= 12
    steps = [e["step"] for e in rec[(0, 1)].escalations]
    assert steps[0] == "lower_threshold" and rec[(0, 1)].escalations[-1]["status"] == "ok"
    assert all(e["added_points"] >= 0 and e["detail"] for e in rec[(0, 1)].escalations)
    assert rec[(0, 1)].to_dict()["escalations"] == [dict(e) for e in rec[(0, 1)].escalations]
    assert rec[(1, 2)] is first[(1, 2)]   # a matched pair is left alone
    # Points were appended to view 1: its other pair's matches survive, same indices.
    again = PointStore(store).read_correspondences((0, 1), (0, 2), "beads")
    assert np.array_equal(again.idx_a, kept.idx_a) and np.array_equal(again.idx_b, kept.idx_b)
    # The retried matches are right: every tile placed, within 0.5 voxel RMS of the truth
    # (measured 0.047; the stage positions: 1.6).
    out = str(tmp_path / "rigid.xml")
    rep = solve.solve_dataset(str(paths.xml), store, "beads", p.round_params("rigid")[1], out)
    assert rep.result.report.unconnected_views == []
    s = score(paths.ground_truth, out, gauge="rigid")
    assert s.rms_voxels < 0.5 and s.rms_voxels < s.nominal_rms_voxels / 2, s.summary()


def test_a_pair_still_unmatched_says_why(dim):
    root, paths, store, p, m, records = dim
    strict = m.model_copy(update={"model_min_matches": 10_000, "search_radius": 40.0})
    r = retry_pair(str(paths.xml), store, records[0], "beads", strict, p.detection,
                   RetryParams(steps=["finer_downsampling", "wider_search", "rotation_descriptor"]))
    assert not r.ok
    assert [e["step"] for e in r.escalations] == ["finer_downsampling", "wider_search", "rotation_descriptor"]
    assert "still unmatched after escalations" in r.reason
    assert "search_radius 40 -> 120" in r.escalations[1]["detail"]
    assert all("10000 needed" in e["reason"] or e["status"] == "skipped" for e in r.escalations), r.escalations


def test_pairs_without_real_overlap_are_not_retried(dim):
    root, paths, store, p, m, records = dim
    r = retry_pair(str(paths.xml), store, records[0], "beads", m.model_copy(update={"model_min_matches": 10_000}),
                   p.detection, RetryParams(min_overlap_voxels=10**9))
    assert r.escalations == () and "not retried" in r.reason


def test_corner_contacts_are_not_retried(dim):
    root, paths, store, p, m, records = dim
    r = retry_pair(str(paths.xml), store, records[0], "beads", m, p.detection, largest_overlap=1e12)
    assert r.escalations == () and "min_relative_overlap" in r.reason


def test_unknown_escalation_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown escalation 'louder'"):
        RetryParams(steps=["louder"])
