"""A BigStitcher XML pointing at the fused OME-Zarr: loads, reads the fused pixels, sits on the fusion grid."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionParams
from rhapso_core.fusion.kernels import trilinear_sample
from rhapso_core.pipeline import fuse
from rhapso_core.pipeline.dataset import open_view
from rhapso_core.pipeline.fused_xml import FusedXmlError, fused_grid, write_fused_xml
from rhapso_core.pipeline.preflight import check_dataset
from rhapso_core.spimdata import ZarrImageLoader, load_xml

# Fusion box (world units = finest voxel, 0.5 um) chosen so the grid origin is not 0 and not
# a multiple of the output voxel: a wrong translation would show.
BOX = ((3.5, 2.0, 2.25), (80.0, 36.0, 30.0))


@dataclass(frozen=True)
class Fused:
    root: Path
    input_xml: str
    fused: str
    plan: fuse.FusionPlan


@pytest.fixture(scope="module")
def fused(tmp_path_factory) -> Fused:
    """Two anisotropic tiles (0.5 x 0.5 x 1.25 um) fused with avg into a 2-level OME-Zarr (~1 s)."""
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    root = tmp_path_factory.mktemp("fused_xml")
    paths = write_dataset(root / "data", SyntheticParams(
        grid=(2, 1, 1), tile_size_xyz=(48, 40, 16), overlap=0.25, voxel_size_xyz=(0.5, 0.5, 1.25),
        n_levels=2, chunk_size_xyz=(32, 32, 16), blob_density=2000.0, fibre_count=2,
    ))
    p = FusionParams(overlap_strategy="avg", chunks=(32, 32, 16), block_size=(32, 32, 16),
                     bounding_box=BOX, multiscale={"n_lvls": 2})
    out = str(root / "out" / "fused.ome.zarr")
    plan = fuse.plan_fusion(str(paths.xml), out, p)
    for i in range(len(plan.units)):
        fuse.fuse_unit(str(paths.xml), plan, i, p)
    fuse.build_levels(out, p)
    return Fused(root, str(paths.xml), out, plan)


@pytest.mark.parametrize("where", ["beside", "elsewhere"])
def test_fused_xml_loads_reads_the_fused_pixels_and_sits_on_the_grid(fused, where):
    xml = str(fused.root / "out" / "fused.xml") if where == "beside" else str(fused.root / "xmls" / "f.xml")
    write_fused_xml(fused.fused, xml)
    sd = load_xml(xml)
    assert sd.views() == [(0, 0)]
    loader = sd.image_loader
    assert isinstance(loader, ZarrImageLoader)
    assert loader.root_type == ("relative" if where == "beside" else "absolute")
    assert [g.path for g in loader.zgroups] == ["fused.ome.zarr"]

    grid = fused.plan.grid
    setup = sd.setup_of((0, 0))
    assert setup.size == tuple(grid.shape_zyx[::-1])
    # NGFF scale = world voxel * 0.5 um (world unit = the finest input voxel).
    np.testing.assert_allclose(setup.voxel_size, np.asarray(grid.voxel_size_xyz) * 0.5, rtol=1e-12)
    assert setup.voxel_unit == "µm"
    assert not np.allclose(grid.origin_xyz, 0), "the test needs a non-trivial origin"

    # view voxel -> world is the fusion grid's out_to_world, at every voxel (tolerated: 1e-9 world units).
    rng = np.random.default_rng(0)
    ijk = rng.integers(0, np.asarray(grid.shape_zyx[::-1]), size=(50, 3)).astype(np.float64)
    np.testing.assert_allclose(tf.apply(sd.view_to_world((0, 0)), ijk),
                               tf.apply(grid.out_to_world(), ijk), atol=1e-9)

    # open_view reads exactly the fused bytes, both pyramid levels.
    src = open_view(sd, (0, 0))
    group = zarr.open_group(fused.fused, mode="r")
    assert src.n_levels == 2
    for lv in range(2):
        full = tuple((0, n) for n in src.level_shape(lv))
        assert np.array_equal(src.read(full, lv), group[str(lv)][0, 0])

    checked = check_dataset(xml)
    assert checked.views() == [(0, 0)]


def test_fused_voxel_world_position_matches_the_input_content(fused):
    """Ground truth through the XMLs: a fused voxel, mapped to world by the fused XML and back
    into an input view by the input XML, holds that view's (trilinear) value there."""
    xml = str(fused.root / "out" / "content.xml")
    sd_f = write_fused_xml(fused.fused, xml)
    sd_in = load_xml(fused.input_xml)
    fused_img = zarr.open_group(fused.fused, mode="r")["0"][0, 0].astype(np.float64)
    nx, ny, nz = fused_img.shape[::-1]
    i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    ijk = np.stack([i, j, k], -1).reshape(-1, 3).astype(np.float64)
    world = tf.apply(sd_f.view_to_world((0, 0)), ijk)
    covered = []
    for v in sd_in.views():
        size = np.asarray(sd_in.setup_of(v).size, np.float64)
        vox = tf.apply(tf.invert(sd_in.view_to_world(v)), world)
        covered.append(np.all((vox >= -1e-6) & (vox <= size - 1 + 1e-6), axis=1))
    checked = 0
    for n, v in enumerate(sd_in.views()):
        only = covered[n] & ~np.any([c for m, c in enumerate(covered) if m != n], axis=0)
        vox = tf.apply(tf.invert(sd_in.view_to_world(v)), world[only])
        src = open_view(sd_in, v)
        tile = src.read(tuple((0, s) for s in src.level_shape(0)), 0).astype(np.float64)
        want = trilinear_sample(tile, vox[:, ::-1].T.copy())
        got = fused_img.reshape(-1)[np.ravel_multi_index((ijk[only, 2].astype(int), ijk[only, 1].astype(int),
                                                          ijk[only, 0].astype(int)), fused_img.shape)]
        # Tolerated: 0.5 + 1e-3 counts (uint16 rounding of the same trilinear sample).
        assert np.max(np.abs(got - want)) <= 0.501, v
        checked += int(only.sum())
    assert checked > 0.3 * ijk.shape[0]


def test_several_fused_images_become_setups_with_channels(fused, tmp_path):
    a = tmp_path / "ch0" / "fused.ome.zarr"
    b = tmp_path / "ch1" / "fused.ome.zarr"
    shutil.copytree(fused.fused, a)
    shutil.copytree(fused.fused, b)
    xml = str(tmp_path / "two.xml")
    write_fused_xml([str(a), str(b)], xml, names=["green", "red"], channels=[488, 561])
    sd = load_xml(xml)
    assert sd.views() == [(0, 0), (0, 1)]
    assert [sd.setup_of(v).channel for v in sd.views()] == [488, 561]
    assert [sd.setup_of(v).name for v in sd.views()] == ["green", "red"]
    assert sorted(g.path for g in sd.image_loader.zgroups) == ["ch0/fused.ome.zarr", "ch1/fused.ome.zarr"]
    ref = zarr.open_group(fused.fused, mode="r")["0"][0, 0]
    for v in sd.views():
        src = open_view(sd, v)
        assert np.array_equal(src.read(tuple((0, n) for n in src.level_shape(0))), ref)
    check_dataset(xml)
    with pytest.raises(FusedXmlError, match="channels"):
        write_fused_xml([str(a), str(b)], xml, channels=[0])


def test_metadata_disagreeing_with_the_grid_record_is_refused(fused, tmp_path):
    bad = tmp_path / "bad.ome.zarr"
    shutil.copytree(fused.fused, bad)
    g = zarr.open_group(str(bad), mode="a")
    rec = dict(g.attrs[fuse.GRID_ATTR])
    rec["voxel_size_xyz"] = [1.0, 1.0, 1.0]  # NGFF z scale says 2.5 world units
    g.attrs[fuse.GRID_ATTR] = rec
    with pytest.raises(FusedXmlError, match="disagree with rhapso_fusion_grid"):
        write_fused_xml(str(bad), str(tmp_path / "bad.xml"))
    assert not (tmp_path / "bad.xml").exists(), "nothing is written on error"
    with pytest.raises(FusedXmlError, match="cannot open"):
        write_fused_xml(str(tmp_path / "missing.ome.zarr"), str(tmp_path / "m.xml"))


def test_without_grid_record_world_is_the_ngff_physical_frame(fused, tmp_path):
    plain = tmp_path / "plain.ome.zarr"
    shutil.copytree(fused.fused, plain)
    g = zarr.open_group(str(plain), mode="a")
    del g.attrs[fuse.GRID_ATTR]
    info = fused_grid(str(plain))
    assert info["from_grid_attr"] is False
    sd = load_xml(write_fused_xml(str(plain), str(tmp_path / "p.xml")).source_uri)
    grid = fused.plan.grid
    # Physical = world * 0.5 um: voxel (i, j, k) lies at 0.5 * out_to_world(i, j, k).
    ijk = np.array([[0.0, 0.0, 0.0], [7.0, 3.0, 2.0], [20.0, 11.0, 5.0]])
    np.testing.assert_allclose(tf.apply(sd.view_to_world((0, 0)), ijk),
                               0.5 * tf.apply(grid.out_to_world(), ijk), atol=1e-9)


def test_fused_xml_on_s3_uses_the_bucket_convention(fused, moto_s3, s3_prefix):
    import fsspec

    fs = fsspec.filesystem("s3", **moto_s3.storage_options)
    remote = f"{s3_prefix}/out/fused.ome.zarr"
    fs.put(fused.fused, remote.removeprefix("s3://"), recursive=True)
    xml = f"{s3_prefix}/fused.xml"
    write_fused_xml(remote, xml, storage_options=moto_s3.storage_options)
    sd = load_xml(xml, storage_options=moto_s3.storage_options)
    loader = sd.image_loader
    assert loader.s3bucket == moto_s3.bucket
    assert loader.root == s3_prefix.removeprefix(f"s3://{moto_s3.bucket}/") + "/out"
    src = open_view(sd, (0, 0), moto_s3.storage_options)
    ref = zarr.open_group(fused.fused, mode="r")["0"][0, 0]
    assert np.array_equal(src.read(tuple((0, n) for n in src.level_shape(0))), ref)
