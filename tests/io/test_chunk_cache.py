"""The run's decoded-chunk cache (rhapso_core.io.chunk_cache): reads inside ``caching_decoded_chunks`` decode each
chunk file once, return the same data, never serve a chunk whose file was rewritten, stay within
the byte budget, and share read-only arrays. Exact counts and values; no tolerance."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rhapso_core.io.chunk_cache import active_cache, caching_decoded_chunks
from rhapso_core.io.chunk_io import read_region

CHUNK_BYTES = 16 * 16 * 16 * 2




BOX = (slice(0, 16), slice(0, 40), slice(0, 20))  # 3 x 2 chunks


def test_second_read_is_served_from_the_cache_with_the_same_data(chunked):
    a, data = chunked
    with caching_decoded_chunks(10**8) as cache:
        first = read_region(a, BOX)
        assert (cache.stats().misses, cache.stats().hits) == (6, 0)
        second = read_region(a, BOX)
        assert (cache.stats().misses, cache.stats().hits) == (6, 6)
    np.testing.assert_array_equal(first, data[BOX])
    np.testing.assert_array_equal(second, data[BOX])
    second[0, 0, 0] = 7  # the caller's copy, not the cached chunk
    assert active_cache() is None, "no cache outside the block"


def test_a_rewritten_chunk_is_read_again_not_served_stale(chunked):
    a, data = chunked
    with caching_decoded_chunks(10**8) as cache:
        read_region(a, BOX)
        a[0:16, 0:16, 0:16] = 5  # zarr replaces the chunk's file
        out = read_region(a, BOX)
        assert cache.stats().misses == 7  # that one chunk decoded again
    np.testing.assert_array_equal(out[:, :16, :16], 5)
    np.testing.assert_array_equal(out[:, 16:, :], data[0:16, 16:40, 0:20])


def test_budget_is_a_hard_bound_and_kept_chunks_are_read_only(chunked):
    a, data = chunked
    with caching_decoded_chunks(4 * CHUNK_BYTES) as cache:
        read_region(a, BOX)  # 6 chunks through a budget of 4
        st = cache.stats()
        assert (st.entries, st.bytes) == (4, 4 * CHUNK_BYTES)
        out = read_region(a, BOX)
        np.testing.assert_array_equal(out, data[BOX])
        kept = [v for v, _ in cache._entries.values()]
        assert kept and all(not c.flags.writeable for c in kept)
        with pytest.raises(ValueError):
            kept[0][0, 0, 0] = 1


def test_zero_budget_means_no_cache_and_nested_blocks_share_one():
    with caching_decoded_chunks(0) as none:
        assert none is None and active_cache() is None
    with caching_decoded_chunks(10**6) as outer:
        with caching_decoded_chunks(10**9) as inner:
            assert inner is outer
        assert active_cache() is outer, "an inner block does not end the outer one's cache"
    assert active_cache() is None


def test_threads_share_the_cache(chunked):
    a, data = chunked
    outs = []
    with caching_decoded_chunks(10**8) as cache:
        read_region(a, BOX)
        workers = [threading.Thread(target=lambda: outs.append(read_region(a, BOX))) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert (cache.stats().misses, cache.stats().hits) == (6, 24)
    for out in outs:
        np.testing.assert_array_equal(out, data[BOX])
