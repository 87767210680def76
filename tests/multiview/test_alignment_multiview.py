"""Views that move together are solved together; timepoints registered to a reference.

Dataset: 2 x 1 tiles, 2 channels (different specimens), 2 illuminations, 2 timepoints with
a drift of the specimen between them. Tolerances: every view of a tile at a timepoint gets
the identical registration (exact equality); alignment error <= 0.3 voxel RMS against the
ground truth (one gauge over all views and both timepoints, so an uncorrected drift fails).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.config import PipelineParams
from rhapso_core.pipeline import detect, match, solve
from rhapso_core.pipeline.view_selection import ViewSelection
from rhapso_core.spimdata import load_xml
from rhapso_core.synthetic.scoring import score


def _detect(xml, store, p, selection=None):
    for plan in detect.plan_views(xml, p.detection, selection=selection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))


def _align(xml, store, p, tmp, selection=None):
    a = p.alignment
    for i, r in enumerate(a.rounds):
        m, s = p.round_params(r)
        pairs = match.plan_pairs(xml, a.pair_mode, a.group_by, grouping=a.grouping, timepoints=a.timepoints,
                                 reference_timepoint=a.reference_timepoint, selection=selection,
                                 channels=p.detection.channels)
        records = [match.match_pair(xml, store, va, vb, "beads", m) for va, vb in pairs]
        out = str(tmp / f"{i}-{r}.xml")
        report = solve.solve_dataset(xml, store, "beads", s, out, grouping=a.grouping, timepoints=a.timepoints,
                                     reference_timepoint=a.reference_timepoint, selection=selection)
        xml = out
    return xml, pairs, records, report


@pytest.fixture(scope="module")
def detected(multiview_dataset, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("ip") / "ip.zarr")
    _detect(str(multiview_dataset.xml), store, PipelineParams())
    return store


def _tile_registrations(xml):
    sd = load_xml(xml)
    by = {}
    for v in sd.views():
        by.setdefault((v[0], sd.setup_of(v).tile), []).append(sd.view_to_world(v))
    return by


def test_grouped_reference_timepoint_alignment(multiview_dataset, detected, tmp_path):
    p = PipelineParams(alignment={"timepoints": "reference"})
    xml, pairs, records, report = _align(str(multiview_dataset.xml), detected, p, tmp_path)
    sd = load_xml(xml)
    # Pairs join different tiles or timepoints, never two views of one tile at one timepoint.
    for a, b in pairs:
        assert (a[0], sd.setup_of(a).tile) != (b[0], sd.setup_of(b).tile)
        assert sd.setup_of(a).channel == sd.setup_of(b).channel
    assert any(a[0] != b[0] for a, b in pairs), "reference mode must match across timepoints"
    assert report.n_groups == 4  # 2 tiles x 2 timepoints
    for key, affines in _tile_registrations(xml).items():
        assert len(affines) == 4
        for m in affines[1:]:
            np.testing.assert_array_equal(m, affines[0], err_msg=f"views of (timepoint, tile) {key} differ")
    result = score(multiview_dataset.ground_truth, xml, gauge="affine")
    assert result.rms_voxels <= 0.3, result.summary()
    assert result.rms_voxels < result.nominal_rms_voxels / 4, result.summary()


def test_timepoints_individually_leave_the_drift(multiview_dataset, detected, tmp_path):
    p = PipelineParams(alignment={"timepoints": "individually"})
    xml, pairs, _, _ = _align(str(multiview_dataset.xml), detected, p, tmp_path)
    assert all(a[0] == b[0] for a, b in pairs)
    # Each timepoint is right on its own, but timepoint 1 still sits where the stage put it.
    both = score(multiview_dataset.ground_truth, xml, gauge="affine")
    assert both.rms_voxels > 0.3, both.summary()


def test_points_from_one_channel_register_both(multiview_dataset, tmp_path):
    p = PipelineParams(detection={"channels": [1]}, alignment={"timepoints": "reference"})
    xml0 = str(multiview_dataset.xml)
    store = str(tmp_path / "ip.zarr")
    sel = ViewSelection(illuminations=[0])
    _detect(xml0, store, p, selection=sel)
    xml, pairs, _, _ = _align(xml0, store, p, tmp_path, selection=sel)
    sd = load_xml(xml)
    assert {sd.setup_of(a).channel for a, _ in pairs} == {1}
    assert {sd.setup_of(a).illumination for a, _ in pairs} == {0}
    before = load_xml(xml0)
    for v in sd.views():
        if sd.setup_of(v).illumination == 1:  # not selected: registration untouched
            np.testing.assert_array_equal(sd.view_to_world(v), before.view_to_world(v))
    from rhapso_core.synthetic.truth import GroundTruth

    truth = GroundTruth.load(multiview_dataset.ground_truth)
    chosen = {v.view_id: v for v in truth.views if sd.setup_of(v.view_id).illumination == 0}
    sub = type(truth)(views=tuple(chosen.values()), world_unit_um=truth.world_unit_um, params=truth.params,
                      xml=truth.xml, blobs_csv=truth.blobs_csv, root=truth.root)
    result = score(sub, xml, gauge="affine")
    assert result.rms_voxels <= 0.3, result.summary()
