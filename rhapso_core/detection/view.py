"""Detection over a view (or a region of it) read through an :class:`ImageSource`.

Grids and frames
----------------
* *Full-resolution view voxels* (x y z order in all public coordinates): voxel centres on
  integers, the frame of the returned points.
* *Level* grid: a pyramid level of the source with integer factors ``f_l`` (z, y, x).
* *Working* grid: the level averaged in memory over blocks of ``m`` (z, y, x) voxels,
  a partial block at the far edge dropped. The total factor is ``F = f_l * m`` and
  working voxel ``i`` has its centre at full-res ``F * i + (F - 1) / 2`` (mean
  downsampling; levels compose the same way), which is how points are mapped back.

Chunk invariance: a chunk's *core* (working-grid box) owns the candidates whose integer
extremum lies in it. The chunk is read with a halo of
``median radius (xy) + Gaussian radii + MAX_MOVES + 1`` working voxels, which covers every
input any DoG value needed by the extremum test or by localisation can depend on, and
the arithmetic is done in the same order everywhere, so one chunk or many give the same
points to rounding (in practice bit-identical).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rhapso_core.detection._downsample import block_sum
from rhapso_core.detection.merge import combine_close, merge_points
from rhapso_core.detection.params import DetectionParams
from rhapso_core.detection.registry import get_detector
from rhapso_core.detection.planes import resolve_dimensions
from rhapso_core.detection.points import InterestPoints
from rhapso_core.image_source import ArraySource, Box, ImageSource

__all__ = [
    "DetectionError",
    "ChunkTask",
    "DetectionPlan",
    "choose_level",
    "resolve_intensity_range",
    "region_to_working_box",
    "split_box",
    "chunk_halo",
    "plan_detection",
    "detect_chunk",
    "detect_view",
    "detect_dog",
    "border_margin_xyz",
]


class DetectionError(ValueError):
    """Bad input to detection (one line naming the parameter or box)."""


@dataclass(frozen=True)
class ChunkTask:
    """One independent unit of detection work.

    ``core_box`` is half-open ((z0, z1), (y0, y1), (x0, x1)) in the working grid;
    ``region_index`` says which region (view or overlap box) it belongs to.
    """

    level: int
    in_memory_factor: tuple[int, int, int]
    core_box: Box
    region_index: int


@dataclass(frozen=True)
class DetectionPlan:
    """Everything the chunk tasks of one view need, fixed before any of them runs."""

    params: DetectionParams  # min/max intensity resolved
    level: int
    in_memory_factor: tuple[int, int, int]
    total_factor: tuple[int, int, int]  # (z, y, x)
    regions_xyz: list[np.ndarray]  # each (2, 3): [min, max] full-res view voxels, x y z
    tasks: list[ChunkTask]


def choose_level(source: ImageSource,
                 factors_zyx: Sequence[int]) -> tuple[int, tuple[int, int, int]]:
    """Coarsest pyramid level whose factors divide the requested ones, and the remainder.

    Parameters
    ----------
    source : ImageSource
    factors_zyx : three ints
        Requested total downsampling (z, y, x).

    Returns
    -------
    level, in_memory_factor_zyx
        ``level_factors(level) * in_memory_factor == factors_zyx`` per axis. Level 0
        (factor 1) always qualifies; among qualifying levels the one with the largest
        voxel reduction wins (ties: the lower level index).
    """
    req = tuple(int(f) for f in factors_zyx)
    best, best_red = 0, 1
    for lv in range(source.n_levels):
        f = tuple(int(v) for v in source.level_factors(lv))
        if all(fi >= 1 and r % fi == 0 for fi, r in zip(f, req)):
            red = f[0] * f[1] * f[2]
            if red > best_red:
                best, best_red = lv, red
    f = source.level_factors(best)
    return best, tuple(r // int(fi) for r, fi in zip(req, f))  # type: ignore[return-value]


def resolve_intensity_range(source: ImageSource, params: DetectionParams) -> DetectionParams:
    """Fill unset ``min_intensity`` / ``max_intensity`` from the source's coarsest level.

    Using one view-wide value (not each chunk's own range) keeps results independent of
    chunking. A constant view gets the range ``[v, v + 1]``. ``auto`` values take their
    dataset-free fallbacks first (:meth:`DetectionParams.concrete`).
    """
    params = params.concrete()
    if params.min_intensity is not None and params.max_intensity is not None:
        return params
    lv = source.n_levels - 1
    shape = source.level_shape(lv)
    data = source.read(tuple((0, int(n)) for n in shape), lv)  # type: ignore[arg-type]
    if data.size == 0:
        raise DetectionError("detection: the view's coarsest level is empty")
    lo = float(np.min(data)) if params.min_intensity is None else params.min_intensity
    hi = float(np.max(data)) if params.max_intensity is None else params.max_intensity
    if not hi > lo:
        hi = lo + 1.0
    return params.model_copy(update={"min_intensity": lo, "max_intensity": hi})


def working_shape(source: ImageSource, level: int, m: Sequence[int]) -> tuple[int, int, int]:
    return tuple(int(n) // int(f) for n, f in zip(source.level_shape(level), m))  # type: ignore


def region_to_working_box(region_xyz, total_factor_zyx: Sequence[int],
                          work_shape_zyx: Sequence[int]) -> Box:
    """Working-grid voxels whose centres lie in a full-res region (inclusive bounds).

    Parameters
    ----------
    region_xyz : (2, 3) array-like or None
        [[xmin, ymin, zmin], [xmax, ymax, zmax]] in full-resolution view voxels; a
        working voxel belongs to the region when its centre ``F i + (F - 1) / 2`` does.
        None: the whole view.
    """
    if region_xyz is None:
        return tuple((0, int(n)) for n in work_shape_zyx)  # type: ignore[return-value]
    r = np.asarray(region_xyz, dtype=np.float64)
    if r.shape != (2, 3) or not np.all(np.isfinite(r)):
        raise DetectionError(
            f"region_xyz must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {r.tolist()}")
    lo_zyx, hi_zyx = r[0][::-1], r[1][::-1]
    out = []
    for a in range(3):
        f = float(total_factor_zyx[a])
        c = (f - 1.0) / 2.0
        i0 = max(0, math.ceil((lo_zyx[a] - c) / f - 1e-9))
        i1 = min(int(work_shape_zyx[a]) - 1, math.floor((hi_zyx[a] - c) / f + 1e-9))
        out.append((int(i0), int(max(i1 + 1, i0))))
    return tuple(out)  # type: ignore[return-value]


def _as_box(b, name: str) -> np.ndarray:
    r = np.asarray(b, dtype=np.float64)
    if r.shape != (2, 3) or not np.all(np.isfinite(r)) or np.any(r[1] < r[0]):
        raise DetectionError(
            f"{name} must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] (full-res view voxels), "
            f"got {np.asarray(b).tolist()}")
    return r


def split_box(box: Box, n: int) -> list[Box]:
    """Split a box into ``n`` boxes by repeatedly halving the longest axis (as Rhapso).

    A count of ``n`` splits into ``n // 2`` and ``n - n // 2`` parts, cut in proportion;
    an axis shorter than the parts stops the split early (fewer, non-empty boxes).
    """
    ext = [b - a for a, b in box]
    if n <= 1 or any(e <= 0 for e in ext):
        return [box]
    ax = int(np.argmax(ext))
    if ext[ax] < 2:
        return [box]
    left = n // 2
    a, b = box[ax]
    cut = a + int(round(ext[ax] * left / n))
    cut = min(max(cut, a + 1), b - 1)
    lbox = list(box)
    rbox = list(box)
    lbox[ax] = (a, cut)
    rbox[ax] = (cut, b)
    return split_box(tuple(lbox), left) + split_box(tuple(rbox), n - left)  # type: ignore[arg-type]


def chunk_boxes(core: Box, params: DetectionParams) -> list[Box]:
    """A region's chunks: ``chunks_per_bound`` of them, or more where that keeps every chunk
    within ``max_chunk_voxels`` (memory bounded by the chunk, not the view)."""
    voxels = math.prod(max(b - a, 0) for a, b in core)
    n = max(params.chunks_per_bound, math.ceil(voxels / params.max_chunk_voxels))
    return split_box(core, n)


def chunk_halo(params: DetectionParams) -> tuple[int, int, int]:
    """Halo (z, y, x) in working voxels that makes a chunk's result exact (the detector's)."""
    return get_detector(params.method).halo(params)


def plan_detection(source: ImageSource, params: DetectionParams, region_xyz=None,
                   overlap_boxes_xyz: Sequence | None = None) -> DetectionPlan:
    """Choose the level, resolve the intensity range and cut the regions into chunk tasks.

    Parameters
    ----------
    source : ImageSource
    params : DetectionParams
    region_xyz : (2, 3) array-like, optional
        Restrict to this full-res box (see :func:`region_to_working_box`); ignored in
        ``overlap_only`` mode.
    overlap_boxes_xyz : sequence of (2, 3) array-likes
        Full-res boxes where the view overlaps other views; required when
        ``params.overlap_only`` (may be empty: nothing to detect).
    """
    params = params.concrete()
    if params.overlap_only:
        if overlap_boxes_xyz is None:
            raise DetectionError(
                "overlap_only=True needs overlap_boxes_xyz (the view's overlap boxes)")
        regions = [_as_box(b, f"overlap_boxes_xyz[{i}]") for i, b in enumerate(overlap_boxes_xyz)]
    else:
        regions = [None if region_xyz is None else _as_box(region_xyz, "region_xyz")]
    params = resolve_dimensions(params, source.level_shape(0))
    level, m = choose_level(source, params.factors_zyx())
    total = params.factors_zyx()
    wshape = working_shape(source, level, m)
    resolved = resolve_intensity_range(source, params)
    tasks: list[ChunkTask] = []
    out_regions = []
    for ri, reg in enumerate(regions):
        core = region_to_working_box(reg, total, wshape)
        if reg is None:
            reg = np.array([[-0.5] * 3, [(n * f) - 0.5 for n, f in zip(wshape[::-1], total[::-1])]])
        out_regions.append(reg)
        if any(b <= a for a, b in core):
            continue
        for box in chunk_boxes(core, params):
            tasks.append(ChunkTask(level, m, box, ri))  # type: ignore[arg-type]
    return DetectionPlan(resolved, level, m, total, out_regions, tasks)


def detect_chunk(source: ImageSource, level: int, in_memory_factor: Sequence[int],
                 core_box: Box, params: DetectionParams) -> InterestPoints:
    """Detect the points whose integer DoG extremum lies in one working-grid box.

    Parameters
    ----------
    source : ImageSource
        The view.
    level : int
        Pyramid level read.
    in_memory_factor : three ints (z, y, x)
        Block-mean factor applied after reading; total factor = level factor * this.
    core_box : ((z0, z1), (y0, y1), (x0, x1))
        Half-open box in the working grid owned by this chunk.
    params : DetectionParams
        Should have ``min_intensity`` / ``max_intensity`` resolved (see
        :func:`plan_detection`); if unset they are computed from the coarsest level here.

    Returns
    -------
    InterestPoints
        Full-res view voxel coordinates (x y z); ids are provisional (0..n-1).
    """
    params = resolve_intensity_range(source, params)
    if params.dimensions == "auto":
        params = resolve_dimensions(params, source.level_shape(0))
    two_d = params.dimensions == "2d"
    m = tuple(int(v) for v in in_memory_factor)
    if any(v < 1 for v in m):
        raise DetectionError(f"in_memory_factor must be >= 1 per axis, got {m}")
    lf = tuple(int(v) for v in source.level_factors(level))
    total = tuple(a * b for a, b in zip(lf, m))
    wshape = working_shape(source, level, m)
    halo = chunk_halo(params)
    core = tuple((max(0, int(a)), min(int(n), int(b))) for (a, b), n in zip(core_box, wshape))
    if any(b <= a for a, b in core):
        return InterestPoints.empty()
    read = tuple((max(0, a - h), min(n, b + h)) for (a, b), h, n in zip(core, halo, wshape))
    level_box = tuple((a * f, b * f) for (a, b), f in zip(read, m))
    raw = source.read(level_box, level)  # type: ignore[arg-type]
    p = m[0] * m[1] * m[2]
    lo, hi = float(params.min_intensity), float(params.max_intensity)  # type: ignore[arg-type]
    # exact integer block sums need int32 headroom; larger blocks take the float route
    integer = (np.issubdtype(raw.dtype, np.integer) and raw.dtype.itemsize <= 2
               and p * 65536 < 2**31)
    if integer:
        values = block_sum(raw, m, np.int32)  # exact sums: the median stays exact
    else:
        values = block_sum(raw, m, np.float32)
        if p > 1:
            values *= np.float32(1.0 / p)
    del raw
    vscale = 1.0 / p if integer else 1.0  # values * vscale = mean intensity
    rel = [(a - ra, b - ra) for (a, b), (ra, _) in zip(core, read)]
    loc, val, peak = get_detector(params.method).find(values, vscale, lo, hi, rel, params, two_d)
    n = loc.shape[0]
    if n == 0:
        return InterestPoints.empty()
    inten = values[peak[:, 0], peak[:, 1], peak[:, 2]].astype(np.float64) * vscale
    start = np.array([a for a, _ in read], dtype=np.float64)
    f = np.asarray(total, dtype=np.float64)
    full_zyx = f * (loc + start) + (f - 1.0) / 2.0
    return InterestPoints(np.arange(n), full_zyx[:, ::-1], inten, val)


def border_margin_xyz(params: DetectionParams, total_factor_zyx: Sequence[int]) -> tuple[float, float, float] | None:
    """Full-resolution view voxels (x, y, z) from the border within which the detector's localisation
    read voxels past the view's border (``Detector.border_margin`` on the working grid, times the
    grid's factor); None where ``exclude_border`` is off or the detector names no margin.

    z gets 0: tiles are laid side by side in x and y, and neighbours imaging the same depths
    share the bias a z border gives (a thin stack is all z border)."""
    det = get_detector(params.method)
    if params.exclude_border is not True or det.border_margin is None:
        return None
    m = float(det.border_margin(params))
    return (m * int(total_factor_zyx[2]), m * int(total_factor_zyx[1]), 0.0)


def detect_view(source: ImageSource, params: DetectionParams, region_xyz=None,
                overlap_boxes_xyz: Sequence | None = None) -> InterestPoints:
    """Detect interest points in a view (or a region, or its overlap boxes), chunk by chunk.

    Runs :func:`plan_detection`, :func:`detect_chunk` for every task and
    :func:`~rhapso_core.detection.merge.merge_points` per region (``max_spots`` applies
    per region: the view, or each overlap box). Points found in several overlapping
    boxes are then combined once more. Returned ids are 0..N-1 in (z, y, x) order.

    Parameters
    ----------
    source : ImageSource
    params : DetectionParams
    region_xyz : (2, 3) array-like, optional
        Full-res [min, max] corners (x y z, inclusive) to restrict detection to.
    overlap_boxes_xyz : sequence of (2, 3) array-likes, optional
        Required when ``params.overlap_only``.

    Examples
    --------
    >>> import numpy as np
    >>> from rhapso_core.image_source import ArraySource
    >>> zz, yy, xx = np.mgrid[:24, :40, :40]
    >>> img = (100 + 1000 * np.exp(-((xx - 20.3)**2 + (yy - 18.6)**2 + (zz - 11.8)**2) / 8))
    >>> pts = detect_view(ArraySource([img.astype(np.uint16)]), DetectionParams(dsxy=1))
    >>> np.round(pts.loc_xyz, 1).tolist()
    [[20.3, 18.6, 11.8]]
    """
    plan = plan_detection(source, params, region_xyz, overlap_boxes_xyz)
    per_region: list[list[InterestPoints]] = [[] for _ in plan.regions_xyz]
    for t in plan.tasks:
        per_region[t.region_index].append(
            detect_chunk(source, t.level, t.in_memory_factor, t.core_box, plan.params))
    merged = [merge_points(parts, plan.params, reg, renumber=False)
              for parts, reg in zip(per_region, plan.regions_xyz)]
    pts = InterestPoints.concat(merged)
    if len(merged) > 1:
        pts = combine_close(pts, plan.params.combine_distance)
    return pts.sorted_by_position().renumbered()


def detect_dog(image_zyx: np.ndarray, params: DetectionParams | None = None,
               region_xyz=None) -> InterestPoints:
    """Detect interest points in an in-memory (z, y, x) block (full resolution).

    Same as :func:`detect_view` on ``ArraySource([image_zyx])``: ``dsxy``/``dsz`` are
    applied in memory and the points are in the block's full-res voxel coordinates, x y z.
    Unset ``min_intensity``/``max_intensity`` default to the block's own range.
    """
    params = params or DetectionParams()
    a = np.asarray(image_zyx)
    if a.ndim != 3:
        raise DetectionError(f"detect_dog needs a 3D (z, y, x) array, got shape {a.shape}")
    return detect_view(ArraySource([a]), params, region_xyz)
