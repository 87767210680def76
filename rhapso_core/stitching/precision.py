"""A phase-correlation shift with its precision, measured from the overlap itself.

The shift of a pair's overlap (:func:`rhapso_core.stitching.pairwise.correlate_views`'s
measurement, one correlation at one level, no finer refinement) comes with no error bar.
Its precision is measured here from the data: the crops are cut into blocks (halves of
their two longest axes), the normalised cross-correlation peak is fitted again in each
block starting from the whole crop's shift, and the spread of the block shifts gives
the standard error of their mean, which the whole crop's shift estimates (each block
sees its own noise and its own part of the specimen). Frames as in
:mod:`rhapso_core.stitching.pairwise`: world x, y, z; shifts say how view ``b`` must move
relative to ``a``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rhapso_core.image_source import ImageSource
from rhapso_core.stitching.blocks import refit_block
from rhapso_core.stitching.pairwise import _crops, choose_level, overlap_box
from rhapso_core.stitching.params import StitchingParams
from rhapso_core.stitching.peak_fit import locking_bias
from rhapso_core.stitching.phase import phase_correlate
from rhapso_core.stitching.records import PhaseLink, registration_hash

__all__ = ["PhaseShift", "phase_shift_with_precision", "block_slices"]

BLOCK_SPLITS = 2  # halves along each of the two longest crop axes: 4 blocks, 3 degrees of freedom per axis


@dataclass(frozen=True)
class PhaseShift:
    """A pair's phase-correlation link and the standard error of its shift (world x, y, z).

    ``sd_xyz`` is NaN on an axis the blocks could not measure (fewer than two blocks
    fitted); 0 on an axis the crops are flat along (a single plane: not measured).
    ``n_blocks``: blocks whose peak was fitted.
    """

    link: PhaseLink
    sd_xyz: tuple[float, float, float]
    n_blocks: int
    # The sub-voxel fit's pull toward the integer shift (rhapso_core.stitching.peak_fit; world units, the
    # estimate minus the true shift), which every block shares; NaN where not measured.
    bias_xyz: tuple[float, float, float] = (float("nan"),) * 3
    lock_xyz: tuple[float, float, float] = (float("nan"),) * 3  # a bound of that pull (world units)


def block_slices(shape: tuple[int, ...], splits: int = BLOCK_SPLITS, min_len: int = 8) -> list[tuple[slice, ...]]:
    """Blocks of an array: its two longest axes (at least ``2 min_len`` long) cut into ``splits`` parts."""
    order = sorted(range(len(shape)), key=lambda a: -shape[a])
    cut = [a for a in order[:2] if shape[a] >= splits * min_len]
    blocks: list[tuple[slice, ...]] = [tuple(slice(0, n) for n in shape)]
    for a in cut:
        edges = np.linspace(0, shape[a], splits + 1).round().astype(int)
        blocks = [b[:a] + (slice(int(lo), int(hi)),) + b[a + 1:] for b in blocks
                  for lo, hi in zip(edges[:-1], edges[1:])]
    return blocks if cut else []


def phase_shift_with_precision(
    view_a, src_a: ImageSource, a2w: np.ndarray, size_a,
    view_b, src_b: ImageSource, b2w: np.ndarray, size_b,
    params: StitchingParams, near_xyz=None, reach: float | None = None,
) -> PhaseShift:
    """Phase-correlate the overlap at ``params.level`` (no refinement) and measure the shift's precision.

    The link's status follows ``params``' filters (``min_r``, ``max_r``, ``max_shift_*``) as
    :func:`~rhapso_core.stitching.pairwise.correlate_views` sets it. ``near_xyz`` / ``reach``:
    only candidate shifts within ``reach`` (world units, per axis) of ``near_xyz`` are verified
    (None: every candidate); each verification is a normalised cross-correlation over the crop.
    """
    t0 = time.perf_counter()
    a2w = np.asarray(a2w, dtype=np.float64)
    b2w = np.asarray(b2w, dtype=np.float64)
    h = registration_hash(a2w, b2w)
    nan3 = (float("nan"),) * 3
    box = overlap_box(a2w, size_a, b2w, size_b)

    def done(shift, r, status, reason, level, shape, sd=nan3, n=0, bias=nan3, bound=nan3) -> PhaseShift:
        lo, hi = (nan3, nan3) if box is None else (tuple(map(float, box[0])), tuple(map(float, box[1])))
        link = PhaseLink(tuple(view_a), tuple(view_b), tuple(float(v) for v in shift), float(r), lo, hi, h,
                         int(level), None, tuple(shape), status, reason, time.perf_counter() - t0)
        return PhaseShift(link, tuple(float(v) for v in sd), n, tuple(float(v) for v in bias),
                          tuple(float(v) for v in bound))

    if box is None:
        return done(nan3, float("nan"), "no_overlap", "boxes do not overlap under the current registrations",
                    0, (0, 0, 0))
    if params.level == "auto":
        level = choose_level(src_a, a2w, box[0], box[1], params.min_overlap_voxels)
    else:
        level = min(int(params.level), src_a.n_levels - 1)
    crops = _crops(src_a, a2w, src_b, b2w, box[0], box[1], level, params.max_crop_voxels)
    if crops is None:
        return done(nan3, float("nan"), "no_overlap", "the overlap is empty on the views' grids", level, (0, 0, 0))
    ca, cb, c2w, d = crops
    shape_xyz = tuple(int(v) for v in ca.shape[::-1])
    lin = c2w[:3, :3]
    d = np.where(np.asarray(shape_xyz) > 1, d, 0.0)

    def to_world(s_zyx) -> np.ndarray:
        return lin @ (np.asarray(s_zyx, dtype=np.float64)[::-1] + d)

    def accept(s) -> bool:
        w = to_world(s)
        if near_xyz is not None and reach is not None and np.any(np.abs(w - np.asarray(near_xyz)) > reach):
            return False
        return params.max_shift_ok(w)

    res = phase_correlate(ca, cb, peaks_to_check=params.peaks_to_check,
                          min_overlap_fraction=params.min_overlap_fraction, subpixel=True,
                          apodization=params.apodization, accept=accept)
    if res is None:
        return done(nan3, float("nan"), "failed", "no verifiable correlation peak", level, shape_xyz)
    shift = to_world(res.shift)
    s_int = np.round(np.asarray(res.shift)).astype(np.int64)

    # Each block: the NCC peak fitted again from the whole crop's integer shift (as a phase link's
    # blocks are, rhapso_core.stitching.blocks; with this module's own cuts, which its calibration rests on).
    fa, fb = ca.astype(np.float32), cb.astype(np.float32)
    world = []
    for sl in block_slices(fa.shape):
        if min(fa[sl].shape) < 1:
            continue
        fit = refit_block(fa[sl], fb[sl], s_int, None, params.min_overlap_fraction)
        if fit is not None:
            world.append(to_world(fit[1]))
    flat = np.asarray(shape_xyz) <= 1
    # The sub-voxel fit's pull toward the integer: shared by every block (same grid, same offset).
    bias, bound = locking_bias(fa, fb, s_int, estimate=res.shift)
    bias_xyz, bound_xyz = lin @ bias[::-1], np.abs(lin) @ bound[::-1]
    if len(world) >= 2:
        sd = np.std(np.asarray(world), axis=0, ddof=1) / np.sqrt(len(world))
    else:
        sd = np.full(3, np.nan)
    sd = np.where(flat, 0.0, sd)
    bias_xyz, bound_xyz = np.where(flat, 0.0, bias_xyz), np.where(flat, 0.0, bound_xyz)
    r = float(res.r)
    if not params.max_shift_ok(shift):
        status, reason = "too_far", "shift beyond max_shift_xyz / max_shift_total"
    elif r < params.min_r:
        status, reason = "low_r", f"r {r:.3f} < min_r {params.min_r}"
    elif r > params.max_r:
        status, reason = "high_r", f"r {r:.3f} > max_r {params.max_r}"
    else:
        status, reason = "ok", ""
    return done(shift, r, status, reason, level, shape_xyz, sd, len(world), bias_xyz, bound_xyz)
