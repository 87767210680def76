"""A work unit's read plan matches fusion's reads, and reusing decoded chunks across its
blocks changes no fused value (rhapso_core.fusion.read_plan, rhapso_core.io.chunk_reuse).

Views are stored as zarr (chunks of 8^3 voxels, so every block boundary cuts chunks) and
read through the project's zarr reader. Tolerance: none (``array_equal``); decode counts
are exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import rhapso_core.fusion.writer as writer_mod
from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionParams, FusionView, fuse_to_zarr, make_output_grid, plan_blocks, plan_work_units
from rhapso_core.fusion.fuse import fuse_block_float
from rhapso_core.fusion.read_plan import block_reads
from rhapso_core.io.chunk_io import general_path_only
from rhapso_core.io.zarr_source import image_from_zarr
from rhapso_core.multiscale import mean_downsample


def _views(tmp_path, scale=1):
    rng = np.random.default_rng(5)
    size = (40 * scale, 36 * scale, 18 * scale)  # x, y, z
    c = (np.asarray(size) - 1) / 2
    rot = np.eye(4)
    a = np.deg2rad(4.0)
    rot[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    poses = [tf.identity(), tf.translation([31.5 * scale, 2.25, 1.0]) @ tf.translation(c) @ rot @ tf.translation(-c),
             tf.translation([3.0, 28.0 * scale, -1.5])]
    views = []
    for k, pose in enumerate(poses):
        img = rng.integers(100, 60000, size[::-1]).astype(np.uint16)
        g = zarr.open_group(str(tmp_path / f"v{k}"), mode="w")
        for lv, data in enumerate([img, mean_downsample(img, (2, 2, 2))]):
            g.create_array(str(lv), shape=data.shape, chunks=(8, 8, 8), dtype="uint16")[...] = data
        views.append(FusionView(image_from_zarr(zarr.open_group(str(tmp_path / f"v{k}"), mode="r")), pose, size, k))
    return views


CASES = [dict(overlap_strategy="avg_blend"), dict(overlap_strategy="max"),
         dict(overlap_strategy="content_based", content_sigma1=(1.5, 1.5, 1.0), content_sigma2=(2.0, 2.0, 1.5)),
         dict(overlap_strategy="avg_blend", voxel_size=(2.0, 2.0, 2.0))]  # level 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_plan_lists_the_reads_fusion_makes(tmp_path, case):
    views = _views(tmp_path)
    params = FusionParams(**case)
    grid = make_output_grid(views, params.voxel_size)
    log = []
    for v in views:
        orig = v.source.read
        v.source.read = (lambda orig, vid: lambda box, level=0: (log.append((vid, level, tuple(box))), orig(box, level))[1])(orig, v.view_id)
    for b in plan_blocks(grid.shape_zyx, (9, 16, 16), (1, 1, 1)):
        log.clear()
        fuse_block_float(b, grid, views, params)
        planned = [(v.view_id, lv, tuple(tuple(int(x) for x in ab) for ab in box))
                   for v, lv, box in block_reads(b, grid, views, params)]
        assert [(vid, lv, tuple(tuple(int(x) for x in ab) for ab in box)) for vid, lv, box in log] == planned


# content_based units go view by view instead (fuse_unit_float), with no chunk reuse planned.
@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: c["overlap_strategy"])
def test_reuse_decodes_each_chunk_once_and_changes_nothing(tmp_path, case, monkeypatch):
    views = _views(tmp_path)
    params = FusionParams(block_size=(16, 16, 16), chunks=(16, 16, 16), **case)
    grid = make_output_grid(views, params.voxel_size)
    units = plan_work_units(grid.shape_zyx, params, (16, 16, 16))  # 2 x 2 x 1 blocks each
    assert max(len(u) for u in units) == 4
    made = []

    def spy(*a, **k):
        r = spy.__wrapped__(*a, **k)
        made.append(r)
        return r

    spy.__wrapped__ = writer_mod.unit_chunk_reuse
    monkeypatch.setattr(writer_mod, "unit_chunk_reuse", spy)
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=grid.shape_zyx, chunks=(16, 16, 16), dtype="uint16")
    saved = 0
    for unit in units:
        made.clear()
        fuse_to_zarr(views, grid, params, out, blocks=unit)
        reads = [(v, lv, box) for b in unit for v, lv, box in block_reads(b, grid, views, params)]
        keys = [k for v, lv, box in reads for k, _ in v.source.levels[lv].chunk_keys(box)]
        if len(unit) == 1:
            assert made == []
            continue
        (reuse,) = made
        if reuse is None:
            assert len(set(keys)) == len(keys), "no reuse object although blocks share chunks"
            continue
        # Capacity (one block's chunks) suffices for a 2 x 2 unit: each chunk decoded once.
        assert reuse.decodes == len(set(keys))
        saved += len(keys) - len(set(keys))
    assert saved > 0
    ref = zarr.create_array(str(tmp_path / "r.zarr"), shape=grid.shape_zyx, chunks=(16, 16, 16), dtype="uint16")
    with general_path_only():
        for unit in units:
            fuse_to_zarr(views, grid, params, ref, blocks=unit)
    got, want = out[...], ref[...]
    assert np.count_nonzero(want) > 0.5 * want.size
    np.testing.assert_array_equal(got, want)


def test_many_blocks_per_unit_stay_within_one_blocks_chunks(tmp_path, monkeypatch):
    """With more blocks than the capacity covers, reuse is partial but memory stays bounded."""
    import rhapso_core.io.chunk_reuse as cr

    views = _views(tmp_path)
    params = FusionParams(block_size=(16, 16, 16), chunks=(16, 16, 16))
    grid = make_output_grid(views, params.voxel_size)
    blocks = plan_blocks(grid.shape_zyx, (16, 16, 16), (16, 16, 16))
    peak, made = [0], []
    orig_offer = cr.ChunkReuse.offer

    def offer(self, key, chunk):
        orig_offer(self, key, chunk)
        peak[0] = max(peak[0], self.kept_bytes)
        assert self.kept_bytes <= self.capacity_bytes
        if self not in made:
            made.append(self)

    monkeypatch.setattr(cr.ChunkReuse, "offer", offer)
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=grid.shape_zyx, chunks=(16, 16, 16), dtype="uint16")
    fuse_to_zarr(views, grid, params, out, blocks=blocks)
    (reuse,) = made
    reads = [(v, lv, box) for b in blocks for v, lv, box in block_reads(b, grid, views, params)]
    keys = [k for v, lv, box in reads for k, _ in v.source.levels[lv].chunk_keys(box)]
    assert len(set(keys)) < reuse.decodes < len(keys)
    assert 0 < peak[0] <= reuse.capacity_bytes


@pytest.mark.parametrize("sigmas,voxel", [((3.0, 6.0), None), ((1.5, 2.0), None), ((2.0, 3.0), (2.0, 2.0, 2.0))],
                         ids=["halo-27-shared", "halo-8", "level1"])
def test_content_based_unit_filters_each_view_once_with_the_same_bytes(tmp_path, monkeypatch, sigmas, voxel):
    """A content_based unit goes view by view: a view whose blocks' grown boxes overlap enough
    is read and filtered once on their bounding box, and every byte is that of fusing each
    block alone. One view has an intensity map (cells in x, y and z, and a flat-field):
    shared like the others, because a mapped voxel's value does not depend on its box.
    Tolerance: none."""
    from dataclasses import replace

    import rhapso_core.fusion.fuse as fuse_mod
    from rhapso_core.fusion.fuse import fuse_block
    from rhapso_core.intensity.model import FlatField, ViewIntensity

    views = _views(tmp_path)
    rng = np.random.default_rng(2)
    views[1] = replace(views[1], intensity=ViewIntensity(views[1].size_xyz, rng.uniform(0.5, 2.0, (2, 2, 3)),
                                                         rng.uniform(-500.0, 500.0, (2, 2, 3)),
                                                         FlatField(2, (-0.1, 0.02, -0.12), 90.0)))
    params = FusionParams(block_size=(16, 16, 16), chunks=(16, 16, 16), output_dtype="float32", voxel_size=voxel,
                          overlap_strategy="content_based", content_sigma1=sigmas[0], content_sigma2=sigmas[1])
    grid = make_output_grid(views, params.voxel_size)
    units = plan_work_units(grid.shape_zyx, params, (16, 16, 16))
    filtered = []
    orig = fuse_mod.content_weights

    def counting(src, s1, s2):
        filtered.append(src.size)
        return orig(src, s1, s2)

    monkeypatch.setattr(fuse_mod, "content_weights", counting)
    read_boxes = []
    orig_pixels = fuse_mod._view_pixels
    monkeypatch.setattr(fuse_mod, "_view_pixels", lambda v, lv, box: (
        read_boxes.append((v.view_id, tuple(map(tuple, box)))), orig_pixels(v, lv, box))[1])
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=grid.shape_zyx, chunks=(16, 16, 16), dtype="float32")
    per_block_voxels = 0
    planned = []
    for unit in units:
        fuse_to_zarr(views, grid, params, out, blocks=unit)
        reads = [(v.view_id, tuple(map(tuple, box))) for b in unit for v, _, box in block_reads(b, grid, views, params)]
        planned += reads
        per_block_voxels += sum(int(np.prod([e - a for a, e in box])) for _, box in reads)
    if sigmas == (3.0, 6.0):  # every view read fewer times than block by block, the mapped one (1) too
        for vid in {v for v, _ in planned}:
            assert len([r for r in read_boxes if r[0] == vid]) < len([r for r in planned if r[0] == vid]), vid
    # Each read filtered once; never more than block by block, and with halo 27 on views of
    # 40 x 36 x 18 far less.
    assert sum(filtered) == sum(int(np.prod([e - a for a, e in box])) for _, box in read_boxes)
    assert sum(filtered) <= per_block_voxels

    def voxels(rs):
        return sum(int(np.prod([e - a for a, e in box])) for _, box in rs)

    if sigmas == (3.0, 6.0):
        assert voxels(read_boxes) < 0.6 * voxels(planned), (voxels(read_boxes), voxels(planned))
    monkeypatch.setattr(fuse_mod, "content_weights", orig)
    want = np.zeros(grid.shape_zyx, np.float32)
    for b in plan_blocks(grid.shape_zyx, (16, 16, 16), (16, 16, 16)):
        want[tuple(slice(a, e) for a, e in b)] = fuse_block(b, grid, views, params)
    assert np.count_nonzero(want) > 0.5 * want.size
    assert out[...].tobytes() == want.tobytes()


@pytest.mark.parametrize("strategy", ["avg_blend", "content_based"])
def test_a_units_peak_memory_stays_within_its_cost(tmp_path, strategy):
    """The memory hint of a unit (rhapso_core.cost.fusion_unit_memory) bounds what fusing it
    allocates (traced by tracemalloc: NumPy's buffers and Python's objects), including
    content_based's view-by-view accumulators of every block."""
    import tracemalloc

    from rhapso_core.cost import fusion_block_memory, fusion_unit_memory

    views = _views(tmp_path, scale=3)  # 120 x 108 x 54 voxels, so that buffers outweigh bookkeeping
    params = FusionParams(block_size=(48, 48, 48), chunks=(48, 48, 48), overlap_strategy=strategy,
                          content_sigma1=2.0, content_sigma2=4.0)
    grid = make_output_grid(views, params.voxel_size)
    unit = max(plan_work_units(grid.shape_zyx, params, (48, 48, 48)), key=len)
    assert len(unit) == 4
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=grid.shape_zyx, chunks=(48, 48, 48), dtype="uint16")
    fuse_to_zarr(views, grid, params, out, blocks=unit, skip_existing=False)  # compile and caches outside
    tracemalloc.start()
    try:
        fuse_to_zarr(views, grid, params, out, blocks=unit, skip_existing=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    hint = fusion_unit_memory(unit, params)
    per_block = max(fusion_block_memory([b - a for a, b in box], params) for box in unit)
    # Measured: avg_blend 1.8 of 2.6 MB; content_based 7.7 of 22.3 MB (the views here are
    # smaller than a unit plus its halo, so the boxes are clipped and the bound is loose).
    assert peak <= hint, (peak, hint)
    # content_based's hint counts all the unit's accumulators and a box over the unit.
    assert (hint > per_block) == (strategy == "content_based")


def test_content_based_given_all_blocks_fuses_one_unit_at_a_time(tmp_path, monkeypatch):
    """fuse_to_zarr without ``blocks`` (every block of the output) holds one work unit's
    accumulators at a time, not the whole output's, and writes the same bytes."""
    from rhapso_core.fusion.fuse import fuse_block

    views = _views(tmp_path)
    params = FusionParams(block_size=(16, 16, 16), chunks=(16, 16, 16), output_dtype="float32",
                          overlap_strategy="content_based", content_sigma1=1.5, content_sigma2=2.0)
    grid = make_output_grid(views, params.voxel_size)
    units = plan_work_units(grid.shape_zyx, params, (16, 16, 16))
    assert len(units) > 2
    groups = []
    orig = writer_mod.fuse_unit_float

    def spy(boxes, *a, **k):
        groups.append(sorted(tuple(map(tuple, b)) for b in boxes))
        return orig(boxes, *a, **k)

    monkeypatch.setattr(writer_mod, "fuse_unit_float", spy)
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=grid.shape_zyx, chunks=(16, 16, 16), dtype="float32")
    written = fuse_to_zarr(views, grid, params, out)
    assert sorted(groups) == sorted(sorted(tuple(map(tuple, b)) for b in u) for u in units)
    assert len(written) == sum(len(u) for u in units)
    want = np.zeros(grid.shape_zyx, np.float32)
    for b in plan_blocks(grid.shape_zyx, (16, 16, 16), (16, 16, 16)):
        want[tuple(slice(a, e) for a, e in b)] = fuse_block(b, grid, views, params)
    assert out[...].tobytes() == want.tobytes()
