"""Fusion keeps channels and timepoints apart: one OME-Zarr, axes t, c, z, y, x.

Tolerance: a channel of the multiview output must equal, voxel for voxel (0 counts), the
fusion of that channel alone (same views, same grid, same arithmetic).
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from rhapso_core.fusion import FusionParams
from rhapso_core.pipeline import fuse
from rhapso_core.pipeline.dataset import DatasetError
from rhapso_core.pipeline.fused_xml import write_fused_xml
from rhapso_core.pipeline.illumination import choose_illuminations
from rhapso_core.pipeline.view_selection import ViewSelection
from rhapso_core.pipeline.dataset import load_dataset, open_view
from rhapso_core.spimdata import load_xml

PARAMS = FusionParams(block_size=(64, 64, 32), chunks=(32, 32, 16), multiscale={"n_lvls": 2})


def _fuse(xml, out, params=PARAMS, selection=None):
    plan = fuse.plan_fusion(str(xml), str(out), params, selection=selection)
    for i in range(len(plan.units)):
        fuse.fuse_unit(str(xml), plan, i, params)
    fuse.build_levels(str(out), params)
    return plan


@pytest.fixture(scope="module")
def fused_all(multiview_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("fused") / "fused.ome.zarr"
    plan = _fuse(multiview_dataset.xml, out)
    return plan, out


def test_one_image_per_channel_and_timepoint(fused_all):
    plan, out = fused_all
    group = zarr.open_group(str(out), mode="r")
    ms = group.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert group["0"].shape[:2] == (2, 2) and group["1"].shape[:2] == (2, 2)
    # The pyramid halves space only.
    scale0 = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    scale1 = ms["datasets"][1]["coordinateTransformations"][0]["scale"]
    assert scale0[:2] == scale1[:2] == [1.0, 1.0] and scale1[2:] != scale0[2:]
    omero = group.attrs["omero"]
    assert [c["label"] for c in omero["channels"]] == ["channel 0", "channel 1"]
    for c in omero["channels"]:
        assert 0 < c["window"]["start"] < c["window"]["end"] <= 65535
    # Channels hold different content: they must not have been averaged together.
    a, b = (np.asarray(group["0"][0, c], dtype=np.float64) for c in (0, 1))
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.5
    assert {(s.timepoint, s.channel) for s in plan.slots} == {(t, c) for t in (0, 1) for c in (0, 1)}


@pytest.mark.parametrize("channel", [0, 1])
def test_each_channel_equals_its_single_channel_fusion(fused_all, multiview_dataset, tmp_path, channel):
    _, out = fused_all
    single = tmp_path / "single.ome.zarr"
    _fuse(multiview_dataset.xml, single, selection=ViewSelection(channels=[channel], timepoints=[1]))
    one = zarr.open_group(str(single), mode="r")
    many = zarr.open_group(str(out), mode="r")
    assert one["0"].shape[:2] == (1, 1)
    for level in ("0", "1"):
        np.testing.assert_array_equal(one[level][0, 0], many[level][1, channel])


def test_fused_xml_opens_one_setup_per_channel(fused_all, tmp_path):
    _, out = fused_all
    sd = write_fused_xml(str(out), str(tmp_path / "fused.xml"))
    sd = load_xml(str(tmp_path / "fused.xml"))
    assert sorted(s.channel for s in sd.setups.values()) == [0, 1]
    assert list(sd.timepoints) == [0, 1]
    group = zarr.open_group(str(out), mode="r")
    for (t, s) in sd.views():
        src = open_view(sd, (t, s))
        full = tuple((0, n) for n in src.level_shape(0))
        np.testing.assert_array_equal(src.read(full, 0), group["0"][t, s])


def test_illumination_rules(multiview_dataset):
    sd = load_dataset(str(multiview_dataset.xml))
    views = [v for v in sd.views() if v[0] == 0 and sd.setup_of(v).channel == 0]
    # Tile 0 lies at low x, lit best from side 0; tile 1 at high x, from side 1.
    for rule in ("brightest", "gradient"):
        kept = choose_illuminations(sd, views, rule)
        assert {sd.setup_of(v).tile: sd.setup_of(v).illumination for v in kept} == {0: 0, 1: 1}, rule
    kept = choose_illuminations(sd, views, 1)
    assert {sd.setup_of(v).illumination for v in kept} == {1} and len(kept) == 2
    assert choose_illuminations(sd, views, "blend") == sorted(views)
    with pytest.raises(DatasetError, match="illumination=3"):
        choose_illuminations(sd, views, 3)


def test_empty_selection_is_refused(multiview_dataset, tmp_path):
    with pytest.raises(DatasetError, match="no view matches the selection"):
        fuse.plan_fusion(str(multiview_dataset.xml), str(tmp_path / "x.ome.zarr"), PARAMS,
                         selection=ViewSelection(channels=[7]))
    assert not (tmp_path / "x.ome.zarr").exists()


def test_resume_markers_are_per_slot(multiview_dataset, tmp_path, fused_all):
    out = tmp_path / "resume.ome.zarr"
    sel = ViewSelection(timepoints=[0])
    plan = fuse.plan_fusion(str(multiview_dataset.xml), str(out), PARAMS, selection=sel)
    assert len(plan.slots) == 2
    first = sum(fuse.fuse_unit(str(multiview_dataset.xml), plan, i, PARAMS, slot_index=0) for i in range(len(plan.units)))
    assert first > 0
    # A re-run (same plan, reopened output) fuses only the slot that was not done.
    plan = fuse.plan_fusion(str(multiview_dataset.xml), str(out), PARAMS, selection=sel)
    again = [fuse.fuse_unit(str(multiview_dataset.xml), plan, i, PARAMS, slot_index=k)
             for k in range(2) for i in range(len(plan.units))]
    assert sum(again[: len(plan.units)]) == 0 and sum(again[len(plan.units):]) == first
    _, full = fused_all
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][0], zarr.open_group(str(full), mode="r")["0"][0])
