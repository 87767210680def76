"""A pair that interest points cannot match is held by a phase-correlation link (the last escalation).

Unit part: which pairs are correlated (failed face pairs not held by an earlier phase round).
Integration part: a 2 x 1 grid of a specimen of fibres only (no blobs), whose DoG points lie
along the fibres and slide along them, aligned in-process with prealignment off so that only
the fallback can link the pair. Tolerance: the record names the step; <= 0.3 voxel RMS.
"""

from __future__ import annotations

import numpy as np

from rhapso_core.pipeline.match import PairRecord
from rhapso_core.pipeline.phase_fallback import anchored_pairs


def _rec(a, b, ok):
    return PairRecord((0, a), (0, b), "beads", 10, 10, 5, 20 if ok else 0, 0.5 if ok else np.nan,
                      "ok" if ok else "too few inliers", "" if ok else "x", None)


def test_anchored_pairs_from_one_or_several_anchor_sets():
    a = {"xml": "x", "links": [{"view_a": [0, 0], "view_b": [0, 1], "status": "ok"}]}
    b = {"xml": "y", "links": [{"view_a": [0, 2], "view_b": [0, 1], "status": "ok"},
                               {"view_a": [0, 2], "view_b": [0, 3], "status": "low_r"}]}
    assert anchored_pairs(a) == {frozenset({(0, 0), (0, 1)})}
    assert anchored_pairs([a, b]) == {frozenset({(0, 0), (0, 1)}), frozenset({(0, 1), (0, 2)})}
    assert anchored_pairs(None) == set()


def test_fibre_pair_is_linked_by_phase_correlation(tmp_path):
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, match, solve
    from rhapso_core.pipeline.phase_fallback import link_failed_pairs
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.scoring import score
    from rhapso_core.synthetic.write import write_dataset

    paths = write_dataset(tmp_path / "d", SyntheticParams(
        grid=(3, 1, 1), tile_size_xyz=(128, 128, 32), overlap=0.2, blob_density=0.0, fibre_count=300,
        n_levels=2, chunk_size_xyz=(64, 64, 32), seed=2))
    xml, store = str(paths.xml), str(tmp_path / "ip.zarr")
    p = PipelineParams()
    for plan in detect.plan_views(xml, p.detection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))
    m, s = p.round_params("rigid")
    records = [match.match_pair(xml, store, a, b, "beads", m) for a, b in match.plan_pairs(xml)]
    # The fallback correlates what failed; pretend every pair failed so the test does not depend
    # on how many fibre pairs points happen to match.
    failed = [PairRecord(r.view_a, r.view_b, r.label, r.n_points_a, r.n_points_b, 0, 0, np.nan,
                         "too few inliers", "fibres", None) for r in records]
    out, anchors = link_failed_pairs(xml, failed, p.stitching)
    assert anchors is not None and len(anchors["links"]) == len(failed)
    assert all(r.escalations[-1]["step"] == "phase_correlation" for r in out)
    assert all("phase-correlation link" in r.reason for r in out)
    held, again = link_failed_pairs(xml, failed, p.stitching, anchored=anchored_pairs(anchors))
    assert again is None and held == failed   # held pairs are not correlated twice
    # Solved with the image links beside whatever fibre points matched (the stage error is 2 voxels RMS).
    out_xml = str(tmp_path / "solved.xml")
    solve.solve_dataset(xml, store, "beads", s, out_xml, phase_anchors=[anchors])
    r = score(paths.ground_truth, out_xml, gauge="rigid")
    assert r.rms_voxels <= 0.3, r.summary()
