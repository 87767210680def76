"""BDV HDF5 and BDV N5 readers and the BigStitcher 2.x zarr loader: layouts, pixel types,
codecs, lazy sub-box reads, one-line errors, pickling, and the format registry.

Exact equality everywhere (no tolerance): readers return stored integers.
"""

from __future__ import annotations

import json
import pickle
import shutil
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from rhapso_core.io import ImageIOError, MultiscaleImage, infer_kind, open_image
from rhapso_core.io.registry import ImageFormat, get_format, register_format, registered_formats
from rhapso_core.pipeline.dataset import open_view
from rhapso_core.spimdata import load_xml
from rhapso_core.synthetic.bdv_export import write_bdv_hdf5, write_bdv_n5

DATA = Path(__file__).resolve().parents[1] / "spimdata" / "data"


def _pyramid(seed=0, shape=(12, 20, 28)):
    """Two levels (factors 1 and (1, 2, 2)), uint16 with values above 32767 (int16's range)."""
    v = np.random.default_rng(seed).integers(0, 65535, shape, dtype=np.uint16)
    return [v, v[:, ::2, ::2].copy()], [(1, 1, 1), (1, 2, 2)]


# ---------------------------------------------------------------------- HDF5


@pytest.mark.parametrize("legacy", [True, False])
def test_hdf5_bdv_layout_pixel_type_and_factors(tmp_path, legacy):
    levels, factors = _pyramid()
    write_bdv_hdf5(tmp_path, {(0, 3): (levels, factors)}, chunk_zyx=(4, 8, 8), legacy_int16=legacy)
    with h5py.File(tmp_path / "dataset.h5", "r") as f:
        assert f["t00000/s03/0/cells"].dtype == (np.int16 if legacy else np.uint16)
        assert ("dataType" in f["s03"].attrs) is not legacy
        np.testing.assert_array_equal(f["s03/resolutions"][()], [[1, 1, 1], [2, 2, 1]])  # rows x, y, z
    img = open_image(str(tmp_path / "dataset.h5"), dataset="t00000/s03")
    assert img.kind == "hdf5" and img.dtype == np.uint16 and img.factors == factors
    np.testing.assert_array_equal(img.read(((2, 9), (3, 17), (5, 26))), levels[0][2:9, 3:17, 5:26])
    np.testing.assert_array_equal(img.read(((0, 12), (0, 10), (0, 14)), level=1), levels[1])
    # A path through the file works too; images travel to workers by pickle.
    img2 = pickle.loads(pickle.dumps(open_image(str(tmp_path / "dataset.h5" / "t00000" / "s03"))))
    np.testing.assert_array_equal(img2.read(((0, 1), (0, 2), (0, 3))), levels[0][:1, :2, :3])
    img.close()


def test_hdf5_datatype_attribute_keeps_signed_data_signed(tmp_path):
    v = np.arange(-60, 60, dtype=np.int16).reshape(2, 6, 10)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["t00000/s00/0/cells"] = v
        f["s00/resolutions"] = np.ones((1, 3))
        f["s00"].attrs["dataType"] = "int16"
    img = open_image(str(tmp_path / "x.h5"), dataset="t00000/s00")
    assert img.dtype == np.int16 and img.read(((0, 2), (0, 6), (0, 10))).min() == -60


def test_hdf5_partitioned_views_read_from_partition_or_master(tmp_path):
    views = {(0, 0): _pyramid(1), (0, 1): _pyramid(2)}
    write_bdv_hdf5(tmp_path, views, chunk_zyx=(4, 8, 8), partitioned=True)
    # The master's cells are external links into the partition files.
    img = open_image(str(tmp_path / "dataset.h5"), dataset="t00000/s01")
    np.testing.assert_array_equal(img.read(((0, 12), (0, 20), (0, 28))), views[(0, 1)][0][0])
    # The XML partitions (with mapped ids) send each view to its file.
    xml = tmp_path / "p.xml"
    text = (DATA / "bdv_hdf5_partitioned.xml").read_text()
    xml.write_text(text)
    sd = load_xml(str(xml))
    loc = sd.image_location((1, 1))
    assert Path(loc.uri).name == "dataset-01.h5" and loc.dataset == "t00000/s01"  # timepoint 1 mapped to 0
    assert Path(sd.image_location((0, 0)).uri).name == "dataset-00.h5"


def test_hdf5_sub_box_memory_is_bounded_by_the_box(tmp_path):
    v = np.random.default_rng(3).integers(0, 60000, (64, 256, 256), dtype=np.uint16)  # 8 MiB
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("t00000/s00/0/cells", data=v, chunks=(8, 32, 32))
    img = open_image(str(tmp_path / "big.h5"), dataset="t00000/s00")
    tracemalloc.start()
    out = img.read(((10, 18), (40, 72), (100, 132)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(out, v[10:18, 40:72, 100:132])
    assert peak < 1 << 20, f"a 16 KiB box read peaked at {peak} bytes"


def test_hdf5_errors_are_one_line_and_name_the_file(tmp_path):
    write_bdv_hdf5(tmp_path, {(0, 0): _pyramid()}, chunk_zyx=(4, 8, 8))
    h5 = str(tmp_path / "dataset.h5")
    cases = [
        (lambda: open_image(str(tmp_path / "none.h5"), dataset="t00000/s00"), "none.h5", "no such HDF5 file"),
        (lambda: open_image(h5, dataset="t00000/s07"), "dataset.h5", "'t00000/s07'"),
        (lambda: open_image(h5), "dataset.h5", "name a view group"),
    ]
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    cases.append((lambda: open_image(str(tmp_path / "junk.h5"), dataset="t00000/s00"), "junk.h5", "not a readable HDF5"))
    for call, name, fragment in cases:
        with pytest.raises(ImageIOError) as e:
            call()
        msg = str(e.value)
        assert name in msg and fragment in msg and "\n" not in msg, msg
    # Corrupt one stored chunk: reading a box over it fails naming file and dataset; others still read.
    with h5py.File(h5, "r") as f:
        info = f["t00000/s00/0/cells"].id.get_chunk_info(0)
    raw = bytearray((tmp_path / "dataset.h5").read_bytes())
    raw[info.byte_offset : info.byte_offset + info.size] = b"\x00garbage" * (info.size // 8) + b"\x00" * (info.size % 8)
    (tmp_path / "dataset.h5").write_bytes(bytes(raw))
    img = open_image(h5, dataset="t00000/s00")
    with pytest.raises(ImageIOError) as e:
        img.read(((0, 4), (0, 8), (0, 8)))
    msg = str(e.value)
    assert "dataset.h5" in msg and "t00000/s00/0/cells" in msg and "corrupt" in msg and "\n" not in msg, msg
    img.read(((8, 12), (16, 20), (24, 28)))


# ---------------------------------------------------------------------- N5


@pytest.mark.parametrize(
    "compression",
    [{"type": "raw"}, {"type": "gzip"}, {"type": "gzip", "useZlib": True}, {"type": "bzip2"}, {"type": "xz"},
     {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}, {"type": "zstd"}],
    ids=lambda c: "-".join(str(v) for v in c.values()),
)
def test_n5_codecs_layout_and_factors(tmp_path, compression):
    levels, factors = _pyramid(4)
    write_bdv_n5(tmp_path, {(2, 1): (levels, factors)}, chunk_zyx=(4, 8, 8), compression=compression)
    attrs = json.loads((tmp_path / "dataset.n5/setup1/timepoint2/s0/attributes.json").read_text())
    assert attrs["dimensions"] == [28, 20, 12]  # x, y, z
    img = open_image(str(tmp_path / "dataset.n5"), dataset="setup1/timepoint2")
    assert img.kind == "n5" and img.dtype == np.uint16 and img.factors == factors
    np.testing.assert_array_equal(img.read(((1, 11), (2, 19), (3, 27))), levels[0][1:11, 2:19, 3:27])
    np.testing.assert_array_equal(img.read(((0, 12), (0, 10), (0, 14)), level=1), levels[1])
    img2 = pickle.loads(pickle.dumps(img))
    np.testing.assert_array_equal(img2.read(((5, 6), (0, 20), (0, 28))), levels[0][5:6])


def test_n5_factors_from_setup_group_and_missing_blocks(tmp_path):
    levels, factors = _pyramid(5)
    write_bdv_n5(tmp_path, {(0, 0): (levels, factors)}, chunk_zyx=(4, 8, 8))
    base = tmp_path / "dataset.n5/setup0/timepoint0"
    for lv in ("s0", "s1"):  # older writers put downsamplingFactors on the setup group only
        a = json.loads((base / lv / "attributes.json").read_text())
        a.pop("downsamplingFactors")
        (base / lv / "attributes.json").write_text(json.dumps(a))
    shutil.rmtree(base / "s0" / "0")  # every block with x index 0: BDV reads missing blocks as zeros
    img = open_image(str(tmp_path / "dataset.n5"), dataset="setup0/timepoint0")
    assert img.factors == factors
    out = img.read(((0, 12), (0, 20), (0, 28)))
    assert not out[:, :, :8].any()
    np.testing.assert_array_equal(out[:, :, 8:], levels[0][:, :, 8:])


def test_n5_reads_only_the_blocks_of_the_box(tmp_path):
    levels, factors = _pyramid(6)
    write_bdv_n5(tmp_path, {(0, 0): (levels, factors)}, chunk_zyx=(4, 8, 8))
    s0 = tmp_path / "dataset.n5/setup0/timepoint0/s0"
    # Corrupt every block except (x, y, z) = (1, 1, 1): a box inside it must still read.
    for block in s0.rglob("*"):
        if block.is_file() and block.name != "attributes.json" and block.relative_to(s0).parts != ("1", "1", "1"):
            block.write_bytes(b"\xff" * 7)
    img = open_image(str(tmp_path / "dataset.n5"), dataset="setup0/timepoint0")
    np.testing.assert_array_equal(img.read(((4, 8), (8, 16), (8, 16))), levels[0][4:8, 8:16, 8:16])
    with pytest.raises(ImageIOError) as e:
        img.read(((0, 8), (0, 16), (0, 16)))
    msg = str(e.value)
    assert "dataset.n5/setup0/timepoint0/s0" in msg and "corrupt" in msg and "\n" not in msg, msg


def test_n5_errors_are_one_line_and_name_the_path(tmp_path):
    write_bdv_n5(tmp_path, {(0, 0): _pyramid()}, chunk_zyx=(4, 8, 8))
    n5 = str(tmp_path / "dataset.n5")
    a = json.loads((tmp_path / "dataset.n5/setup0/timepoint0/s1/attributes.json").read_text())
    a["compression"] = {"type": "lz4", "blockSize": 65536}
    (tmp_path / "dataset.n5/setup0/timepoint0/s1/attributes.json").write_text(json.dumps(a))
    for call, fragment in [
        (lambda: open_image(n5, dataset="setup9/timepoint0"), "setup9/timepoint0: no N5 group"),
        (lambda: open_image(str(tmp_path / "gone.n5"), dataset="setup0/timepoint0"), "gone.n5"),
        (lambda: open_image(n5, dataset="setup0/timepoint0"), "lz4"),
    ]:
        with pytest.raises(ImageIOError) as e:
            call()
        assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.s3
def test_n5_on_s3_through_tensorstore_and_with_explicit_credentials(tmp_path, moto_s3, s3_prefix):
    from rhapso_core.io.uri import fs_for

    levels, factors = _pyramid(7)
    write_bdv_n5(tmp_path, {(0, 0): (levels, factors)}, chunk_zyx=(4, 8, 8))
    fs, path = fs_for(s3_prefix, moto_s3.storage_options)
    fs.put(str(tmp_path / "dataset.n5"), path + "/dataset.n5", recursive=True)
    uri = s3_prefix + "/dataset.n5"
    box = ((2, 10), (1, 19), (3, 25))
    # Environment credentials + AWS_ENDPOINT_URL: tensorstore's own s3 kvstore.
    img = open_image(uri, dataset="setup0/timepoint0", storage_options={"skip_instance_cache": True})
    np.testing.assert_array_equal(img.read(box), levels[0][2:10, 1:19, 3:25])
    # Explicit key/secret (tensorstore takes none): blocks fetched by s3fs, decoded by tensorstore.
    img = open_image(uri, dataset="setup0/timepoint0", storage_options=moto_s3.storage_options)
    assert img.factors == factors
    np.testing.assert_array_equal(img.read(box), levels[0][2:10, 1:19, 3:25])
    np.testing.assert_array_equal(img.read(((0, 12), (0, 10), (0, 14)), level=1), levels[1])
    # A missing block reads as zeros on both paths (as in BDV); its neighbours are untouched.
    fs.rm(path + "/dataset.n5/setup0/timepoint0/s0/0/0/0")
    for so in (moto_s3.storage_options, {"skip_instance_cache": True}):
        out = open_image(uri, dataset="setup0/timepoint0", storage_options=so).read(((0, 8), (0, 16), (0, 16)))
        assert not out[:4, :8, :8].any()
        np.testing.assert_array_equal(out[4:], levels[0][4:8, :16, :16])


@pytest.mark.s3
def test_hdf5_on_s3_through_fsspec(tmp_path, moto_s3, s3_prefix):
    from rhapso_core.io.uri import fs_for

    levels, factors = _pyramid(9)
    write_bdv_hdf5(tmp_path, {(0, 0): (levels, factors)}, chunk_zyx=(4, 8, 8), legacy_int16=True)
    fs, path = fs_for(s3_prefix, moto_s3.storage_options)
    fs.put(str(tmp_path / "dataset.h5"), path + "/dataset.h5")
    img = open_image(s3_prefix + "/dataset.h5", dataset="t00000/s00", storage_options=moto_s3.storage_options)
    assert img.dtype == np.uint16 and img.factors == factors
    np.testing.assert_array_equal(img.read(((2, 10), (1, 19), (3, 25))), levels[0][2:10, 1:19, 3:25])
    img2 = pickle.loads(pickle.dumps(img))
    np.testing.assert_array_equal(img2.read(((0, 12), (0, 10), (0, 14)), level=1), levels[1])
    with pytest.raises(ImageIOError, match="missing.h5"):
        open_image(s3_prefix + "/missing.h5", dataset="t00000/s00", storage_options=moto_s3.storage_options)


# ---------------------------------------------------------------------- BigStitcher 2.x zarr


def test_bigstitcher2_zarr_indicies_select_channel_and_timepoint(tmp_path):
    # One 5D (t, c, z, y, x) image holding 2 timepoints x 2 channels, as BigStitcher-Spark's
    # fusion container with --bdv; the XML's indicies "c t" pick each view's volume.
    shutil.copy(DATA / "bigstitcher2_zarr.xml", tmp_path / "dataset.xml")
    data = np.random.default_rng(8).integers(0, 60000, (2, 2, 16, 48, 64), dtype=np.uint16)
    g = zarr.open_group(str(tmp_path / "fused.zarr"), mode="w", zarr_format=2)
    g.create_array("0", shape=data.shape, dtype=data.dtype, chunks=(1, 1, 8, 16, 16))[...] = data
    g.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
                 {"name": "z", "type": "space"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 1, 1]}]}],
    }]
    sd = load_xml(str(tmp_path / "dataset.xml"))
    for t, s in sd.views():
        img = open_view(sd, (t, s))
        assert img.level_shape(0) == (16, 48, 64)
        np.testing.assert_array_equal(img.read(((3, 9), (5, 40), (0, 64))), data[t, s, 3:9, 5:40])


# ---------------------------------------------------------------------- registry


def test_registry_lists_the_builtin_formats_and_dispatches_a_new_one(tmp_path):
    kinds = [f.kind for f in registered_formats()]
    assert {"ome-zarr", "zarr", "tiff", "n5", "hdf5"} <= set(kinds)
    assert infer_kind("/x/data.n5/setup0/timepoint0") == "n5" and infer_kind("/x/a.hdf5") == "hdf5"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "attributes.json").write_text("{}")
    assert infer_kind(str(tmp_path / "plain")) == "n5"

    calls = []

    def open_npy(uri, dataset, *, files, storage_options, channel, timepoint):
        calls.append((uri, dataset))
        a = np.load(uri)
        return MultiscaleImage(uri=uri, kind="npy", levels=[_NpyLevel(a)], factors=[(1, 1, 1)])

    register_format(ImageFormat("npy", open_npy, suffixes=(".npy",), description="NumPy .npy volume"))
    try:
        v = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        np.save(tmp_path / "v.npy", v)
        img = open_image(str(tmp_path / "v.npy"))
        assert img.kind == "npy" and calls and get_format("npy").description == "NumPy .npy volume"
        np.testing.assert_array_equal(img.read(((0, 2), (1, 3), (0, 4))), v[:, 1:3])
    finally:
        from rhapso_core.io import registry

        registry._FORMATS.pop("npy", None)
    with pytest.raises(ImageIOError, match="unknown image kind 'npy'"):
        open_image(str(tmp_path / "v.npy"), kind="npy")


class _NpyLevel:
    def __init__(self, a):
        self.a = a

    @property
    def shape(self):
        return self.a.shape

    @property
    def dtype(self):
        return self.a.dtype

    def read(self, box):
        return self.a[tuple(slice(lo, hi) for lo, hi in box)]
