"""The fast fusion kernel (row_kernels) against the reference kernel (kernels.accumulate_view).

The fast kernel must not change a single fused value: accumulators are compared bit for
bit (``array_equal``; only the sign of an exact zero may differ) and the uint16 output
exactly, for every overlap strategy, on views that exercise each of its shortcuts and
their edges: general affine poses (rotation about a tilted axis, shear, anisotropic
scale), pure translations (row-constant coordinates), pyramid level 1 (level-voxel
offsets), a one-plane view (no interior on z), blending borders and a zero range,
blocks that cut rows, float32 and uint16 pixels, a near axis-aligned view (contiguous
runs of cells), planar views (x-y apart from z: translations, rotations about z, xy
shear and anisotropic scale), whose rows share one x-y part per block row, including
planes outside the view and clamped first and last planes.
"""

from __future__ import annotations

import numpy as np
import pytest

import rhapso_core.fusion.fuse as fuse_mod
from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionParams, FusionView, make_output_grid, plan_blocks
from rhapso_core.fusion.kernels import accumulate_view
from rhapso_core.fusion.params import OVERLAP_STRATEGIES
from rhapso_core.image_source import ArraySource
from rhapso_core.multiscale import mean_downsample


def _rotation(axis, deg):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    a = np.deg2rad(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    m = np.eye(4)
    m[:3, :3] = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    return m


def _views(dtype):
    rng = np.random.default_rng(7)
    size = (34, 30, 14)  # x, y, z
    poses = [
        tf.identity(),                                          # axis-aligned, integer grid
        tf.translation([21.5, 0.25, 0.0]),                      # pure translation, fractional
        tf.translation([3.0, 17.0, 2.0]) @ _rotation([0.2, 0.3, 1.0], 7.0),
        tf.translation([19.0, 15.0, 4.0]) @ _rotation([1.0, -0.4, 0.3], 11.0)
        @ np.diag([1.05, 0.97, 1.6, 1.0]) @ np.array(
            [[1, 0.04, 0, 0], [0, 1, 0.03, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64),
        # Near axis-aligned (the common registered tile): long runs of consecutive cells,
        # broken where y and z cross a voxel boundary and by a 0.3 % scale on x.
        tf.translation([10.25, 4.5, 3.125]) @ _rotation([0.1, 0.05, 1.0], 0.8)
        @ np.diag([1.003, 1.0, 1.0, 1.0]),
        # Planar: rotated about z only, scaled anisotropically, sheared within xy, at a
        # fractional z that starts below the other views (planes outside it, clamped ends).
        tf.translation([6.5, 9.75, -3.4]) @ _rotation([0.0, 0.0, 1.0], 6.0)
        @ np.diag([0.98, 1.03, 1.7, 1.0]) @ np.array(
            [[1, 0.05, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64),
        tf.translation([14.0, 2.3, 5.6]) @ _rotation([0.0, 0.0, 1.0], -0.6),
    ]
    views = []
    for k, pose in enumerate(poses):
        img = rng.integers(0, 60000, size[::-1]).astype(dtype)
        levels = [img, mean_downsample(img, (2, 2, 2))]
        views.append(FusionView(ArraySource(levels, factors=[(1, 1, 1), (2, 2, 2)]), pose, size, k))
    # One plane thick: no interior on z, every tap clamped.
    plane = rng.integers(0, 60000, (1, 20, 25)).astype(dtype)
    views.append(FusionView(ArraySource([plane]), tf.translation([8.0, 6.0, 7.3]), (25, 20, 1), 9))
    return views


def _fuse_all(views, params, kernel, monkeypatch):
    monkeypatch.setattr(fuse_mod, "_accumulate", kernel)
    grid = make_output_grid(views, params.voxel_size)
    blocks = plan_blocks(grid.shape_zyx, (11, 13, 17), (1, 1, 1))
    # Equal accumulators give equal outputs (fuse_block finalizes them with one shared
    # function); the outputs are compared too where the output dtype is an integer.
    accs = [fuse_mod.fuse_block_float(b, grid, views, params) for b in blocks]
    outs = [fuse_mod.fuse_block(b, grid, views, params) for b in blocks[::7]]
    return accs, outs


CASES = [dict(overlap_strategy=s) for s in OVERLAP_STRATEGIES] + [
    dict(overlap_strategy="avg_blend", blending_border=(2.0, 1.0, 0.5), blending_range=(6.0, 9.0, 3.0)),
    dict(overlap_strategy="avg_blend", blending_range=(0.0, 5.0, 0.0)),
    dict(overlap_strategy="content_based", blending_range=(8.0, 4.0, 2.0)),
    dict(overlap_strategy="avg_blend", voxel_size=(2.0, 2.0, 2.0)),   # reads pyramid level 1
    dict(overlap_strategy="max", voxel_size=(1.7, 2.3, 2.0)),
    dict(overlap_strategy="content_based", voxel_size=(2.0, 2.0, 2.0)),
]


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fast_kernel_matches_reference(case, dtype, monkeypatch):
    kw = dict(case)
    if kw["overlap_strategy"] == "content_based":
        kw.update(content_sigma1=(1.5, 1.5, 1.0), content_sigma2=(3.0, 3.0, 2.0))
    out_dtype = "uint16" if dtype == np.uint16 else "float32"
    params = FusionParams(output_dtype=out_dtype, **kw)
    views = _views(dtype)
    ref_acc, ref_out = _fuse_all(views, params, accumulate_view, monkeypatch)
    new_acc, new_out = _fuse_all(views, params, fuse_mod.accumulate_view_rows, monkeypatch)
    covered = 0
    for (ra, rb), (na, nb), ro, no in zip(ref_acc, new_acc, ref_out, new_out):
        np.testing.assert_array_equal(na, ra)  # tolerance: none (bit-identical sums)
        np.testing.assert_array_equal(nb, rb)
        np.testing.assert_array_equal(no, ro)
        covered += int((rb > 0).sum())
    assert covered > 1000  # the comparison saw real overlap, not empty blocks


def test_planar_views_are_found():
    # The views above that keep x-y and z apart (the comparisons above then cover the planar
    # rows; the one-plane view is planar too, but has no interior on z and takes the general
    # rows); the tilted ones do not.
    import rhapso_core.fusion.row_kernels as rk
    from rhapso_core.fusion import output_to_view

    views = _views(np.uint16)
    grid = make_output_grid(views, (1.0, 1.0, 1.0))
    planar = [rk.planar_view(output_to_view(grid, v)[:3, :]) for v in views]
    assert planar == [True, True, False, False, False, True, True, True]


@pytest.mark.parametrize("strategy", ["avg_blend", "content_based", "lowest_view_wins", "max"])
def test_planar_rows_match_the_general_rows(strategy, monkeypatch):
    # The same kernel with its planar path turned off: every accumulator bit for bit the same
    # (tolerance: none), on planar views only, at level 0 and on pyramid level 1.
    import rhapso_core.fusion.row_kernels as rk

    views = [v for v in _views(np.uint16) if v.view_id in (0, 1, 5, 6)]
    compiled = rk._accumulate_rows
    for voxel in ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)):
        kw = dict(content_sigma1=(1.5, 1.5, 1.0), content_sigma2=(3.0, 3.0, 2.0)) if strategy == "content_based" else {}
        params = FusionParams(overlap_strategy=strategy, voxel_size=voxel, **kw)
        taken = []

        def recording(*args):
            taken.append(args[16])  # the planar flag the wrapper chose
            return compiled(*args)

        monkeypatch.setattr(rk, "_accumulate_rows", recording)
        planar_acc, _ = _fuse_all(views, params, rk.accumulate_view_rows, monkeypatch)
        assert sum(taken) > len(taken) // 2  # most calls took the planar rows
        monkeypatch.setattr(rk, "planar_view", lambda m: False)
        general_acc, _ = _fuse_all(views, params, rk.accumulate_view_rows, monkeypatch)
        monkeypatch.undo()
        covered = 0
        for (pa, pb), (ga, gb) in zip(planar_acc, general_acc):
            np.testing.assert_array_equal(pa, ga)
            np.testing.assert_array_equal(pb, gb)
            covered += int((gb > 0).sum())
        assert covered > 1000


def test_default_kernel_is_the_fast_one():
    assert fuse_mod._accumulate is fuse_mod.accumulate_view_rows


def test_boxes_past_int32_offsets_take_the_reference_kernel(monkeypatch):
    # The fast kernel computes cells and flat offsets in int32; a source box of more than
    # 2**31 voxels must go to the reference kernel (int64 offsets). Such a box is 4 GiB of
    # uint16, too big for a test, so the limit is lowered to 100 voxels (the Python function
    # in front of the compiled kernel reads it at call time).
    import rhapso_core.fusion.row_kernels as rk

    routed = []

    def reference(*args):
        routed.append(args[5].size)
        return accumulate_view(*args)

    monkeypatch.setattr(rk, "_I32_MAX", 100)
    monkeypatch.setattr(rk, "accumulate_view", reference)
    params = FusionParams(output_dtype="uint16")
    views = _views(np.uint16)
    ref_acc, _ = _fuse_all(views, params, accumulate_view, monkeypatch)
    new_acc, _ = _fuse_all(views, params, rk.accumulate_view_rows, monkeypatch)
    assert routed and min(routed) > 100
    for (ra, rb), (na, nb) in zip(ref_acc, new_acc):
        np.testing.assert_array_equal(na, ra)
        np.testing.assert_array_equal(nb, rb)
