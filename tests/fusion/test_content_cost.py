"""The cost model's estimate of content_based filtering against what fusion filters.

``rhapso_core.cost.content_filter_taps`` counts, without listing units, the voxel-taps of the
content weights' Gaussians; here fusion runs unit by unit with ``content_weights`` counted.
Tolerated: 20 % either way (measured 0.98-0.99: the estimate takes each view's footprint as
the bounding box of its corners, counts units per axis, and assumes a unit filters the box
over its blocks even where they filter their own boxes).
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import rhapso_core.fusion.fuse as fuse_mod
from rhapso_core.cost import content_filter_taps
from rhapso_core.fusion import FusionParams, fuse_to_zarr, make_output_grid, plan_work_units
from rhapso_core.fusion.blocks import aligned_block_size
from rhapso_core.fusion.content import filter_taps

from fusion_truth import tiles_to_views


@pytest.mark.parametrize(
    "extra",
    [
        {"block_size": (32, 32, 32), "content_sigma1": 2.0, "content_sigma2": 4.0},
        {"block_size": (32, 32, 32), "block_scale": (1, 1, 1), "content_sigma1": 2.0, "content_sigma2": 4.0},
        {"block_size": (64, 64, 64), "content_sigma1": 4.0, "content_sigma2": 8.0},
        # A coarser output: level 1 of each view, sigmas halved there.
        {"block_size": (32, 32, 32), "content_sigma1": 3.0, "content_sigma2": 5.0, "voxel_size": 2.0},
    ],
    ids=["unit-2x2x1", "one-block-units", "large-halo", "level1"],
)
def test_estimate_is_within_a_fifth_of_the_filtering(tiled_dataset, tmp_path, monkeypatch, extra):
    _, poses, tiles, _ = tiled_dataset
    views = tiles_to_views([(t * 50).astype(np.uint16) for t in tiles], poses)
    params = FusionParams(overlap_strategy="content_based", chunks=(16, 16, 16), **extra)
    grid = make_output_grid(views, params.voxel_size)
    taps = []
    orig = fuse_mod.content_weights

    def counting(src, s1, s2):
        taps.append(src.size * filter_taps(s1, s2))
        return orig(src, s1, s2)

    monkeypatch.setattr(fuse_mod, "content_weights", counting)
    arr = zarr.create_array(str(tmp_path / "o.zarr"), shape=grid.shape_zyx, chunks=(16, 16, 16), dtype="uint16")
    for unit in plan_work_units(grid.shape_zyx, params, (16, 16, 16)):
        fuse_to_zarr(views, grid, params, arr, blocks=unit)
    unit_sides = [min(int(n), int(b) * int(s)) for n, b, s in
                  zip(grid.shape_zyx, aligned_block_size(params.block_size[::-1], (16, 16, 16)), params.block_scale[::-1])]
    estimate = content_filter_taps(views, grid, params, unit_sides)
    actual = float(sum(taps))
    assert actual > 0
    assert 0.8 <= estimate / actual <= 1.25, (estimate, actual, estimate / actual)
