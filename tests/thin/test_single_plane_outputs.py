"""Fusion, pyramid and QC pictures of single planes and thin stacks."""

from __future__ import annotations

import numpy as np
import zarr

from rhapso_core.config import PipelineParams
from rhapso_core.image_source import ArraySource
from rhapso_core.multiscale.params import MultiscaleParams
from rhapso_core.multiscale.pyramid import level_plan
from rhapso_core.pipeline import fuse
from rhapso_core.qc.detection import detection_picture
from rhapso_core.qc.pictures import view_plane
from rhapso_core.synthetic.planar_mosaic import mosaic_params
from rhapso_core.synthetic.write import write_dataset


def test_pyramid_never_downsamples_a_single_plane():
    levels = level_plan("0", (1, 1000, 800), MultiscaleParams(n_lvls=4))
    assert [lv[1] for lv in levels] == [(1, 500, 400), (1, 250, 200), (1, 125, 100)]
    assert all(lv[2][0] == 1 and lv[3][0] == 1 for lv in levels)
    # A stack is still halved along z until it is one plane thick.
    assert [lv[1][0] for lv in level_plan("0", (3, 64, 64), MultiscaleParams(n_lvls=4))] == [2, 1, 1]


def test_single_plane_mosaic_fuses_to_one_plane_with_a_flat_pyramid(tmp_path):
    paths = write_dataset(tmp_path / "data", mosaic_params((2, 1), planes=1, tile_xy=(96, 96)))
    p = PipelineParams()
    out = str(tmp_path / "fused.ome.zarr")
    plan = fuse.plan_fusion(str(paths.xml), out, p.fusion)
    assert plan.shape_zyx[0] == 1
    for i in range(len(plan.units)):
        fuse.fuse_unit(str(paths.xml), plan, i, p.fusion)
    fuse.build_levels(out, p.fusion)
    g = zarr.open_group(out, mode="r")
    shapes = [g[k].shape for k in sorted(g.array_keys(), key=int)]
    assert len(shapes) > 1 and all(s[0] == 1 for s in shapes)
    base = np.asarray(g["0"][...])
    assert base.max() > 0  # the plane holds the tiles' content
    ms = g.attrs.get("multiscales") or g.attrs["ome"]["multiscales"]
    z_scales = [d["coordinateTransformations"][0]["scale"][0] for d in ms[0]["datasets"]]
    assert len(set(z_scales)) == 1, z_scales  # every level claims the base's z voxel


def test_pictures_show_planes_not_projections():
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 100, (5, 20, 30)).astype(np.uint16)
    img, shown, label = view_plane(vol, np.array([3.1, 2.9, 3.0, 0.2]))
    assert label == "plane 3 of 5" and np.array_equal(img, vol[3]) and shown.tolist() == [True, True, True, False]
    img, _, label = view_plane(vol[:1])
    assert label == "plane" and np.array_equal(img, vol[0])
    deep = rng.integers(0, 100, (40, 20, 30)).astype(np.uint16)
    img, _, label = view_plane(deep)
    assert label == "max projection" and np.array_equal(img, deep.max(axis=0))
    png = detection_picture(ArraySource([vol[:1]]), np.array([[10.0, 5.0, 0.0]]), caption="t0 s0")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
