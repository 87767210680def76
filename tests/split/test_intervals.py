"""Fixed-overlap interval distribution: coverage, overlaps, alignment, balance (exact integer checks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rhapso_core.split import SplitGeometryError, distribute_intervals, snap_to_step, split_axis


def _check_axis(iv, length, size, overlap, step, optimize):
    # Covers [0, length - 1] exactly: starts at 0, ends at the last voxel, no gaps.
    assert iv[0][0] == 0 and iv[-1][1] == length - 1
    for (a0, a1), (b0, b1) in zip(iv, iv[1:]):
        assert b0 > a0, "intervals must advance"
        assert a1 - b0 + 1 == overlap, f"neighbours must share exactly {overlap} voxels, got {a1 - b0 + 1}"
    sizes = [b - a + 1 for a, b in iv]
    # Offsets, and all sizes but the last, are multiples of the step (pyramid levels crop exactly).
    assert all(a % step == 0 for a, _ in iv)
    assert all(s % step == 0 for s in sizes[:-1])
    assert len(set(sizes[:-1])) <= 1, "all but the last interval have one size"
    assert max(sizes) <= size, "never larger than the requested size"
    n_min = 1 if length <= size else math.ceil((length - overlap) / (size - overlap))
    assert len(iv) == n_min, "the fewest intervals of the requested size that cover the axis"
    if len(iv) > 1:
        assert sizes[-1] > overlap, "the last interval adds voxels of its own"
        if optimize:
            # Balanced: the last interval is short of the others by less than one step per interval.
            assert sizes[0] - sizes[-1] < len(iv) * step
    return sizes


def test_random_axes_cover_exactly_and_are_aligned():
    rng = np.random.default_rng(1)
    for _ in range(3000):
        step = int(rng.choice([1, 2, 4, 8, 64]))
        size = step * int(rng.integers(2, 40))
        overlap = step * int(rng.integers(0, size // step))
        length = int(rng.integers(1, 20 * size))
        for optimize in (True, False):
            iv = split_axis(length, size, overlap, step, optimize)
            _check_axis(iv, length, size, overlap, step, optimize)


def test_unoptimized_keeps_the_requested_size_and_leaves_a_remainder():
    iv = split_axis(14192, 6016, 128, 64, optimize=False)
    assert iv == [(0, 6015), (5888, 11903), (11776, 14191)]  # last one 2416 voxels


def test_optimized_balances_the_last_interval():
    iv = split_axis(14192, 6016, 128, 64, optimize=True)
    sizes = [b - a + 1 for a, b in iv]
    assert sizes == [4864, 4864, 4720]  # three about equal pieces instead of 6016, 6016, 2416


def test_short_axis_is_not_split():
    assert split_axis(100, 128, 32, 8) == [(0, 99)]
    assert split_axis(128, 128, 32, 8) == [(0, 127)]


def test_snap_to_step_rounds_like_split_views():
    p = snap_to_step(6000, 100, 64)
    assert (p.size, p.overlap) == (6016, 128)  # nearest multiple for the size, next larger for the overlap
    assert snap_to_step(3, 0, 8).size == 8  # at least one step
    with pytest.raises(SplitGeometryError, match=r"target_overlap\[2\]"):
        snap_to_step(64, 60, 64, axis=2)


def test_split_axis_refuses_unaligned_sizes():
    with pytest.raises(SplitGeometryError, match="multiples of the step"):
        split_axis(1000, 300, 32, 8)


def test_distribute_intervals_grid_order_and_coverage():
    size = (600, 400, 100)
    boxes = distribute_intervals(size, (256, 256, 64), (32, 32, 16), (4, 4, 2))
    lo = np.array([b[0] for b in boxes])
    hi = np.array([b[1] for b in boxes])
    nx, ny, nz = (len(np.unique(lo[:, a])) for a in range(3))
    assert len(boxes) == nx * ny * nz == 3 * 2 * 2
    # x varies fastest, then y, then z (BigStitcher's order).
    assert lo[1, 0] > lo[0, 0] and lo[1, 1] == lo[0, 1]
    assert lo[nx, 1] > lo[0, 1] and lo[nx, 0] == lo[0, 0]
    assert lo[nx * ny, 2] > lo[0, 2]
    # Every voxel of the view is in at least one box, and no box leaves the view.
    cover = np.zeros(size[::-1], dtype=np.int32)
    for a, b in zip(lo, hi):
        assert np.all(a >= 0) and np.all(b <= np.array(size) - 1)
        cover[a[2] : b[2] + 1, a[1] : b[1] + 1, a[0] : b[0] + 1] += 1
    assert cover.min() == 1
    assert np.all(lo % np.array([4, 4, 2]) == 0), "offsets aligned to the step"
