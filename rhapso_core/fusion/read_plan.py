"""What a work unit will read, before it reads: so each input chunk is decoded once per unit.

:func:`block_reads` lists, for one output block, the ``(view, level, box)`` reads that
:func:`rhapso_core.fusion.fuse.fuse_block_float` makes, in its order (same level choice,
same box, grown by the content filters' halo for ``content_based``);
``tests/fusion/test_read_plan.py`` checks the two agree. :func:`unit_chunk_reuse` turns a
unit's blocks into a :class:`~rhapso_core.io.chunk_reuse.ChunkReuse` over the chunks those
reads decode (for sources that say which: zarr levels read directly; others read as
before).
"""

from __future__ import annotations

from collections.abc import Sequence

from rhapso_core.fusion.fuse import choose_level, view_box
from rhapso_core.fusion.geometry import FusionView, OutputGrid
from rhapso_core.fusion.params import FusionParams
from rhapso_core.image_source import Box
from rhapso_core.io.chunk_reuse import ChunkReuse, step_capacity

__all__ = ["block_reads", "unit_chunk_reuse"]


def block_reads(
    out_box_zyx: Box, grid: OutputGrid, views: Sequence[FusionView], params: FusionParams
) -> list[tuple[FusionView, int, Box]]:
    """``(view, level, level box (z, y, x))`` that fusing ``out_box_zyx`` reads, in order."""
    if any(b <= a for a, b in out_box_zyx):
        return []
    out = []
    for view in sorted(views, key=lambda v: v.view_id):
        level = choose_level(view, grid)
        box = view_box(out_box_zyx, grid, view, level, params)
        if box is not None:
            out.append((view, level, box))
    return out


def _chunk_keys(view: FusionView, level: int, box: Box) -> list[tuple[str, int]]:
    levels = getattr(view.source, "levels", None)
    reader = levels[level] if levels is not None and level < len(levels) else None
    keys = getattr(reader, "chunk_keys", None)
    return (keys(box) or []) if keys is not None else []


def unit_chunk_reuse(
    blocks: Sequence[Box], grid: OutputGrid, views: Sequence[FusionView], params: FusionParams
) -> ChunkReuse | None:
    """Chunk reuse across the blocks of one work unit (step ``i`` = ``blocks[i]``), holding
    at most what one block decodes; None when no chunk is read by two blocks."""
    steps = [
        [k for view, level, box in block_reads(b, grid, views, params) for k in _chunk_keys(view, level, box)]
        for b in blocks
    ]
    seen: set[str] = set()
    shared = False
    for s in steps:
        keys = {k for k, _ in s}
        if keys & seen:
            shared = True
            break
        seen |= keys
    if not shared:
        return None
    return ChunkReuse([[k for k, _ in s] for s in steps], step_capacity(steps))
