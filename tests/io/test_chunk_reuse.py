"""ChunkReuse: planned reads decode each chunk once while it fits, never hold more than the
capacity, and return the same data (rhapso_core.io.chunk_reuse). Exact counts; no tolerance."""

from __future__ import annotations

import numpy as np

from rhapso_core.io.chunk_io import read_region, region_chunk_keys
from rhapso_core.io.chunk_reuse import ChunkReuse, reusing_chunks, step_capacity




def _run(a, boxes, reuse):
    outs = []
    with reusing_chunks(reuse):
        for i, box in enumerate(boxes):
            if reuse is not None:
                reuse.step(i)
            outs.append(read_region(a, tuple(slice(*b) for b in box)))
    return outs


# Overlapping boxes sliding along x (as blocks read padded boxes), then back to the start.
BOXES = [((0, 16), (0, 40), (0, 20)), ((0, 16), (0, 40), (14, 36)), ((0, 16), (0, 40), (30, 64)),
         ((0, 16), (10, 30), (0, 10))]


def test_each_chunk_decoded_once_with_enough_capacity(chunked):
    a, data = chunked
    steps = [region_chunk_keys(a, tuple(slice(*b) for b in box)) for box in BOXES]
    distinct = {k for s in steps for k, _ in s}
    reuse = ChunkReuse([[k for k, _ in s] for s in steps], capacity_bytes=10**9)
    outs = _run(a, BOXES, reuse)
    for box, out in zip(BOXES, outs):
        np.testing.assert_array_equal(out, data[tuple(slice(*b) for b in box)])
    assert reuse.decodes == len(distinct)
    assert reuse.hits == sum(len(s) for s in steps) - len(distinct)
    assert reuse.kept_bytes == 0, "chunks with no later read are let go"


def test_capacity_is_a_hard_bound_and_farthest_use_goes_first(chunked):
    a, data = chunked
    steps = [region_chunk_keys(a, tuple(slice(*b) for b in box)) for box in BOXES]
    cap = step_capacity(steps) // 4
    reuse = ChunkReuse([[k for k, _ in s] for s in steps], capacity_bytes=cap)
    peak = 0
    orig = reuse.offer

    def offer(key, chunk):
        nonlocal peak
        orig(key, chunk)
        peak = max(peak, reuse.kept_bytes)

    reuse.offer = offer
    outs = _run(a, BOXES, reuse)
    for box, out in zip(BOXES, outs):
        np.testing.assert_array_equal(out, data[tuple(slice(*b) for b in box)])
    assert 0 < peak <= cap
    no_reuse = sum(len(s) for s in steps)
    distinct = len({k for s in steps for k, _ in s})
    assert distinct < reuse.decodes < no_reuse, "a quarter of the capacity still saves some decodes"


def test_unplanned_reads_and_no_reuse_are_unchanged(chunked):
    a, data = chunked
    reuse = ChunkReuse([[]], capacity_bytes=10**9)
    outs = _run(a, BOXES[:1], reuse)
    np.testing.assert_array_equal(outs[0], data[:, :40, :20])
    assert reuse.hits == 0 and reuse.kept_bytes == 0
    np.testing.assert_array_equal(_run(a, BOXES[:1], None)[0], data[:, :40, :20])
