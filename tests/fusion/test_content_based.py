"""Content-based fusion: favours the sharper view, matches its definition, block-size independent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr
from fusion_truth import tiles_to_views
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.fusion import (
    OVERLAP_STRATEGIES,
    FusionParams,
    FusionView,
    fuse_block,
    fuse_to_zarr,
    make_output_grid,
    plan_blocks,
)
from rhapso_core.fusion.content import halo_voxels, level_sigmas
from rhapso_core.image_source import ArraySource

NZ, NY, NX = 24, 40, 64
SHIFT = 36  # view 1 starts at world x = 36; the overlap is x in [36, 63]
WORLD_X = NX + SHIFT
SMALL = {"content_sigma1": 3.0, "content_sigma2": 6.0}


def _truth(seed=0) -> np.ndarray:
    """Fine random texture in world (z, y, x), about 500 +- 400."""
    rng = np.random.default_rng(seed)
    return 500.0 + 4000.0 * ndimage.gaussian_filter(rng.standard_normal((NZ, NY, WORLD_X)), 1.2)


def _pair(sharp_first: bool, seed=0):
    """Two views overlapping in x: one a crop of the truth, the other a crop of its blurred copy."""
    w = _truth(seed)
    blurred = ndimage.gaussian_filter(w, 2.5, mode="nearest")
    crops = [w[:, :, :NX], blurred[:, :, SHIFT:]] if sharp_first else [blurred[:, :, :NX], w[:, :, SHIFT:]]
    views = [
        FusionView(ArraySource([crops[0].astype(np.float32)]), tf.identity(), (NX, NY, NZ), 0),
        FusionView(ArraySource([crops[1].astype(np.float32)]), tf.translation([SHIFT, 0, 0]), (NX, NY, NZ), 1),
    ]
    return w, views


def _fuse(views, strategy, **kw):
    grid = make_output_grid(views)
    assert grid.shape_zyx == (NZ, NY, WORLD_X)
    p = FusionParams(overlap_strategy=strategy, output_dtype="float32", **kw)
    return fuse_block(tuple((0, n) for n in grid.shape_zyx), grid, views, p)


@pytest.mark.parametrize("sharp_first", [True, False])
@pytest.mark.parametrize("sigmas", [SMALL, {}], ids=["sigma3-6", "default-20-40"])
def test_content_based_is_closer_to_the_sharp_view_than_avg_blend(sharp_first, sigmas):
    truth, views = _pair(sharp_first)
    overlap = (slice(None), slice(None), slice(SHIFT, NX))
    rms = {}
    for strategy in ("avg_blend", "content_based"):
        out = _fuse(views, strategy, **sigmas)
        rms[strategy] = float(np.sqrt(np.mean((out[overlap] - truth[overlap]) ** 2)))
        # Outside the overlap each strategy returns the single covering view.
        only = (slice(None), slice(None), slice(0, SHIFT) if sharp_first else slice(NX, None))
        np.testing.assert_allclose(out[only], truth[only], rtol=1e-5, atol=1e-2)
    blurred_rms = float(np.sqrt(np.mean((ndimage.gaussian_filter(truth, 2.5, mode="nearest")[overlap]
                                         - truth[overlap]) ** 2)))
    # Measured: avg_blend about 240, content_based about 150 (sigma 3/6) and 170 (20/40) of
    # 400 for the blurred view alone. Tolerated: content_based must cut avg_blend's error
    # by at least 20 %.
    assert rms["content_based"] < 0.8 * rms["avg_blend"], (rms, blurred_rms)
    assert rms["avg_blend"] < blurred_rms


def _blend_w(d, rng=40.0):
    if d <= 0:
        return 0.0
    r = d / rng
    return 1.0 if r >= 1 else (math.cos((1 - r) * math.pi) + 1) / 2


def _reference_weights(img, s1, s2):
    # Independent float64 statement of G_s2 * (I - G_s1 * I)^2, mirror edges, 3-sigma kernels.
    img = img.astype(np.float64)
    detail = img - ndimage.gaussian_filter(img, s1, mode="mirror", truncate=3.0)
    return ndimage.gaussian_filter(detail**2, s2, mode="mirror", truncate=3.0)


def test_content_based_equals_its_definition():
    """sum_v b_v c_v I_v / sum_v b_v c_v with c = G2 * (I - G1 * I)^2 on the whole view, b = cosine blend."""
    _, views = _pair(True)
    out = _fuse(views, "content_based", **SMALL)
    imgs = [v.source.read(tuple((0, n) for n in v.source.level_shape(0))) for v in views]
    c = [_reference_weights(i, 3.0, 6.0) for i in imgs]
    num = np.zeros((NZ, NY, WORLD_X))
    den = np.zeros((NZ, NY, WORLD_X))
    for k, off in enumerate((0, SHIFT)):
        for z in range(NZ):
            for y in range(NY):
                byz = _blend_w(min(z, NZ - 1 - z)) * _blend_w(min(y, NY - 1 - y))
                for x in range(NX):
                    w = byz * _blend_w(min(x, NX - 1 - x)) * c[k][z, y, x]
                    num[z, y, x + off] += w * imgs[k][z, y, x]
                    den[z, y, x + off] += w
    inner = (slice(1, -1), slice(1, -1), slice(1, -1))  # outermost planes have blend weight 0
    want = num[inner] / den[inner]
    # Tolerated: 1e-4 relative or 0.05 absolute (about 1e-5 of the +-2000 intensity span):
    # float32 filters and accumulators vs this float64 reference; measured max 0.01.
    np.testing.assert_allclose(out[inner], want, rtol=1e-4, atol=0.05)
    # And the weights really matter here: plain blending differs by far more than that.
    assert np.max(np.abs(_fuse(views, "avg_blend")[inner] - want)) > 10.0


def _zarr(path, shape):
    return zarr.create_array(str(path), shape=shape, chunks=(16, 32, 32), dtype="float32", fill_value=0)


@pytest.mark.parametrize(
    "extra",
    [
        {"content_sigma1": (2.0, 2.0, 1.0), "content_sigma2": (4.0, 4.0, 2.0)},
        # A coarser output reads pyramid level 1, where the sigmas are halved.
        {"content_sigma1": 2.0, "content_sigma2": 3.0, "voxel_size": 2.0},
    ],
    ids=["level0", "level1"],
)
def test_content_based_block_size_does_not_change_a_single_byte(tiled_dataset, tmp_path, extra):
    _, poses, tiles, _ = tiled_dataset
    views = tiles_to_views([(t * 50).astype(np.uint16) for t in tiles], poses)
    base = FusionParams(overlap_strategy="content_based", output_dtype="float32", **extra)
    grid = make_output_grid(views, base.voxel_size)
    # The halos are far smaller than the views, so block edges do cut through the filters.
    lv = 1 if base.voxel_size else 0
    halo = halo_voxels(*level_sigmas(views[0], lv, base))
    assert all(h < n // 2 for h, n in zip(halo, views[0].source.level_shape(lv)))
    outs = []
    for bs in (64, 256):
        p = base.model_copy(update={"block_size": (bs, bs, bs)})
        arr = _zarr(tmp_path / f"cb_{bs}.zarr", grid.shape_zyx)
        fuse_to_zarr(views, grid, p, arr)
        outs.append(arr[...])
    assert outs[0].tobytes() == outs[1].tobytes(), "64- and 256-voxel blocks must give identical bytes"
    odd = np.zeros(grid.shape_zyx, np.float32)
    for b in plan_blocks(grid.shape_zyx, (9, 40, 33), (1, 1, 1)):
        odd[tuple(slice(a, e) for a, e in b)] = fuse_block(b, grid, views, base)
    assert odd.tobytes() == outs[0].tobytes(), "odd-sized blocks must give identical bytes too"
    assert np.count_nonzero(outs[0]) > 0.9 * outs[0].size
    # Integer output is the float result mapped and rounded (content_based divides by sum(w)).
    u16 = fuse_block(tuple((0, n) for n in grid.shape_zyx), grid, views,
                     base.model_copy(update={"output_dtype": "uint16"}))
    want = np.rint(np.clip(outs[0].astype(np.float64), 0, 65535))  # intensity_range (0, 65535)
    assert np.max(np.abs(u16.astype(np.float64) - want)) <= 1.0


def test_level_sigmas_follow_anisotropy_and_pyramid_level():
    a = np.zeros((8, 16, 16), np.float32)
    lv1 = a[::1, ::2, ::2]
    src = ArraySource([a, lv1], [(1, 1, 1), (1, 2, 2)])
    view = FusionView(src, tf.scaling([1.0, 1.0, 2.5]), (16, 16, 8), 0)
    p = FusionParams(overlap_strategy="content_based")
    s1, s2 = level_sigmas(view, 1, p)
    # z voxels are 2.5x longer: 20 / 2.5 = 8 (z); x, y halved by the level's factor 2.
    np.testing.assert_allclose(s1, [8.0, 10.0, 10.0])
    np.testing.assert_allclose(s2, [16.0, 20.0, 20.0])
    s1, _ = level_sigmas(view, 0, p.model_copy(update={"content_adjust_anisotropy": False}))
    np.testing.assert_allclose(s1, [20.0, 20.0, 20.0])


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"content_sigma1": 0}, "content_sigma1"),
        ({"content_sigma2": (40, -1, 40)}, "content_sigma2"),
        ({"content_sigma1": float("nan")}, "content_sigma1"),
        ({"content_sigma2": (1, 2)}, "content_sigma2"),
        ({"overlap_strategy": "content"}, "overlap_strategy"),
    ],
)
def test_bad_content_params_name_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        FusionParams(**kw)


def test_content_params_defaults_and_broadcast():
    p = FusionParams()
    assert p.overlap_strategy == "avg_blend", "avg_blend stays the default"
    assert p.content_sigma1 == (20.0, 20.0, 20.0) and p.content_sigma2 == (40.0, 40.0, 40.0)
    assert "content_based" in OVERLAP_STRATEGIES
    q = FusionParams(overlap_strategy="content_based", content_sigma1=5, content_sigma2=7.5)
    assert q.content_sigma1 == (5.0, 5.0, 5.0) and q.content_sigma2 == (7.5, 7.5, 7.5)
