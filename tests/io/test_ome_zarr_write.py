"""OME-Zarr writer: geometry, pyramid content, interoperability, overwrite and write order."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from rhapso_core.io import ImageIOError, OmeZarrWriter, create_ome_zarr, downsample_mean, open_image, write_ome_zarr
from rhapso_core.io import ome_zarr_writer as writer_mod

VOXEL = (2.0, 0.5, 0.25)
ORIGIN = (100.0, -20.0, 7.5)


def _volume(shape=(9, 21, 30)) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 4000, shape).astype(np.uint16)


@pytest.mark.parametrize("version,shards", [("0.4", None), ("0.5", None), ("0.5", (8, 16, 16))])
def test_round_trip_geometry_and_pyramid(tmp_path, version, shards):
    vol = _volume()
    uri = str(tmp_path / "img.zarr")
    w = write_ome_zarr(uri, vol, VOXEL, origin_zyx=ORIGIN, n_levels=3, chunks_zyx=(4, 8, 8),
                       ngff_version=version, shards_zyx=shards, name="vol")
    img = open_image(uri)
    assert img.kind == "ome-zarr" and img.unit == "micrometer"
    assert img.voxel_size_zyx == VOXEL and img.origin_zyx == ORIGIN
    assert [img.level_factors(lv) for lv in range(3)] == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    # ceil shapes: edge voxels kept.
    assert [img.level_shape(lv) for lv in range(3)] == [(9, 21, 30), (5, 11, 15), (3, 6, 8)]
    # Physical geometry of level 2: scale = 4 * voxel, centre of voxel 0 = origin + 1.5 * voxel.
    assert img.level_voxel_size_zyx(2) == (8.0, 2.0, 1.0)
    assert img.level_origin_zyx(2) == (103.0, -19.25, 7.875)
    assert w.levels[2].translation_zyx == img.level_origin_zyx(2)
    # Exact data: level 0 as written, level l = mean of level l-1 (uint16, no tolerance needed).
    np.testing.assert_array_equal(img.read(((0, 9), (0, 21), (0, 30))), vol)
    l1 = downsample_mean(vol, (2, 2, 2))
    np.testing.assert_array_equal(img.read(((0, 5), (0, 11), (0, 15)), level=1), l1)
    np.testing.assert_array_equal(img.read(((1, 3), (2, 6), (5, 8)), level=2), downsample_mean(l1, (2, 2, 2))[1:3, 2:6, 5:8])
    arr = w.array(0)
    assert arr.metadata.zarr_format == (2 if version == "0.4" else 3)
    if shards:
        assert tuple(arr.shards) == shards and tuple(arr.chunks) == (4, 8, 8)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_readable_by_ome_zarr_py_and_valid_for_ome_zarr_models(tmp_path, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    import ome_zarr_models

    vol = _volume((6, 12, 10))
    uri = str(tmp_path / "img.zarr")
    write_ome_zarr(uri, vol, VOXEL, origin_zyx=ORIGIN, n_levels=2, chunks_zyx=(4, 8, 8), ngff_version=version)
    node = list(Reader(parse_url(uri))())[0]
    assert [d.shape for d in node.data] == [(6, 12, 10), (3, 6, 5)]
    np.testing.assert_array_equal(np.asarray(node.data[0]), vol)
    ct = node.metadata["coordinateTransformations"]
    assert ct[1][0]["scale"] == [4.0, 1.0, 0.5]
    assert ct[1][1]["translation"] == [101.0, -19.75, 7.625]
    model = ome_zarr_models.open_ome_zarr(zarr.open_group(uri, mode="r"), version=version)
    assert type(model).__module__.startswith(f"ome_zarr_models.v0{version[-1]}")
    assert type(model).__name__ == "Image"


def test_blocked_writes_and_build_pyramid_equal_in_memory_pyramid(tmp_path):
    vol = _volume((10, 20, 18))
    w = create_ome_zarr(str(tmp_path / "a.zarr"), vol.shape, vol.dtype, chunks_zyx=(4, 8, 8),
                        voxel_size_zyx=(1, 1, 1), n_levels=3, scale_factors_zyx=[(1, 2, 2), (2, 2, 2)],
                        ngff_version="0.5", shards_zyx=(4, 16, 16))
    for z in range(0, 10, 4):  # shard-aligned blocks, as parallel fusion writes them
        for y in range(0, 20, 16):
            w.write(0, (z, y, 0), vol[z:z + 4, y:y + 16])
    w.build_pyramid()
    ref = write_ome_zarr(str(tmp_path / "b.zarr"), vol, (1, 1, 1), n_levels=3,
                         scale_factors_zyx=[(1, 2, 2), (2, 2, 2)], chunks_zyx=(4, 8, 8))
    assert [lv.factors_zyx for lv in w.levels] == [(1, 1, 1), (1, 2, 2), (2, 4, 4)]
    for lv in range(3):
        np.testing.assert_array_equal(w.array(lv)[:], ref.array(lv)[:])


def test_reopen_for_writing(tmp_path):
    uri = str(tmp_path / "a.zarr")
    create_ome_zarr(uri, (4, 8, 8), "float32", chunks_zyx=(2, 4, 4), voxel_size_zyx=(3, 1, 1),
                    origin_zyx=(1, 2, 3), n_levels=2)
    w = OmeZarrWriter.open(uri)
    assert w.ngff_version == "0.4" and w.voxel_size_zyx == (3.0, 1.0, 1.0) and w.origin_zyx == (1.0, 2.0, 3.0)
    assert [lv.shape_zyx for lv in w.levels] == [(4, 8, 8), (2, 4, 4)]
    w.write(0, (2, 4, 4), np.ones((2, 4, 4), np.float32))
    w.downsample_level(1, box=((1, 2), (2, 4), (2, 4)))
    out = open_image(uri).read(((0, 2), (0, 4), (0, 4)), level=1)
    assert out[1, 2, 2] == 1.0 and out.sum() == 4.0  # only the written octant is non-zero


def test_overwrite_false_refuses_existing_data(tmp_path):
    uri = str(tmp_path / "a.zarr")
    write_ome_zarr(uri, _volume((2, 4, 4)), (1, 1, 1))
    with pytest.raises(ImageIOError, match="already exists") as e:
        write_ome_zarr(uri, _volume((2, 4, 4)), (1, 1, 1))
    assert uri in str(e.value)
    w = write_ome_zarr(uri, np.zeros((3, 5, 5), np.uint8), (1, 1, 1), overwrite=True)
    assert open_image(uri).shape == (3, 5, 5) and w.dtype == np.uint8


@pytest.mark.parametrize("version,expected", [
    ("0.4", [(".zattrs", ["0", "1", "2"]), (".zgroup", ["0", "1", "2"])]),
    ("0.5", [("zarr.json", ["0", "1", "2"])]),
])
def test_group_metadata_written_after_all_level_arrays(tmp_path, monkeypatch, version, expected):
    uri = tmp_path / "a.zarr"
    seen = []
    real = writer_mod.atomic_write_bytes

    def spy(target, data, storage_options=None):
        # At each metadata write, record which level arrays already exist.
        seen.append((str(target).rsplit("/", 1)[-1], sorted(p.name for p in uri.iterdir() if p.is_dir())))
        return real(target, data, storage_options)

    monkeypatch.setattr(writer_mod, "atomic_write_bytes", spy)
    create_ome_zarr(str(uri), (8, 8, 8), "uint8", chunks_zyx=(4, 4, 4), voxel_size_zyx=(1, 1, 1), n_levels=3,
                    ngff_version=version)
    # Group metadata is the last thing written, each level array's own metadata already exists.
    assert seen == expected
    assert all((uri / lv / (".zarray" if version == "0.4" else "zarr.json")).is_file() for lv in "012")


def test_bad_writes_and_parameters_name_the_problem(tmp_path):
    w = create_ome_zarr(str(tmp_path / "a.zarr"), (4, 4, 4), "uint16", chunks_zyx=(2, 2, 2), voxel_size_zyx=(1, 1, 1))
    with pytest.raises(ImageIOError, match="exceeds the level shape"):
        w.write(0, (3, 0, 0), np.zeros((2, 2, 2), np.uint16))
    with pytest.raises(ImageIOError, match="cannot write float64"):
        w.write(0, (0, 0, 0), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="shards_zyx needs ngff_version"):
        create_ome_zarr(str(tmp_path / "b.zarr"), (4, 4, 4), "uint8", chunks_zyx=(2, 2, 2),
                        voxel_size_zyx=(1, 1, 1), shards_zyx=(4, 4, 4))
    with pytest.raises(ValueError, match="multiple of chunks_zyx"):
        create_ome_zarr(str(tmp_path / "c.zarr"), (4, 4, 4), "uint8", chunks_zyx=(2, 2, 2),
                        voxel_size_zyx=(1, 1, 1), ngff_version="0.5", shards_zyx=(3, 4, 4))
    with pytest.raises(ValueError, match="voxel_size_zyx must be positive"):
        create_ome_zarr(str(tmp_path / "d.zarr"), (4, 4, 4), "uint8", chunks_zyx=(2, 2, 2), voxel_size_zyx=(0, 1, 1))


def test_compressor_is_blosc_zstd(tmp_path):
    write_ome_zarr(str(tmp_path / "a.zarr"), _volume((2, 4, 4)), (1, 1, 1))
    meta = json.loads((tmp_path / "a.zarr" / "0" / ".zarray").read_text())
    assert meta["compressor"]["id"] == "blosc" and meta["compressor"]["cname"] == "zstd"
    assert meta["compressor"]["clevel"] == 5 and meta["compressor"]["shuffle"] == 2  # 2 = bitshuffle
    assert meta["dimension_separator"] == "/"
    write_ome_zarr(str(tmp_path / "b.zarr"), _volume((2, 4, 4)), (1, 1, 1), ngff_version="0.5")
    codecs = json.loads((tmp_path / "b.zarr" / "0" / "zarr.json").read_text())["codecs"]
    blosc = [c for c in codecs if c["name"] == "blosc"][0]["configuration"]
    assert (blosc["cname"], blosc["clevel"], blosc["shuffle"]) == ("zstd", 5, "bitshuffle")
