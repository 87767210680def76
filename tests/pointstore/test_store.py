"""PointStore on a local directory: round trips, atomicity, replacement, validation.

Ground truth is the data written; every comparison is exact (no tolerance), since
the store must not change a single bit of a coordinate.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import rhapso_core.pointstore.store as store_mod
from rhapso_core.pointstore import (
    CorrespondencesNotFoundError,
    PointsNotFoundError,
    PointStore,
    PointStoreError,
)

A, B, C = (0, 0), (0, 1), (1, 0)


@pytest.fixture
def store(tmp_path):
    return PointStore(tmp_path / "interestpoints.zarr", mode="a")


def _write(store, view, pts, label="beads", params=""):
    store.write_points(view, label, pts["ids"], pts["loc_xyz"], pts["intensity"], pts["dog"], params=params)


def _assert_points_equal(got, pts):
    # Exact: no tolerance anywhere.
    np.testing.assert_array_equal(got.ids, pts["ids"])
    np.testing.assert_array_equal(got.loc_xyz, pts["loc_xyz"])
    np.testing.assert_array_equal(got.intensity, pts["intensity"])
    np.testing.assert_array_equal(got.dog, pts["dog"])
    assert got.ids.dtype == np.int64 and got.loc_xyz.dtype == np.float64
    assert got.intensity.dtype == np.float32 and got.dog.dtype == np.float32


def test_points_round_trip_exact(store, points_factory):
    pa, pb = points_factory(500, 1), points_factory(0, 2)
    pc = points_factory(17, 3)
    _write(store, A, pa, params="DOG s=1.8 t=0.008")
    _write(store, B, pb)  # a view with no points is still a view with a (empty) list
    _write(store, C, pc, label="nuclei")

    got = store.read_points(A, "beads")
    _assert_points_equal(got, pa)
    assert got.params == "DOG s=1.8 t=0.008" and got.view == A and got.label == "beads"
    assert got.loc_xyz.shape == (500, 3)
    empty = store.read_points(B, "beads")
    assert empty.loc_xyz.shape == (0, 3) and len(empty) == 0
    _assert_points_equal(store.read_points(C, "nuclei"), pc)

    assert store.list_views("beads") == [A, B]
    assert store.list_views("nuclei") == [C]
    assert store.list_views() == [A, B, C]
    assert store.list_labels() == ["beads", "nuclei"]
    assert store.list_labels(C) == ["nuclei"]
    assert store.has_points(A, "beads") and not store.has_points(A, "nuclei")
    assert store.point_info(A, "beads")["n_points"] == 500

    # A second, read-only handle sees the same data.
    ro = PointStore(store.uri, mode="r")
    _assert_points_equal(ro.read_points(A, "beads"), pa)


def test_missing_points_error_names_view_and_label(store):
    with pytest.raises(PointsNotFoundError) as info:
        store.read_points((3, 7), "beads")
    assert isinstance(info.value, KeyError)
    msg = str(info.value)
    assert "(3, 7)" in msg and "'beads'" in msg and not msg.startswith('"')


def test_rewrite_replaces_points(store, points_factory):
    _write(store, A, points_factory(300, 1))
    second = points_factory(40, 9)
    _write(store, A, second, params="second")
    got = store.read_points(A, "beads")
    _assert_points_equal(got, second)
    assert got.params == "second"


def test_interrupted_point_write_reads_as_absent(store, points_factory, monkeypatch):
    old = points_factory(30, 1)
    _write(store, A, old)

    async def crash(root, path, attrs):
        raise RuntimeError("simulated crash before the completion marker")

    monkeypatch.setattr(store_mod, "_commit", crash)
    with pytest.raises(RuntimeError):
        _write(store, B, points_factory(20, 2))  # fresh view
    with pytest.raises(RuntimeError):
        _write(store, A, points_factory(25, 3))  # rewrite of a complete view
    monkeypatch.undo()

    # The arrays really were written (the crash hit only the marker) ...
    raw = zarr.open_group(store.uri, mode="r")
    assert raw["tpId_0_viewSetupId_1/beads/interestpoints/id"].shape == (20,)
    assert raw["tpId_0_viewSetupId_0/beads/interestpoints/id"].shape == (25,)
    # ... yet both read as absent: neither half-new nor silently old.
    for view in (A, B):
        assert not store.has_points(view, "beads")
        with pytest.raises(PointsNotFoundError):
            store.read_points(view, "beads")
    assert store.list_views("beads") == []
    # A completed re-run repairs it.
    _write(store, A, old)
    _assert_points_equal(store.read_points(A, "beads"), old)


def _pairs(store, points_factory):
    pts = {A: points_factory(50, 1), B: points_factory(60, 2), C: points_factory(70, 3)}
    for v, p in pts.items():
        _write(store, v, p)
    return pts


def test_correspondences_round_trip_both_directions(store, points_factory):
    pts = _pairs(store, points_factory)
    rng = np.random.default_rng(5)
    ia, ib = rng.choice(50, 20, replace=False), rng.choice(60, 20, replace=False)
    store.write_correspondences(A, B, "beads", ia, ib, params="RANSAC 5px")

    ab = store.read_correspondences(A, B, "beads")
    np.testing.assert_array_equal(ab.idx_a, ia)
    np.testing.assert_array_equal(ab.idx_b, ib)
    np.testing.assert_array_equal(ab.ids_a, pts[A]["ids"][ia])
    np.testing.assert_array_equal(ab.ids_b, pts[B]["ids"][ib])
    assert ab.params == "RANSAC 5px" and len(ab) == 20

    ba = store.read_correspondences(B, A, "beads")  # B's own half, BigStitcher-style
    assert (ba.view_a, ba.view_b) == (B, A)
    np.testing.assert_array_equal(ba.idx_a, ib)
    np.testing.assert_array_equal(ba.ids_b, pts[A]["ids"][ia])

    # Each view holds its own half on disk.
    raw = zarr.open_group(store.uri, mode="r")
    half_b = raw["tpId_0_viewSetupId_1/beads/correspondences/tpId_0_viewSetupId_0/beads/ids"][...]
    np.testing.assert_array_equal(half_b, np.stack([pts[B]["ids"][ib], pts[A]["ids"][ia]], axis=1))

    store.write_correspondences(C, B, "beads", [0, 69], [59, 0])
    everything = store.read_all_correspondences("beads")
    assert [(c.view_a, c.view_b) for c in everything] == [(A, B), (B, C)]
    bc = everything[1]
    np.testing.assert_array_equal(bc.idx_a, [59, 0])
    np.testing.assert_array_equal(bc.idx_b, [0, 69])


def test_rewriting_correspondences_does_not_duplicate(store, points_factory):
    _pairs(store, points_factory)
    store.write_correspondences(A, B, "beads", np.arange(10), np.arange(10))
    store.write_correspondences(A, B, "beads", np.arange(10), np.arange(10))
    assert len(store.read_correspondences(A, B, "beads")) == 10
    # Re-run in the other orientation with a different result: replaced, not appended.
    store.write_correspondences(B, A, "beads", [5, 6, 7], [1, 2, 3])
    ab = store.read_correspondences(A, B, "beads")
    np.testing.assert_array_equal(ab.idx_a, [1, 2, 3])
    np.testing.assert_array_equal(ab.idx_b, [5, 6, 7])
    everything = store.read_all_correspondences("beads")
    assert len(everything) == 1 and len(everything[0]) == 3
    # Fewer matches than before (including none) leave no stale rows.
    store.write_correspondences(A, B, "beads", [], [])
    assert len(store.read_correspondences(A, B, "beads")) == 0


def test_interrupted_correspondence_write_reads_as_absent(store, points_factory, monkeypatch):
    _pairs(store, points_factory)
    store.write_correspondences(A, C, "beads", [1], [2])
    calls = []
    commit = store_mod._commit

    async def crash_on_second(root, path, attrs):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("simulated crash between the two halves")
        await commit(root, path, attrs)

    monkeypatch.setattr(store_mod, "_commit", crash_on_second)
    with pytest.raises(RuntimeError):
        store.write_correspondences(A, B, "beads", [1, 2], [3, 4])
    monkeypatch.undo()

    assert len(calls) == 2  # the first half was committed, the second was not
    assert not store.has_correspondences(A, B, "beads")
    with pytest.raises(CorrespondencesNotFoundError, match="did not complete"):
        store.read_correspondences(A, B, "beads")
    with pytest.raises(PointStoreError, match=r"\(0, 0\)-\(0, 1\)"):
        store.read_all_correspondences("beads")
    kept = store.read_all_correspondences("beads", on_invalid="skip")
    assert [(c.view_a, c.view_b) for c in kept] == [(A, C)]


def test_redetection_invalidates_matches(store, points_factory):
    _pairs(store, points_factory)
    store.write_correspondences(A, B, "beads", [0, 1], [2, 3])
    store.write_correspondences(B, C, "beads", [4], [5])
    _write(store, B, points_factory(60, 99))  # B re-detected: indices no longer mean the same
    for other in (A, C):
        with pytest.raises(CorrespondencesNotFoundError, match=r"\(0, 1\)"):
            store.read_correspondences(other, B, "beads")
    assert store.read_all_correspondences("beads", on_invalid="skip") == []
    assert store.correspondence_pairs("beads") == [(A, B), (B, C)]
    store.delete_correspondences(A, B, "beads")
    assert store.correspondence_pairs("beads") == [(B, C)]


def test_stale_token_without_deletion_is_detected(store, points_factory):
    """Both halves present but points rewritten in between: caught by the points token."""
    _pairs(store, points_factory)
    store.write_correspondences(A, B, "beads", [0], [0])
    token_before = store.point_info(A, "beads")["token"]
    # Rewrite A's points while keeping its correspondences group (simulates a writer
    # that does not clean up, e.g. an older version).
    grp = zarr.open_group(store.uri, mode="a")["tpId_0_viewSetupId_0/beads/interestpoints"]
    grp.attrs.update({"token": "someone-else"})
    assert store.point_info(A, "beads")["token"] != token_before
    with pytest.raises(CorrespondencesNotFoundError, match="rewritten after matching"):
        store.read_correspondences(A, B, "beads")


def test_bad_input_is_refused_with_a_clear_message(store, points_factory, tmp_path):
    p = points_factory(5, 1)
    with pytest.raises(PointStoreError, match=r"view \(0, 0\) label 'beads'.*shape \(5, 3\)"):
        store.write_points(A, "beads", p["ids"], p["loc_xyz"][:, :2])
    with pytest.raises(PointStoreError, match="unique"):
        store.write_points(A, "beads", [1, 1, 2, 3, 4], p["loc_xyz"])
    with pytest.raises(PointStoreError, match="NaN"):
        store.write_points(A, "beads", p["ids"], np.full((5, 3), np.nan))
    with pytest.raises(PointStoreError, match="integers"):
        store.write_points(A, "beads", p["ids"].astype(float), p["loc_xyz"])
    with pytest.raises(PointStoreError, match="label"):
        store.write_points(A, "a/b", p["ids"], p["loc_xyz"])
    with pytest.raises(PointStoreError, match="view"):
        store.write_points((0, 1.5), "beads", p["ids"], p["loc_xyz"])
    assert store.list_views() == []  # nothing half-written by refused calls

    _write(store, A, p)
    _write(store, B, p)
    with pytest.raises(PointStoreError, match="index the view's 5 points"):
        store.write_correspondences(A, B, "beads", [0, 5], [0, 1])
    with pytest.raises(PointStoreError, match="differ in length"):
        store.write_correspondences(A, B, "beads", [0, 1], [0])
    with pytest.raises(PointStoreError, match="itself"):
        store.write_correspondences(A, A, "beads", [0], [1])
    with pytest.raises(PointsNotFoundError, match=r"\(1, 0\)"):
        store.write_correspondences(A, C, "beads", [0], [0])

    ro = PointStore(store.uri, mode="r")
    with pytest.raises(PointStoreError, match="read-only"):
        ro.write_points(C, "beads", p["ids"], p["loc_xyz"])
    with pytest.raises(PointStoreError, match="no point store"):
        PointStore(tmp_path / "missing.zarr", mode="r")
    zarr.open_group(tmp_path / "other.zarr", mode="a").create_group("something")
    with pytest.raises(PointStoreError, match="not a point store"):
        PointStore(tmp_path / "other.zarr", mode="a")


def test_inputs_are_not_modified(store, points_factory):
    p = points_factory(20, 4)
    copies = {k: v.copy() for k, v in p.items()}
    _write(store, A, p)
    _write(store, B, p)
    ia, ib = np.arange(5), np.arange(5)[::-1].copy()
    store.write_correspondences(A, B, "beads", ia, ib)
    for k in p:
        np.testing.assert_array_equal(p[k], copies[k])
    np.testing.assert_array_equal(ib, [4, 3, 2, 1, 0])


def test_missing_intensity_and_dog_store_nan(store, points_factory):
    p = points_factory(4, 1)
    store.write_points(A, "beads", p["ids"], p["loc_xyz"])
    got = store.read_points(A, "beads")
    assert np.isnan(got.intensity).all() and np.isnan(got.dog).all()


def test_store_handle_pickles_by_address(store, points_factory):
    """Tasks ship the handle to workers: it must reopen the same store there."""
    import pickle

    p = points_factory(8, 1)
    _write(store, A, p)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri and clone.mode == "a"
    _assert_points_equal(clone.read_points(A, "beads"), p)
