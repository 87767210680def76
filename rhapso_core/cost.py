"""What one task of each stage costs: the single formula the flows' resource hints and the planner share.

The flows ask Ray for ``memory`` per task from these functions (:mod:`flows.alignment`,
:mod:`flows.fusion`), and :func:`rhapso_core.planner.plan` predicts the same numbers from
the XML alone (adding the worker process's baseline, which Ray does not reserve per task),
so ``rhapso plan`` sizes a cluster by what the flows will actually submit. Task counts come
from the same planning functions too: detection chunks (:func:`~rhapso_core.detection.view.plan_detection`),
fusion work units, pyramid blocks, and :func:`matching_batch_count` for the pair batches a
matching round submits (:func:`batch_pairs` deals them). Matching memory depends on how many
points detection finds: the flow sizes each batch from the points stored with
:func:`stored_batch_memory`; the planner does the same when the points are stored already
and otherwise applies :func:`matching_batch_memory` to its estimate of them.

Memory is in bytes of the task's arrays (its working set), not of the process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "BATCHES_PER_SLOT",
    "MIN_PAIRS_PER_BATCH",
    "MIN_TASK_MEMORY",
    "reserved_memory",
    "matching_batch_count",
    "batch_pairs",
    "stored_batch_memory",
    "MATCH_BYTES_PER_POINT",
    "matching_batch_memory",
    "detection_chunk_memory",
    "fusion_block_memory",
    "fusion_unit_memory",
    "fusion_unit_memory_from_sides",
    "content_filter_taps",
    "output_itemsize",
    "downsample_block_memory",
    "solve_memory",
]

Box = Sequence[tuple[int, int]]

# A few batches per worker slot keep every worker busy while the slowest batch stays short
# (one task per pair spends most of a small cluster on orchestration).
BATCHES_PER_SLOT = 4

#: Fewest pairs in a batch while there are enough for every slot. A task run costs tens of
#: milliseconds of CPU in orchestration (a 6-tile stitch, 2026-12-07: the command spent 1.9 s and
#: the API server 2.5 s of CPU beside the stages' work, for 54 task runs, 5 flow runs and 29
#: artifacts), about what a pair's matching costs (20-50 ms there, 50 ms on the 1 GB benchmark's
#: tiles; more with more points), so a task of one or two pairs was half orchestration. A 6-tile
#: stitch (11 pairs, 2 slots) now submits 2 batches a round instead of 8 (fresh process: 8.75-8.89 s
#: against 9.05-10.03 s, three runs each alternated). On a 4 x 3 x 1 grid (6 batches a round
#: against 8) and a 3 x 3 x 2 one (8 either way) the outputs were identical and the matching times
#: equal (docs/benchmarks.md, ninth measurement); grids with 16 pairs a slot or more are batched
#: as before.
MIN_PAIRS_PER_BATCH = 4


# Ray's memory reservation is never below this (bytes): small tasks still allocate buffers.
MIN_TASK_MEMORY = 64 * 1024**2


def reserved_memory(memory_bytes: float) -> int:
    """The memory Ray is asked to reserve for a task whose working set is ``memory_bytes``."""
    return int(max(memory_bytes, MIN_TASK_MEMORY))


def matching_batch_count(n_pairs: int, slots: int, batches_per_slot: int = BATCHES_PER_SLOT) -> int:
    """Tasks one matching round submits for ``n_pairs`` pairs on ``slots`` worker slots (CPUs): the
    same number for every slot, at most ``batches_per_slot`` each, and no more than keep
    :data:`MIN_PAIRS_PER_BATCH` pairs in a batch while there are that many for every slot (never
    more batches than pairs)."""
    n_pairs, slots = int(n_pairs), max(1, int(slots))
    per_slot = min(int(batches_per_slot), max(1, n_pairs // (slots * MIN_PAIRS_PER_BATCH)))
    return min(n_pairs, slots * per_slot)


def batch_pairs(pairs: list, slots: int, batches_per_slot: int = BATCHES_PER_SLOT) -> list[list]:
    """Deal ``pairs`` round-robin into :func:`matching_batch_count` batches.

    A pair is tens of milliseconds of work on a typical tile (the benchmark's 1 GB dataset:
    0.05 s), less than what Prefect and Ray spend scheduling one task, so one task per pair
    spends most of a small cluster on orchestration. A few batches per worker keep every
    worker busy while the slowest batch stays short. Round-robin spreads costly pairs
    (many points) over the batches.
    """
    n = matching_batch_count(len(pairs), slots, batches_per_slot)
    return [pairs[i::n] for i in range(n)]


# What a matching task holds per interest point of a pair's two views: x y z float64, the id
# and the descriptors of its ~3 nearest neighbours.
MATCH_BYTES_PER_POINT = 200


def matching_batch_memory(pair_points: Iterable[tuple[float, float]]) -> float:
    """A batch's memory from its pairs' point counts ((points of view a, of view b) each): its
    largest pair's, since a batch matches its pairs one after another. The flow counts the
    points stored; the planner, which runs before detection, its estimate of them."""
    return float(max((a + b for a, b in pair_points), default=0)) * MATCH_BYTES_PER_POINT


def stored_batch_memory(batch: Sequence, points: Mapping) -> float:
    """A batch of view pairs' memory from their views' stored point counts (``points``:
    :func:`rhapso_core.pipeline.match.stored_point_counts`; a view without points counts 0)."""
    return matching_batch_memory((points.get(tuple(a), 0), points.get(tuple(b), 0)) for a, b in batch)


def detection_chunk_memory(core_box: Box, halo_zyx: Sequence[int]) -> float:
    """About 6x the float32 size of a chunk read with its halo (the detection benchmark's bound).

    ``core_box`` is the chunk's working-grid box ((z0, z1), (y0, y1), (x0, x1)); ``halo_zyx``
    the detector's halo (:func:`~rhapso_core.detection.view.chunk_halo`).
    """
    n = 1
    for (a, b), h in zip(core_box, halo_zyx):
        n *= (b - a) + 2 * h
    return 6.0 * 4.0 * n


def _content_margin(params) -> tuple[int, int, int]:
    if params.overlap_strategy != "content_based":
        return (0, 0, 0)
    import numpy as np

    from rhapso_core.fusion.content import halo_voxels

    return halo_voxels(np.asarray(params.content_sigma1[::-1]), np.asarray(params.content_sigma2[::-1]))


def fusion_block_memory(sides_zyx: Sequence[int], params) -> float:
    """One output block's accumulators and output (about 10 bytes per voxel) plus one view's source
    box at a time (float32, 2 voxels of interpolation margin, grown by the content-based filters'
    margin when used). ``params``: :class:`~rhapso_core.fusion.FusionParams`."""
    margin = _content_margin(params)
    out = float(math.prod(int(s) for s in sides_zyx))
    src = float(math.prod(int(s) + 2 * int(m) + 2 for s, m in zip(sides_zyx, margin)))
    return 10 * out + 4 * 3 * src


def fusion_unit_memory_from_sides(block_sides_zyx: Sequence[int], unit_sides_zyx: Sequence[int], params) -> float:
    """A work unit's memory from the sides of its largest block and of its bounding box.

    Blocks are fused one after another (:func:`fusion_block_memory` of the largest), except
    ``content_based`` units of more than one block, fused view by view
    (:func:`rhapso_core.fusion.fuse.fuse_unit_float`): every block's accumulators (8 bytes
    per unit voxel), one block's output, and one view's box at a time, at most the unit's
    bounding box grown by the filters' margin (12 bytes per voxel, as
    :func:`fusion_block_memory` counts a source box: the pixels, the weights, one spare)."""
    block = [int(s) for s in block_sides_zyx]
    unit = [int(s) for s in unit_sides_zyx]
    if params.overlap_strategy != "content_based" or unit == block:
        return fusion_block_memory(block, params)
    margin = _content_margin(params)
    src = float(math.prod(s + 2 * int(m) + 2 for s, m in zip(unit, margin)))
    return 8 * float(math.prod(unit)) + 2 * float(math.prod(block)) + 4 * 3 * src


def fusion_unit_memory(boxes: Sequence[Box], params) -> float:
    """A work unit's memory (:func:`fusion_unit_memory_from_sides` of its blocks)."""
    if not boxes:
        return 0.0
    sides = [[b - a for a, b in box] for box in boxes]
    per_block = max(fusion_block_memory(s, params) for s in sides)
    if len(boxes) == 1:
        return per_block
    unit = [max(box[k][1] for box in boxes) - min(box[k][0] for box in boxes) for k in range(3)]
    return max(per_block, fusion_unit_memory_from_sides(max(sides, key=math.prod), unit, params))


def content_filter_taps(views, grid, params, unit_sides_zyx: Sequence[int]) -> float:
    """Voxel-taps of ``content_based``'s Gaussians over a whole fusion (one fused image).

    Each view is filtered once per work unit its output footprint meets
    (:func:`rhapso_core.fusion.fuse.fuse_unit_float`), on the unit's part of the view grown by
    the filters' halo and clipped to the view; per filtered voxel, the taps of both
    separable Gaussians (the symmetric loops: radius + 1 per axis and filter). Counted per
    axis, not per unit (a rotated view's footprint is its bounding box), so it is an
    estimate: 0.98-0.99 of what fusion filtered in ``tests/fusion/test_content_cost.py``
    (tolerated there: 20 %).
    ``params``: :class:`~rhapso_core.fusion.FusionParams`; ``views``: ``FusionView``s whose
    sources know their level shapes."""
    import numpy as np

    from rhapso_core import transforms as tf
    from rhapso_core.fusion.content import filter_taps, halo_voxels, level_sigmas
    from rhapso_core.fusion.fuse import choose_level
    from rhapso_core.fusion.geometry import output_to_view

    unit = np.asarray(unit_sides_zyx, np.float64)
    shape = np.asarray(grid.shape_zyx, np.float64)
    total = 0.0
    for view in views:
        level = choose_level(view, grid)
        s1, s2 = level_sigmas(view, level, params)
        taps = filter_taps(s1, s2)
        halo = np.asarray(halo_voxels(s1, s2), np.float64)
        level_shape = np.asarray(view.source.level_shape(level), np.float64)
        m = output_to_view(grid, view)
        lo_xyz, hi_xyz = tf.view_bounding_box(np.linalg.inv(m), view.size_xyz)  # in output voxels
        lo = np.clip(lo_xyz[::-1], 0, shape)
        hi = np.clip(hi_xyz[::-1], 0, shape)
        # View level voxels per output voxel along each output axis.
        per_out = np.linalg.norm(m[:3, :3], axis=0)[::-1] / np.asarray(view.source.level_factors(level), np.float64)
        # Per axis, the sum over the units met of the unit's part of the footprint, in level
        # voxels from the footprint's low edge, padded as source_box pads (1 + 2), grown by
        # the halo and clipped to the view; the product of the three sums is the sum over
        # the units of their boxes.
        sums = []
        for k in range(3):
            edges = np.arange(np.floor(lo[k] / unit[k]) * unit[k], hi[k], unit[k])
            a = (np.maximum(edges, lo[k]) - lo[k]) * per_out[k] - 1 - halo[k]
            b = (np.minimum(edges + unit[k], hi[k]) - lo[k]) * per_out[k] + 2 + halo[k]
            sums.append(float((np.minimum(b, level_shape[k]) - np.maximum(a, 0.0)).sum()))
        total += float(np.prod(sums)) * taps
    return total


def output_itemsize(output_dtype: str) -> int:
    """Bytes per voxel of the fused image's dtype."""
    return {"float32": 4, "uint8": 1}.get(output_dtype, 2)


def downsample_block_memory(block: Box, factor_zyx: Sequence[int], itemsize: int) -> float:
    """A pyramid block's source region and its result (twice the source's bytes)."""
    return 2.0 * itemsize * float(math.prod((b - a) * int(f) for (a, b), f in zip(block, factor_zyx)))


def solve_memory(n_links: int, n_views: int) -> float:
    """The global solve's working set, about 2,000 matches of 48 bytes per link and 4 kB per view.

    The solve runs in the flow's own process (not submitted to Ray), so no task reserves it:
    the planner reports it so that the head node is sized for it.
    """
    return float(n_links) * 2000 * 48 + float(n_views) * 4096
