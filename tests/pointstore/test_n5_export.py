"""N5 writer/reader and the BigStitcher ``interestpoints.n5`` export.

Ground truth: the store's contents (exact equality after the round trip), the N5
specification's byte layout (header and big-endian payload checked byte by byte),
and BigStitcher's dataset names, dtypes, dimensions and attributes as written by
multiview-reconstruction's InterestPointsN5 / BigStitcher-Spark.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from rhapso_core.pointstore import (
    N5Container,
    PointStore,
    PointStoreError,
    export_n5,
    read_n5,
)

A, B, C = (0, 0), (0, 1), (2, 5)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("compression", ["gzip", "raw"])
def test_n5_dataset_round_trip_with_edge_blocks(tmp_path, compression):
    n5 = N5Container(str(tmp_path / "c.n5"))
    n5.create_root()
    rng = np.random.default_rng(0)
    arrays = {
        "u64": rng.integers(0, 2**63, size=(11, 1), dtype=np.uint64),
        "f64": rng.normal(size=(10, 3)),
        "f32_3d": rng.normal(size=(5, 4, 7)).astype(np.float32),
        "i16": rng.integers(-3000, 3000, size=(9, 6)).astype(np.int16),
    }
    blocks = {"u64": [1, 4], "f64": [2, 3], "f32_3d": [3, 2, 2], "i16": [4, 4]}
    for name, arr in arrays.items():
        n5.write_dataset(name, arr, blocks[name], compression=compression)
        back = n5.read_dataset(name)
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(back, arr)  # exact
    assert _json(tmp_path / "c.n5" / "attributes.json") == {"n5": "4.0.0"}


def test_n5_block_bytes_follow_the_spec(tmp_path):
    """Edge block of a [3, 10] float64 dataset with blockSize [3, 4]: header then gzip data."""
    n5 = N5Container(str(tmp_path / "c.n5"))
    loc = np.arange(30, dtype=np.float64).reshape(10, 3) + 0.25
    n5.write_dataset("loc", loc, [3, 4])
    raw = (tmp_path / "c.n5" / "loc" / "0" / "2").read_bytes()
    # mode 0, 2 dims, truncated edge block of 3 x 2 (big-endian uint16, uint16, uint32 x 2)
    assert raw[:12] == bytes.fromhex("0000" "0002" "00000003" "00000002")
    assert raw[12:14] == b"\x1f\x8b"  # gzip member follows the header
    payload = gzip.decompress(raw[12:])
    assert payload == loc[8:10].astype(">f8").tobytes()  # x y z of points 8, 9, big-endian
    assert payload[:8] == struct.pack(">d", 24.25)
    assert not (tmp_path / "c.n5" / "loc" / "0" / "3").exists()


def _store_with_data(tmp_path, points_factory):
    store = PointStore(tmp_path / "interestpoints.zarr", mode="a")
    pts = {
        A: points_factory(23, 1),
        B: points_factory(9, 2),
        C: points_factory(0, 3),  # no points: BigStitcher still writes the (empty) lists
    }
    for v, p in pts.items():
        store.write_points(v, "beads", p["ids"], p["loc_xyz"], p["intensity"], p["dog"], params=f"DOG {v}")
    nuclei = points_factory(6, 4)
    store.write_points(A, "nuclei", nuclei["ids"], nuclei["loc_xyz"], nuclei["intensity"], nuclei["dog"])
    store.write_correspondences(A, B, "beads", [0, 5, 22, 7, 3], [8, 0, 1, 2, 4])
    return store, pts


def test_export_round_trip_equals_store(tmp_path, points_factory):
    store, pts = _store_with_data(tmp_path, points_factory)
    out = tmp_path / "interestpoints.n5"
    entries = export_n5(store, str(out), block_size=4)
    assert [(e.timepoint, e.setup, e.label, e.path) for e in entries] == [
        (0, 0, "beads", "tpId_0_viewSetupId_0/beads"),
        (0, 1, "beads", "tpId_0_viewSetupId_1/beads"),
        (2, 5, "beads", "tpId_2_viewSetupId_5/beads"),
        (0, 0, "nuclei", "tpId_0_viewSetupId_0/nuclei"),
    ]

    back = read_n5(str(out))
    assert set(back.points) == {(A, "beads"), (B, "beads"), (C, "beads"), (A, "nuclei")}
    for (v, label), got in back.points.items():
        want = store.read_points(v, label)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.loc_xyz, want.loc_xyz)
        np.testing.assert_array_equal(got.intensity, want.intensity)
        np.testing.assert_array_equal(got.dog, want.dog)
    assert back.points[(C, "beads")].loc_xyz.shape == (0, 3)

    want = store.read_correspondences(A, B, "beads")
    got = back.correspondences_between(A, B, "beads")
    np.testing.assert_array_equal(got.ids_a, want.ids_a)
    np.testing.assert_array_equal(got.ids_b, want.ids_b)
    np.testing.assert_array_equal(got.idx_a, want.idx_a)
    np.testing.assert_array_equal(got.idx_b, want.idx_b)
    reverse = back.correspondences_between(B, A, "beads")
    np.testing.assert_array_equal(reverse.ids_a, want.ids_b)
    assert back.correspondences[(C, "beads")] == {}


def test_export_matches_bigstitcher_layout(tmp_path, points_factory):
    store, pts = _store_with_data(tmp_path, points_factory)
    out = tmp_path / "interestpoints.n5"
    export_n5(store, str(out))  # BigStitcher's default block size
    gzip_attrs = {"type": "gzip", "useZlib": False, "level": -1}

    assert _json(out / "attributes.json")["n5"] == "4.0.0"
    ip = out / "tpId_0_viewSetupId_0" / "beads" / "interestpoints"
    assert _json(ip / "attributes.json") == {"pointcloud": "1.0.0", "type": "list", "list version": "1.0.0"}
    assert _json(ip / "id" / "attributes.json") == {
        "dimensions": [1, 23], "blockSize": [1, 300000], "dataType": "uint64", "compression": gzip_attrs,
    }  # fmt: skip
    assert _json(ip / "loc" / "attributes.json") == {
        "dimensions": [3, 23], "blockSize": [3, 300000], "dataType": "float64", "compression": gzip_attrs,
    }  # fmt: skip
    assert _json(ip / "intensities" / "attributes.json") == {
        "dimensions": [1, 23], "blockSize": [1, 300000], "dataType": "float32", "compression": gzip_attrs,
    }  # fmt: skip
    # id block: header (mode 0, 2 dims, 1 x 23) and big-endian uint64 ids
    raw = (ip / "id" / "0" / "0").read_bytes()
    assert raw[:12] == struct.pack(">HHII", 0, 2, 1, 23)
    assert gzip.decompress(raw[12:]) == pts[A]["ids"].astype(">u8").tobytes()

    corr = out / "tpId_0_viewSetupId_0" / "beads" / "correspondences"
    cattrs = _json(corr / "attributes.json")
    assert cattrs == {"correspondences": "1.0.0", "idMap": {"0,1,beads": 0}}
    assert _json(corr / "data" / "attributes.json") == {
        "dimensions": [3, 5], "blockSize": [1, 300000], "dataType": "uint64", "compression": gzip_attrs,
    }  # fmt: skip
    # blockSize [1, N]: one block per column -- own ids, partner ids, idMap codes
    columns = [gzip.decompress((corr / "data" / str(k) / "0").read_bytes()[12:]) for k in range(3)]
    assert columns[0] == pts[A]["ids"][[0, 5, 22, 7, 3]].astype(">u8").tobytes()
    assert columns[1] == pts[B]["ids"][[8, 0, 1, 2, 4]].astype(">u8").tobytes()
    assert columns[2] == np.zeros(5, ">u8").tobytes()

    # Empty view, as BigStitcher declares it: dimensions [0], blockSize [1], no blocks.
    empty = out / "tpId_2_viewSetupId_5" / "beads"
    assert _json(empty / "interestpoints" / "loc" / "attributes.json")["dimensions"] == [0]
    assert _json(empty / "interestpoints" / "loc" / "attributes.json")["blockSize"] == [1]
    assert sorted(p.name for p in (empty / "interestpoints" / "loc").iterdir()) == ["attributes.json"]
    assert _json(empty / "correspondences" / "attributes.json") == {"correspondences": "1.0.0", "idMap": {}}
    assert not (empty / "correspondences" / "data").exists()


def test_reexport_replaces_groups(tmp_path, points_factory):
    store, _ = _store_with_data(tmp_path, points_factory)
    out = str(tmp_path / "interestpoints.n5")
    export_n5(store, out, block_size=4)
    fewer = points_factory(3, 7)
    store.write_points(A, "beads", fewer["ids"], fewer["loc_xyz"], fewer["intensity"], fewer["dog"])
    # A's re-detection made the A-B matches stale: the default refuses to export them ...
    with pytest.raises(PointStoreError, match=r"\(0, 0\)-\(0, 1\)"):
        export_n5(store, out, block_size=4, labels=["beads"])
    # ... and "skip" exports without them.
    export_n5(store, out, block_size=4, labels=["beads"], on_invalid="skip")
    back = read_n5(out, labels=["beads"])
    np.testing.assert_array_equal(back.points[(A, "beads")].ids, fewer["ids"])
    # Old blocks beyond the new size are gone, and A's matches died with its points.
    assert not (tmp_path / "interestpoints.n5" / "tpId_0_viewSetupId_0" / "beads" / "interestpoints" / "id" / "0" / "1").exists()
    assert back.correspondences[(A, "beads")] == {} and back.correspondences[(B, "beads")] == {}


def test_read_n5_reads_an_independently_written_bigstitcher_container(tmp_path):
    """A container built by hand from the spec (raw blocks, padded edge block, float idMap code)."""
    root = tmp_path / "bs.n5"

    def put(rel, obj=None, data=None):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(json.dumps(obj).encode() if obj is not None else data)

    put("attributes.json", {"n5": "4.0.0"})
    base = "tpId_1_viewSetupId_2/beads"
    put(f"{base}/interestpoints/attributes.json", {"pointcloud": "1.0.0", "type": "list", "list version": "1.0.0"})
    raw = {"type": "raw"}
    put(f"{base}/interestpoints/id/attributes.json",
        {"dimensions": [1, 3], "blockSize": [1, 2], "dataType": "uint64", "compression": raw})
    put(f"{base}/interestpoints/id/0/0", data=struct.pack(">HHII2Q", 0, 2, 1, 2, 0, 1))
    # edge block written padded to the full block size (some writers do): only 1 value is real
    put(f"{base}/interestpoints/id/0/1", data=struct.pack(">HHII2Q", 0, 2, 1, 2, 2, 999))
    put(f"{base}/interestpoints/loc/attributes.json",
        {"dimensions": [3, 3], "blockSize": [3, 3], "dataType": "float64", "compression": raw})
    put(f"{base}/interestpoints/loc/0/0", data=struct.pack(">HHII9d", 0, 2, 3, 3, 1, 2, 3, 4, 5, 6, 7.5, 8, 9))
    put(f"{base}/correspondences/attributes.json", {"correspondences": "1.0.0", "idMap": {"0,4,beads": 3.0}})
    put(f"{base}/correspondences/data/attributes.json",
        {"dimensions": [3, 1], "blockSize": [1, 1], "dataType": "uint64", "compression": raw})
    for k, v in enumerate([2, 11, 3]):
        put(f"{base}/correspondences/data/{k}/0", data=struct.pack(">HHIIQ", 0, 2, 1, 1, v))

    back = read_n5(str(root))
    pts = back.points[((1, 2), "beads")]
    np.testing.assert_array_equal(pts.ids, [0, 1, 2])
    np.testing.assert_array_equal(pts.loc_xyz, [[1, 2, 3], [4, 5, 6], [7.5, 8, 9]])
    assert np.isnan(pts.intensity).all()  # no intensities dataset: unknown
    own, other = back.correspondences[((1, 2), "beads")][((0, 4), "beads")]
    np.testing.assert_array_equal(own, [2])
    np.testing.assert_array_equal(other, [11])


def test_export_refuses_ids_bigstitcher_cannot_read(tmp_path):
    store = PointStore(tmp_path / "s.zarr", mode="a")
    store.write_points(A, "beads", [0, 2**31], np.zeros((2, 3)))
    with pytest.raises(PointStoreError, match=r"view \(0, 0\) label 'beads'.*2\*\*31"):
        export_n5(store, str(tmp_path / "interestpoints.n5"))
