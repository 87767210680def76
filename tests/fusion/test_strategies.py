"""Each overlap strategy does what it says, on two constant tiles that overlap in x."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionParams, FusionView, fuse_block, make_output_grid
from rhapso_core.image_source import ArraySource

NX, NY, NZ = 40, 61, 61  # y, z large enough that x decides closest_pixel_wins in the middle
SHIFT = 20  # view 1 starts at world x = 20; overlap is x in [20, 39]


def _views(v0=100.0, v1=300.0, ids=(0, 1)):
    a = np.full((NZ, NY, NX), v0, np.float32)
    b = np.full((NZ, NY, NX), v1, np.float32)
    return [
        FusionView(ArraySource([a]), tf.identity(), (NX, NY, NZ), ids[0]),
        FusionView(ArraySource([b]), tf.translation([SHIFT, 0, 0]), (NX, NY, NZ), ids[1]),
    ]


def _fuse(strategy, views=None, **kw):
    views = views or _views()
    grid = make_output_grid(views)
    assert grid.shape_zyx == (NZ, NY, NX + SHIFT)
    p = FusionParams(overlap_strategy=strategy, output_dtype="float32", **kw)
    return fuse_block(tuple((0, n) for n in grid.shape_zyx), grid, views, p)[NZ // 2, NY // 2]


def test_avg_gives_mean_in_overlap():
    row = _fuse("avg")
    np.testing.assert_allclose(row[:SHIFT], 100, atol=1e-4)
    np.testing.assert_allclose(row[SHIFT:NX], 200, atol=1e-4)
    np.testing.assert_allclose(row[NX:], 300, atol=1e-4)


def test_max_gives_max():
    row = _fuse("max")
    np.testing.assert_allclose(row[SHIFT:], 300, atol=1e-4)
    np.testing.assert_allclose(row[:SHIFT], 100, atol=1e-4)


@pytest.mark.parametrize("ids,expect", [((0, 1), 100.0), ((5, 2), 300.0)])
def test_lowest_view_wins(ids, expect):
    row = _fuse("lowest_view_wins", _views(ids=ids))
    np.testing.assert_allclose(row[SHIFT:NX], expect, atol=1e-4)


def test_closest_pixel_wins():
    row = _fuse("closest_pixel_wins")
    x = np.arange(NX + SHIFT, dtype=np.float64)
    d0 = np.minimum(x, NX - 1 - x)  # distance to view 0's x edges
    d1 = np.minimum(x - SHIFT, NX - 1 - (x - SHIFT))
    want = np.where((x >= SHIFT) & (x < NX) & (d1 > d0), 300.0, np.where(x < NX, 100.0, 300.0))
    np.testing.assert_allclose(row, want, atol=1e-4)
    assert set(np.unique(row[SHIFT:NX])) == {100.0, 300.0}


def _w(d, rng, border=0.0):
    d = d - border
    if d <= 0:
        return 0.0
    r = d / rng
    return 1.0 if r >= 1 else (math.cos((1 - r) * math.pi) + 1) / 2


@pytest.mark.parametrize("rng,border", [(40.0, 0.0), (10.0, 3.0)])
def test_avg_blend_ramps_smoothly_with_cosine_weights(rng, border):
    row = _fuse("avg_blend", blending_range=rng, blending_border=border)
    want = []
    for x in range(NX + SHIFT):
        w0 = _w(min(x, NX - 1 - x), rng, border) if x < NX else 0.0
        w1 = _w(min(x - SHIFT, NX - 1 - (x - SHIFT)), rng, border) if x >= SHIFT else 0.0
        v = (w0 * 100 + w1 * 300) / (w0 + w1) if w0 + w1 > 0 else (100 if x < SHIFT else 300 if x >= NX else 200)
        want.append(v)
    # Tolerated: 1e-3 (float32 accumulation); y and z weights are equal for both views.
    np.testing.assert_allclose(row[1:-1], np.array(want)[1:-1], atol=1e-3)
    inner = row[SHIFT:NX]
    assert np.all(np.diff(inner) >= -1e-4), "avg_blend must rise monotonically from view 0 to view 1"
    assert np.max(np.abs(np.diff(row))) < 60, "no jump larger than a smooth ramp step"


def test_outer_voxels_are_not_black_under_avg_blend():
    # The fused box's outermost planes lie on view edges (weight 0); they get the plain mean.
    views = _views()
    grid = make_output_grid(views)
    out = fuse_block(tuple((0, n) for n in grid.shape_zyx), grid, views, FusionParams(output_dtype="float32"))
    assert np.all(out > 0)
    np.testing.assert_allclose(out[0, 0, 0], 100, atol=1e-3)


def test_intensity_range_maps_to_uint8():
    views = _views(100.0, 300.0)
    grid = make_output_grid(views)
    p = FusionParams(overlap_strategy="max", output_dtype="uint8", intensity_range=(100, 300))
    out = fuse_block(tuple((0, n) for n in grid.shape_zyx), grid, views, p)
    assert out.dtype == np.uint8
    assert out[5, 5, 0] == 0 and out[5, 5, -1] == 255
    p = FusionParams(overlap_strategy="avg", output_dtype="uint8", intensity_range=(0, 400))
    out = fuse_block(tuple((0, n) for n in grid.shape_zyx), grid, views, p)
    # 200 / 400 * 255 = 127.5 -> rounded half to even = 128.
    assert out[30, 30, 30] == 128 and out[30, 30, 0] == round(100 / 400 * 255)
