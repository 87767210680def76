"""Chunk invariance, regions and overlap-only mode."""

from __future__ import annotations

import numpy as np
import pytest

from detection_blobs import add_noise, match, random_centres, render
from rhapso_core.detection import DetectionParams, detect_chunk, detect_view, plan_detection
from rhapso_core.detection.view import DetectionError, split_box
from rhapso_core.image_source import ArraySource

SHAPE = (45, 101, 99)  # not divisible by the factors: partial blocks are dropped


@pytest.fixture(scope="module")
def noisy_view():
    rng = np.random.default_rng(30)
    c = random_centres(rng, SHAPE, 120, margin=3, min_dist=5)
    img = render(SHAPE, c, rng.uniform(60, 1500, len(c)), (1.5, 2.5, 2.5), background=100.0)
    return ArraySource([add_noise(rng, img)])


@pytest.mark.parametrize(
    "kw",
    [
        dict(dsxy=1, dsz=1, median_filter=0),
        dict(dsxy=2, dsz=1, median_filter=3, peak_type="both"),
    ],
)
def test_one_chunk_equals_27_chunks(noisy_view, kw):
    base = DetectionParams(sigma=1.8, threshold=0.006, min_intensity=0, max_intensity=1000,
                           combine_distance=0.0, **kw)
    one = detect_view(noisy_view, base.model_copy(update={"chunks_per_bound": 1}))
    many_plan = plan_detection(noisy_view, base.model_copy(update={"chunks_per_bound": 27}))
    assert len(many_plan.tasks) == 27
    many = detect_view(noisy_view, base.model_copy(update={"chunks_per_bound": 27}))
    assert len(one) > 50
    # required: identical point sets, positions within 1e-3 voxel. The halo covers every
    # input a DoG value depends on, so we also hold it to 1e-6 voxel / 1e-7 DoG (a halo
    # 8 voxels short already moves the DoG by ~4e-7 and positions by ~2e-5)
    assert len(one) == len(many), f"1 chunk: {len(one)} points, 27 chunks: {len(many)}"
    assert np.max(np.abs(one.loc_xyz - many.loc_xyz)) < 1e-6
    np.testing.assert_allclose(one.dog, many.dog, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(one.intensity, many.intensity)


def test_split_box_partitions():
    box = ((0, 10), (0, 33), (5, 40))
    for n in (1, 2, 5, 27, 64):
        parts = split_box(box, n)
        assert len(parts) == n
        vol = sum(np.prod([b - a for a, b in p]) for p in parts)
        assert vol == 10 * 33 * 35, "chunks must cover the box exactly once"
        cover = np.zeros((10, 33, 35), int)
        for (z0, z1), (y0, y1), (x0, x1) in parts:
            cover[z0:z1, y0:y1, x0 - 5:x1 - 5] += 1
        assert np.all(cover == 1)


def test_chunk_tasks_union_equals_view(noisy_view):
    """The orchestration path (plan + detect_chunk per task + merge) gives detect_view's result."""
    from rhapso_core.detection import merge_points

    p = DetectionParams(dsxy=2, sigma=1.8, threshold=0.006, min_intensity=0, max_intensity=1000,
                        chunks_per_bound=6)
    plan = plan_detection(noisy_view, p)
    parts = [detect_chunk(noisy_view, t.level, t.in_memory_factor, t.core_box, plan.params)
             for t in plan.tasks]
    merged = merge_points(parts, plan.params, plan.regions_xyz[0])
    ref = detect_view(noisy_view, p)
    np.testing.assert_array_equal(merged.loc_xyz, ref.loc_xyz)
    np.testing.assert_array_equal(merged.ids, np.arange(len(ref)))


def test_region_and_overlap_only(noisy_view):
    p = DetectionParams(dsxy=1, sigma=1.8, threshold=0.006, min_intensity=0, max_intensity=1000,
                        combine_distance=0.0)
    full = detect_view(noisy_view, p)
    boxes = [np.array([[10, 20, 5], [50, 60, 20]]), np.array([[40, 55, 15], [90, 95, 40]])]
    ov = detect_view(noisy_view, p.model_copy(update={"overlap_only": True}),
                     overlap_boxes_xyz=boxes)

    def inside(loc, b, pad):
        return np.all((loc >= b[0] - pad) & (loc <= b[1] + pad), axis=1)

    # every point lies in a box (to within the sub-voxel offset of its integer peak, < 1)
    assert np.all(inside(ov.loc_xyz, boxes[0], 1.0) | inside(ov.loc_xyz, boxes[1], 1.0))
    # and equals a full-view detection (same point, not a border-clipped one)
    d, _ = match(ov.loc_xyz, full.loc_xyz, 1e-3)
    assert np.all(np.isfinite(d)), "overlap-only point differs from the full-view point"
    # every full-view point well inside a box is found; none is reported twice
    core = inside(full.loc_xyz, boxes[0], -1.0) | inside(full.loc_xyz, boxes[1], -1.0)
    d2, _ = match(full.loc_xyz[core], ov.loc_xyz, 1e-3)
    assert np.all(np.isfinite(d2)) and core.sum() > 5
    assert len(np.unique(np.round(ov.loc_xyz, 4), axis=0)) == len(ov)
    # a plain region works the same way
    reg = detect_view(noisy_view, p, region_xyz=boxes[0])
    assert np.all(inside(reg.loc_xyz, boxes[0], 1.0))
    assert np.all(np.isfinite(match(reg.loc_xyz, full.loc_xyz, 1e-3)[0]))
    # overlap-only without boxes is refused with the parameter named; no boxes: no points
    with pytest.raises(DetectionError, match="overlap_boxes_xyz"):
        detect_view(noisy_view, p.model_copy(update={"overlap_only": True}))
    assert len(detect_view(noisy_view, p.model_copy(update={"overlap_only": True}),
                           overlap_boxes_xyz=[])) == 0
