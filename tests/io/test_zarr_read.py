"""Zarr / OME-Zarr readers: axis selection, metadata-free pyramids, lazy chunk reads, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, WrapperStore

from rhapso_core.image_source import ImageSource
from rhapso_core.io import ImageIOError, image_from_zarr, infer_kind, open_image, write_ome_zarr
from rhapso_core.io.ngff import build_multiscales_attrs

_META = (".zarray", ".zattrs", ".zgroup", "zarr.json", ".zmetadata")


class CountingStore(WrapperStore):
    """Records the key of every chunk ``get`` (metadata keys ignored)."""

    def __init__(self, store):
        super().__init__(store)
        self.chunk_gets: list[str] = []

    def _with_store(self, store):
        return self  # keep one counter however zarr re-wraps the store

    async def get(self, key, prototype, byte_range=None):
        if not key.rsplit("/", 1)[-1] in _META:
            self.chunk_gets.append(key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        self.chunk_gets.extend(k for k, _ in key_ranges if k.rsplit("/", 1)[-1] not in _META)
        return await self._store.get_partial_values(prototype, key_ranges)


def _n_touched(box, chunks) -> int:
    return math.prod(math.ceil(hi / c) - lo // c for (lo, hi), c in zip(box, chunks))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_sub_box_reads_only_the_chunks_it_touches(tmp_path, version):
    vol = np.arange(12 * 24 * 40, dtype=np.uint16).reshape(12, 24, 40)
    uri = tmp_path / "img.zarr"
    write_ome_zarr(str(uri), vol, (1, 1, 1), n_levels=2, chunks_zyx=(4, 8, 8), ngff_version=version)
    store = CountingStore(LocalStore(str(uri), read_only=True))
    img = image_from_zarr(zarr.open_group(store, mode="r"), uri=str(uri))
    assert isinstance(img, ImageSource)
    for level, box in [(0, ((3, 9), (5, 17), (7, 30))), (0, ((0, 4), (0, 8), (0, 8))), (1, ((1, 5), (3, 9), (2, 19)))]:
        store.chunk_gets.clear()
        out = img.read(box, level=level)
        expected_chunks = _n_touched(box, (4, 8, 8))
        # Exact count: every touched chunk once, no other chunk.
        assert len(store.chunk_gets) == expected_chunks, store.chunk_gets
        assert len(set(store.chunk_gets)) == expected_chunks
        assert all(k.startswith(f"{level}/") for k in store.chunk_gets)
        if level == 0:
            np.testing.assert_array_equal(out, vol[tuple(slice(*b) for b in box)])


def test_sharded_sub_box_touches_only_its_shards(tmp_path):
    vol = np.random.default_rng(0).integers(0, 100, (16, 32, 32)).astype(np.uint8)
    uri = tmp_path / "img.zarr"
    write_ome_zarr(str(uri), vol, (1, 1, 1), chunks_zyx=(4, 8, 8), ngff_version="0.5", shards_zyx=(8, 16, 16))
    store = CountingStore(LocalStore(str(uri), read_only=True))
    img = image_from_zarr(zarr.open_group(store, mode="r"), uri=str(uri))
    box = ((9, 12), (17, 20), (1, 20))  # shards z:1, y:1, x:0..1 -> 2 shards
    np.testing.assert_array_equal(img.read(box), vol[9:12, 17:20, 1:20])
    assert sorted(set(store.chunk_gets)) == ["0/c/1/1/0", "0/c/1/1/1"]


def _ngff_5d(tmp_path, axes_names=("t", "c", "z", "y", "x")):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 1000, (2, 3, 4, 6, 8)).astype(np.uint16)
    root = tmp_path / "img5d.zarr"
    g = zarr.open_group(str(root), mode="w", zarr_format=2)
    g.create_array("0", data=data, chunks=(1, 1, 2, 4, 4))
    g.create_array("1", data=data[:, :, :, ::2, ::2], chunks=(1, 1, 2, 4, 4))
    types = {"t": "time", "c": "channel"}
    g.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": n, "type": types.get(n, "space")} | ({"unit": "micrometer"} if n in "zyx" else {})
                 for n in axes_names],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 5, 2, 2]},
                                                        {"type": "translation", "translation": [0, 0, 1, 2, 3]}]},
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 5, 4, 4]},
                                                        {"type": "translation", "translation": [0, 0, 1, 3, 4]}]},
        ],
    }]
    return root, data


def test_5d_selects_timepoint_and_channel(tmp_path):
    root, data = _ngff_5d(tmp_path)
    img = open_image(str(root), channel=2, timepoint=1)
    assert img.shape == (4, 6, 8) and img.factors == [(1, 1, 1), (1, 2, 2)]
    assert img.voxel_size_zyx == (5.0, 2.0, 2.0) and img.origin_zyx == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(img.read(((1, 3), (0, 6), (2, 7))), data[1, 2, 1:3, :, 2:7])
    np.testing.assert_array_equal(img.read(((0, 4), (0, 3), (0, 4)), level=1), data[1, 2, :, ::2, ::2])
    default = open_image(str(root))
    np.testing.assert_array_equal(default.read(((0, 1), (0, 1), (0, 8))), data[0, 0, 0:1, 0:1, :])
    with pytest.raises(ImageIOError, match="channel 3 out of range"):
        open_image(str(root), channel=3)


def test_plain_arrays_and_groups_without_ngff(tmp_path):
    rng = np.random.default_rng(2)
    vol = rng.integers(0, 255, (5, 9, 11)).astype(np.uint8)
    zarr.create_array(str(tmp_path / "arr.zarr"), data=vol, chunks=(2, 4, 4))
    img = open_image(str(tmp_path / "arr.zarr"))
    assert img.kind == "zarr" and img.n_levels == 1 and img.voxel_size_zyx == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(img.read(((-3, 2), (4, 99), (0, 3))), vol[0:2, 4:, 0:3])  # box clipped
    g = zarr.open_group(str(tmp_path / "grp"), mode="w")
    g.create_array("0", data=vol, chunks=(2, 4, 4))
    g.create_array("1", data=vol[::2, ::2, ::2], chunks=(2, 4, 4))  # ceil shapes (3, 5, 6)
    img = open_image(str(tmp_path / "grp"))
    assert img.factors == [(1, 1, 1), (2, 2, 2)]
    np.testing.assert_array_equal(img.read(((0, 3), (0, 5), (0, 6)), level=1), vol[::2, ::2, ::2])
    with pytest.raises(ImageIOError, match="no OME-NGFF multiscales"):
        open_image(str(tmp_path / "grp"), kind="ome-zarr")
    c4 = rng.integers(0, 9, (2, 3, 4, 5)).astype(np.int16)  # (c, z, y, x)
    zarr.create_array(str(tmp_path / "c4.zarr"), data=c4)
    np.testing.assert_array_equal(open_image(str(tmp_path / "c4.zarr"), channel=1).read(((0, 3), (0, 4), (0, 5))), c4[1])


def test_dataset_inside_container(tmp_path):
    vol = np.ones((2, 3, 4), np.float32)
    write_ome_zarr(str(tmp_path / "root.zarr" / "tile_1.zarr"), vol, (1, 1, 1))
    img = open_image(str(tmp_path / "root.zarr"), dataset="tile_1.zarr")
    assert img.uri.endswith("tile_1.zarr") and img.kind == "ome-zarr" and img.read(((0, 2), (0, 3), (0, 4))).sum() == 24


def test_missing_paths_and_unsupported_formats(tmp_path):
    missing = str(tmp_path / "nope.zarr")
    with pytest.raises(ImageIOError) as e:
        open_image(missing)
    assert missing in str(e.value) and "\n" not in str(e.value)
    # N5 and HDF5 are readable (tests/io/test_bdv_readers.py); a missing container names itself.
    for uri, kind, fragment in [("/data/x.n5", None, "no N5 group"), ("/data/x.h5", None, "no such HDF5 file"),
                                ("/data/ds", "n5", "no N5 group"), ("/data/ds", "hdf5", "no such HDF5 file")]:
        with pytest.raises(ImageIOError, match=fragment) as e:
            open_image(uri, kind=kind, dataset="setup0/timepoint0")
        assert "/data/" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ImageIOError, match="unknown image kind"):
        open_image(missing, kind="png")


def test_metadata_pointing_at_missing_level(tmp_path):
    g = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w", zarr_format=2)
    g.create_array("0", shape=(2, 2, 2), dtype="u1")
    g.attrs.update(build_multiscales_attrs(version="0.4", paths=["0", "1"], voxel_size_zyx=(1, 1, 1),
                                           origin_zyx=(0, 0, 0), factors_zyx=[(1, 1, 1), (2, 2, 2)]))
    with pytest.raises(ImageIOError, match="dataset '1' does not exist"):
        open_image(str(tmp_path / "bad.zarr"))


def test_infer_kind(tmp_path):
    assert infer_kind("s3://b/a/img.ome.zarr/0") == "zarr"
    assert infer_kind("/x/stack.TIF") == "tiff"
    assert infer_kind("/x/data.n5/setup0/timepoint0") == "n5"
    assert infer_kind("/x/data.h5") == "hdf5"
    assert infer_kind("/x", files=["a.tif"]) == "tiff"
    (tmp_path / "planes").mkdir()
    (tmp_path / "planes" / "p0.tif").write_bytes(b"")
    assert infer_kind(str(tmp_path / "planes")) == "tiff"


def test_pickle_round_trip(tmp_path):
    import pickle

    vol = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_ome_zarr(str(tmp_path / "a.zarr"), vol, (1, 1, 1))
    img = pickle.loads(pickle.dumps(open_image(str(tmp_path / "a.zarr"))))
    np.testing.assert_array_equal(img.read(((0, 2), (0, 3), (0, 4))), vol)
