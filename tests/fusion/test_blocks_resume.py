"""Block planning, block-size independence (identical bytes), and resumable writes."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from fusion_truth import CountingSource, tiles_to_views

from rhapso_core.fusion import (
    BlockMarkers,
    FusionParams,
    FusionView,
    fuse_block,
    fuse_to_zarr,
    make_output_grid,
    plan_blocks,
    plan_work_units,
    write_unit,
)
from rhapso_core.fusion.resume import BlockAlignmentError


def test_plan_blocks_tiles_every_chunk_once():
    shape, chunk = (37, 100, 129), (16, 32, 32)
    blocks = plan_blocks(shape, (20, 64, 64), chunk)
    owner = np.zeros(shape, np.int32)
    for b in blocks:
        for (a, e), c, n in zip(b, chunk, shape):
            assert a % c == 0 and (e % c == 0 or e == n), f"block {b} not chunk-aligned"
        owner[tuple(slice(a, e) for a, e in b)] += 1
    assert np.all(owner == 1), "blocks must partition the array"
    # 20 is rounded up to 32 (two chunks of 16)
    assert blocks[0] == ((0, 32), (0, 64), (0, 64))


def test_work_units_group_blocks_by_block_scale():
    p = FusionParams(block_size=(64, 64, 32), block_scale=(2, 2, 1))
    units = plan_work_units((64, 256, 256), p, (32, 64, 64))
    assert len(units) == 2 * 2 * 2
    assert all(len(u) == 4 for u in units)
    flat = sorted(b for u in units for b in u)
    assert flat == sorted(plan_blocks((64, 256, 256), (32, 64, 64), (32, 64, 64)))


def _array(path, shape, chunks=(16, 32, 32), dtype="uint16"):
    return zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


@pytest.mark.parametrize(
    "strategy", ["avg", "avg_blend", "max", "lowest_view_wins", "closest_pixel_wins"]
)
def test_block_size_does_not_change_a_single_byte(tiled_dataset, tmp_path, strategy):
    specimen, poses, tiles, _ = tiled_dataset
    views = tiles_to_views([(t * 50).astype(np.uint16) for t in tiles], poses)
    grid = make_output_grid(views)
    outs = []
    for bs in (64, 256):
        p = FusionParams(block_size=(bs, bs, bs), overlap_strategy=strategy, output_dtype="float32")
        arr = _array(tmp_path / f"{strategy}_{bs}.zarr", grid.shape_zyx, dtype="float32")
        fuse_to_zarr(views, grid, p, arr)
        outs.append(arr[...])
    assert outs[0].tobytes() == outs[1].tobytes(), "64- and 256-voxel blocks must give identical bytes"
    # Blocks not aligned to powers of two either (odd block starts).
    p = FusionParams(overlap_strategy=strategy, output_dtype="float32")
    odd = np.zeros(grid.shape_zyx, np.float32)
    for b in plan_blocks(grid.shape_zyx, (7, 13, 11), (1, 1, 1)):
        odd[tuple(slice(a, e) for a, e in b)] = fuse_block(b, grid, views, p)
    assert odd.tobytes() == outs[0].tobytes()


def _counted(views):
    return [FusionView(CountingSource(v.source), v.view_to_world, v.size_xyz, v.view_id) for v in views]


def test_rerun_skips_written_blocks(tiled_dataset, tmp_path):
    _, poses, tiles, _ = tiled_dataset
    views = _counted(tiles_to_views(tiles, poses))
    grid = make_output_grid(views)
    p = FusionParams(block_size=(64, 64, 64))
    arr = _array(tmp_path / "out.zarr", grid.shape_zyx)
    written = fuse_to_zarr(views, grid, p, arr)
    n_blocks = len(plan_blocks(grid.shape_zyx, (64, 64, 64), write_unit(arr)))
    assert len(written) == n_blocks
    reads = sum(sum(v.source.reads.values()) for v in views)
    assert reads > 0
    again = fuse_to_zarr(views, grid, p, arr)
    assert again == [], "a re-run must skip every block already marked done"
    assert sum(sum(v.source.reads.values()) for v in views) == reads, "a re-run must read nothing"


def test_rerun_after_killed_run_gives_identical_bytes(tiled_dataset, tmp_path):
    _, poses, tiles, _ = tiled_dataset
    views = tiles_to_views(tiles, poses)
    grid = make_output_grid(views)
    p = FusionParams(block_size=(64, 64, 64))
    clean = _array(tmp_path / "clean.zarr", grid.shape_zyx)
    fuse_to_zarr(views, grid, p, clean)

    arr = _array(tmp_path / "killed.zarr", grid.shape_zyx)
    blocks = plan_blocks(grid.shape_zyx, (64, 64, 64), write_unit(arr))
    fuse_to_zarr(views, grid, p, arr, blocks=blocks[: len(blocks) // 2])
    # The kill: the next block's data landed (garbage, partially) but not its marker.
    victim = blocks[len(blocks) // 2]
    arr[tuple(slice(a, e) for a, e in victim)] = 12345
    assert not BlockMarkers(arr).is_done(victim)
    redone = fuse_to_zarr(views, grid, p, arr)
    assert victim in redone and len(redone) == len(blocks) - len(blocks) // 2
    assert arr[...].tobytes() == clean[...].tobytes(), "resumed output must equal a clean run"
    # Stored chunk objects are byte-identical too (same data, same codec).
    for key in ("c/0/0/0", "c/1/2/3"):
        a = (tmp_path / "killed.zarr" / key).read_bytes()
        b = (tmp_path / "clean.zarr" / key).read_bytes()
        assert a == b


def test_unaligned_block_is_refused(tiled_dataset, tmp_path):
    _, poses, tiles, _ = tiled_dataset
    views = tiles_to_views(tiles, poses)
    grid = make_output_grid(views)
    arr = _array(tmp_path / "o.zarr", grid.shape_zyx)
    with pytest.raises(BlockAlignmentError, match="not aligned"):
        fuse_to_zarr(views, grid, FusionParams(), arr, blocks=[((0, 16), (0, 40), (0, 32))])
