"""The point store's read cache and batched writes: fresh after rewrites and deletes,
bounded, read-only, thread-safe; writes still atomic step by step; objects on disk
byte-identical to zarr's own ``create_array``.

Ground truth is the data written; comparisons are exact.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr
from zarr.core.sync import sync
from zarr.storage import MemoryStore

import rhapso_core.pointstore.store as store_mod
from rhapso_core.pointstore import CorrespondencesNotFoundError, PointsNotFoundError, PointStore, batched, cache
from rhapso_core.bounded_cache import BoundedLRU
from rhapso_core.pointstore.cache import READ_CACHE

A, B, C = (0, 0), (0, 1), (1, 0)


@pytest.fixture
def store(tmp_path):
    return PointStore(tmp_path / "interestpoints.zarr", mode="a")


@pytest.fixture
def limit():
    """Restores the process-wide bound after a test changes it."""
    before = READ_CACHE.stats().max_bytes
    yield cache.set_cache_limit
    cache.set_cache_limit(before)


def _write(store, view, pts, label="beads"):
    store.write_points(view, label, pts["ids"], pts["loc_xyz"], pts["intensity"], pts["dog"])


def test_rewritten_points_read_fresh(store, points_factory):
    old, new = points_factory(40, 1), points_factory(30, 2)
    _write(store, A, old)
    first = store.read_points(A, "beads")
    assert store.read_points(A, "beads") is first  # served from the cache
    _write(store, A, new)
    got = store.read_points(A, "beads")
    assert got.token != first.token
    np.testing.assert_array_equal(got.ids, new["ids"])
    np.testing.assert_array_equal(got.loc_xyz, new["loc_xyz"])
    # A second handle on the same store (another task) sees the same content.
    other = PointStore(store.uri, mode="r").read_points(A, "beads")
    np.testing.assert_array_equal(other.loc_xyz, new["loc_xyz"])


def test_deleted_points_are_not_served_from_cache(store, points_factory):
    _write(store, A, points_factory(20, 1))
    _write(store, B, points_factory(20, 2))
    store.write_correspondences(A, B, "beads", [0, 1], [2, 3])
    store.read_points(A, "beads")
    store.read_correspondences(A, B, "beads")
    store.delete_points(A, "beads")
    with pytest.raises(PointsNotFoundError):
        store.read_points(A, "beads")
    with pytest.raises(CorrespondencesNotFoundError):
        store.read_correspondences(A, B, "beads")
    # The memory went back too: no entry of view A's label is left.
    assert not any(k[1] == store.uri and (k[2] == A or (k[0] == "corr" and k[3] == A))
                   for k in list(READ_CACHE._entries))


def test_rewritten_pair_reads_fresh(store, points_factory):
    _write(store, A, points_factory(50, 1))
    _write(store, B, points_factory(60, 2))
    store.write_correspondences(A, B, "beads", [1, 2, 3], [4, 5, 6])
    assert len(store.read_all_correspondences("beads")[0]) == 3
    first = store.read_correspondences(A, B, "beads")
    assert store.read_correspondences(A, B, "beads") is first  # served from the cache
    store.write_correspondences(B, A, "beads", [7, 8], [9, 10])
    (ab,) = store.read_all_correspondences("beads")
    np.testing.assert_array_equal(ab.idx_a, [9, 10])
    np.testing.assert_array_equal(ab.idx_b, [7, 8])


def test_cached_arrays_are_read_only(store, points_factory):
    _write(store, A, points_factory(25, 3))
    _write(store, B, points_factory(10, 4))
    got = store.read_points(A, "beads")
    assert store.read_points(A, "beads") is got
    for arr in (got.ids, got.loc_xyz, got.intensity, got.dog):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        got.loc_xyz[0, 0] = 1.0
    store.write_correspondences(A, B, "beads", [0, 1], [2, 3])
    c = store.read_correspondences(A, B, "beads")
    for arr in (c.idx_a, c.idx_b, c.ids_a, c.ids_b):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        c.idx_a[0] = 5


def test_store_cache_stays_within_its_bound(store, points_factory, limit):
    # 40 bytes per point: 100 points = 4000 bytes per view; room for two views.
    limit(9000)
    for i in range(6):
        _write(store, (0, i), points_factory(100, i))
        store.read_points((0, i), "beads")
        assert READ_CACHE.stats().bytes <= 9000
    assert READ_CACHE.stats().entries == 2
    # The two most recent stayed; an evicted view is read again from disk, right.
    assert store.read_points((0, 5), "beads") is store.read_points((0, 5), "beads")
    np.testing.assert_array_equal(store.read_points((0, 0), "beads").ids, points_factory(100, 0)["ids"])
    limit(0)  # disabled: nothing kept, reads still right
    assert READ_CACHE.stats().entries == 0
    got = store.read_points((0, 5), "beads")
    np.testing.assert_array_equal(got.ids, points_factory(100, 5)["ids"])
    assert READ_CACHE.stats().entries == 0


def test_read_cache_evicts_least_recently_used_first():
    c = BoundedLRU(100)
    c.put("a", 1, 40)
    c.put("b", 2, 40)
    assert c.get("a") == 1  # "a" now the most recent
    c.put("c", 3, 40)  # over the bound: "b" goes
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    c.put("huge", 4, 101)  # larger than the bound: never kept, nothing else evicted for it
    assert c.get("huge") is None and c.stats().entries == 2
    c.put("a", 5, 60)  # replacing an entry re-counts its size
    assert c.stats().bytes <= 100 and c.get("a") == 5
    with pytest.raises(ValueError):
        BoundedLRU(-1)


def test_read_cache_is_thread_safe():
    c = BoundedLRU(10_000)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(2000):
                k = int(rng.integers(0, 200))
                if c.get(k) is None:
                    c.put(k, k, int(rng.integers(1, 500)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = c.stats()
    assert s.bytes <= 10_000
    assert s.bytes == sum(n for _, n in c._entries.values())
    assert s.hits + s.misses == 8 * 2000


def test_cache_limit_from_environment(monkeypatch):
    monkeypatch.setenv("RHAPSO_POINTSTORE_CACHE_MB", "1.5")
    assert cache._limit_from_env() == int(1.5 * (1 << 20))
    monkeypatch.delenv("RHAPSO_POINTSTORE_CACHE_MB")
    assert cache._limit_from_env() == cache.DEFAULT_MAX_BYTES
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv("RHAPSO_POINTSTORE_CACHE_MB", bad)
        with pytest.raises(ValueError, match="RHAPSO_POINTSTORE_CACHE_MB"):
            cache._limit_from_env()


def _fail_arrays(monkeypatch):
    async def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the arrays")

    monkeypatch.setattr(batched, "write_arrays", crash)


def test_points_rewrite_interrupted_at_the_arrays_reads_as_absent(store, points_factory, monkeypatch):
    _write(store, A, points_factory(30, 1))
    store.read_points(A, "beads")  # cached under the old token
    with monkeypatch.context() as m:
        _fail_arrays(m)
        with pytest.raises(RuntimeError):
            _write(store, A, points_factory(20, 2))
    with pytest.raises(PointsNotFoundError):
        store.read_points(A, "beads")
    assert not store.has_points(A, "beads")


def test_pair_rewrite_interrupted_at_the_arrays_reads_as_incomplete(store, points_factory, monkeypatch):
    _write(store, A, points_factory(30, 1))
    _write(store, B, points_factory(30, 2))
    store.write_correspondences(A, B, "beads", [1, 2], [3, 4])
    store.read_correspondences(A, B, "beads")  # cached under the old pair token
    with monkeypatch.context() as m:
        _fail_arrays(m)
        with pytest.raises(RuntimeError):
            store.write_correspondences(A, B, "beads", [5], [6])
    with pytest.raises(CorrespondencesNotFoundError, match="did not complete"):
        store.read_correspondences(A, B, "beads")
    assert store.read_all_correspondences("beads", on_invalid="skip") == []


def test_pair_write_steps_are_ordered(store, points_factory, monkeypatch):
    """Both halves marked incomplete before any array is written; both marked
    complete only after every array landed (what makes a pair write atomic)."""
    _write(store, A, points_factory(30, 1))
    _write(store, B, points_factory(30, 2))
    events = []

    def logged(name, fn):
        async def run(*args, **kwargs):
            events.append(("start", name))
            await fn(*args, **kwargs)
            events.append(("end", name))
        return run

    monkeypatch.setattr(store_mod, "_invalidate", logged("invalidate", store_mod._invalidate))
    monkeypatch.setattr(batched, "write_arrays", logged("arrays", batched.write_arrays))
    monkeypatch.setattr(store_mod, "_commit", logged("commit", store_mod._commit))
    store.write_correspondences(A, B, "beads", [1, 2], [3, 4])

    def at(kind, name):
        return [i for i, e in enumerate(events) if e == (kind, name)]

    assert len(at("end", "invalidate")) == len(at("end", "arrays")) == len(at("end", "commit")) == 2
    assert max(at("end", "invalidate")) < min(at("start", "arrays"))
    assert max(at("end", "arrays")) < min(at("start", "commit"))


@pytest.mark.parametrize(
    "data, chunks",
    [
        (np.arange(7, dtype=np.int64), (7,)),
        (np.zeros((0, 3)), (1, 3)),  # an empty view
        (np.random.default_rng(0).random((10, 3)), (4, 3)),  # several chunks, a partial last one
        (np.full(5, np.nan, np.float32), (5,)),
        (np.zeros(4, np.int64), (4,)),  # all fill value: zarr writes no chunk
        (np.arange(12, dtype=np.int64).reshape(6, 2), (6, 2)),
    ],
)
def test_encoded_objects_are_those_of_zarr_create_array(data, chunks):
    ref = {}
    zarr.create_array(MemoryStore(ref), data=data, chunks=chunks, overwrite=True)
    got = sync(batched._encoded(data, chunks))
    assert sorted(got) == sorted(ref)
    for key in ref:
        assert got[key].to_bytes() == ref[key].to_bytes(), key


def test_threads_of_one_process_share_the_store_and_cache(store, points_factory):
    """Small jobs run their tasks in threads of one process: concurrent reads (cached or
    not) and writes of different pairs all land and read back exactly."""
    pts = {(0, i): points_factory(40, i) for i in range(5)}
    for v, p in pts.items():
        _write(store, v, p)
    pairs = [((0, i), (0, j)) for i in range(5) for j in range(i + 1, 5)]
    errors = []

    def match(k, a, b):
        try:
            for _ in range(3):
                pa, pb = store.read_points(a, "beads"), store.read_points(b, "beads")
                np.testing.assert_array_equal(pa.ids, pts[a]["ids"])
                np.testing.assert_array_equal(pb.loc_xyz, pts[b]["loc_xyz"])
            store.write_correspondences(a, b, "beads", [k % 40, 39], [0, (k * 7) % 40])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=match, args=(k, a, b)) for k, (a, b) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = {(c.view_a, c.view_b): c for c in store.read_all_correspondences("beads")}
    assert sorted(got) == pairs
    for k, (a, b) in enumerate(pairs):
        np.testing.assert_array_equal(got[(a, b)].idx_a, [k % 40, 39])
        np.testing.assert_array_equal(got[(a, b)].ids_b, pts[b]["ids"][[0, (k * 7) % 40]])
