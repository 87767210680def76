"""The generator's multiview datasets: attributes in the XML, content per channel,
illumination sides, timepoint drift, ground truth per view."""

from __future__ import annotations

import numpy as np

from rhapso_core.io import open_image
from rhapso_core.spimdata import load_xml
from rhapso_core.synthetic.truth import GroundTruth


def _pixels(paths, view):
    return open_image(str(paths.tiles[view]), kind="ome-zarr").read(((0, 24), (0, 80), (0, 96))).astype(np.float64)


def test_setups_carry_bigstitcher_attributes(multiview_dataset):
    sd = load_xml(str(multiview_dataset.xml))
    assert list(sd.timepoints) == [0, 1]
    combos = {(s.attributes["tile"], s.attributes["channel"], s.attributes["illumination"], s.attributes["angle"])
              for s in sd.setups.values()}
    assert combos == {(t, c, i, 0) for t in range(2) for c in range(2) for i in range(2)}
    assert len(sd.views()) == 16
    assert set(sd.attribute_defs) >= {"tile", "channel", "illumination", "angle"}


def test_channels_differ_illuminations_are_opposite(multiview_dataset):
    sd = load_xml(str(multiview_dataset.xml))
    by = {(s.tile, s.channel, s.illumination): s.id for s in sd.setups.values()}
    a = _pixels(multiview_dataset, (0, by[(0, 0, 0)]))
    b = _pixels(multiview_dataset, (0, by[(0, 1, 0)]))
    # Different specimens: the two channels of one tile are nearly uncorrelated (same specimen: ~1).
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.3
    left, right = _pixels(multiview_dataset, (0, by[(0, 0, 0)])), _pixels(multiview_dataset, (0, by[(0, 0, 1)]))
    half = left.shape[2] // 2
    # Side 0 lights from low x: its image is brighter than side 1's on the low-x half, dimmer on the high-x half.
    assert left[..., :half].mean() > right[..., :half].mean()
    assert left[..., half:].mean() < right[..., half:].mean() or left[..., half:].mean() / right[..., half:].mean() < \
        left[..., :half].mean() / right[..., :half].mean()
    # Same specimen, same pose: the two illuminations are strongly correlated.
    assert np.corrcoef(left.ravel(), right.ravel())[0, 1] > 0.8


def test_ground_truth_views_move_together_and_drift(multiview_dataset, multiview_params):
    truth = GroundTruth.load(multiview_dataset.ground_truth)
    sd = load_xml(str(multiview_dataset.xml))
    assert {v.view_id for v in truth.views} == set(sd.views())
    by_tile = {}
    for v in truth.views:
        by_tile.setdefault((v.timepoint, sd.setups[v.setup].tile), []).append(v.true_affine)
    for key, affines in by_tile.items():
        assert len(affines) == 4
        for a in affines[1:]:
            np.testing.assert_array_equal(a, affines[0], err_msg=f"views of tile {key} must share one pose")
    d = by_tile[(1, 0)][0][:3, 3] - by_tile[(0, 0)][0][:3, 3]
    assert np.any(np.abs(d) > 0.1), "timepoint 1 must see the specimen displaced"
    limit = np.asarray(multiview_params.timepoint_drift_voxels) * np.asarray(multiview_params.voxel_size_xyz) \
        / multiview_params.world_unit_um
    assert np.all(np.abs(d) <= limit + 1e-9)
