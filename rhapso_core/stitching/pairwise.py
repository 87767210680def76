"""Pairwise translation of two views by phase correlation over their overlap.

Frames: view registrations map view voxels (x, y, z) to the world; the overlap is the
intersection of the two views' world boxes under the current registrations. Only the
overlap box of each view is read, at one pyramid level. Crops are cut on view ``a``'s voxel
grid; view ``b`` is cut on the same grid without resampling when its voxel -> world map differs
from a's by a translation only (the usual tiled acquisition: same orientation, same voxel
size), and resampled (trilinear) into a's grid otherwise.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from rhapso_core import overlap, transforms
from rhapso_core.image_source import ImageSource, level_to_level0
from rhapso_core.stitching.blocks import fit_blocks
from rhapso_core.stitching.params import StitchingParams
from rhapso_core.stitching.phase import phase_correlate
from rhapso_core.stitching.records import PhaseLink, registration_hash

__all__ = ["level_affine", "choose_level", "overlap_box", "correlate_views"]


def level_affine(view_to_world: np.ndarray, factors_zyx) -> np.ndarray:
    """Level voxel (x, y, z) -> world: level voxel ``i`` is centred on level-0 ``f i + (f - 1) / 2``."""
    return np.asarray(view_to_world, dtype=np.float64) @ level_to_level0(factors_zyx)


def overlap_box(a2w: np.ndarray, size_a, b2w: np.ndarray, size_b) -> tuple[np.ndarray, np.ndarray] | None:
    """World box (min_xyz, max_xyz) shared by two views' voxel centres, or None if they do not meet
    (a single plane counts half a voxel each side: :func:`rhapso_core.overlap.world_box`)."""
    return overlap.overlap_box(a2w, size_a, b2w, size_b, flat_half_voxel=True)


def _voxel_range(l2w: np.ndarray, lo_w, hi_w, shape_zyx) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive integer voxel range (x, y, z) of a level inside a world box, clipped to the level."""
    c = transforms.apply(transforms.invert(l2w), transforms.box_corners(lo_w, hi_w))
    size = np.asarray(shape_zyx[::-1])
    lo = np.clip(np.ceil(c.min(axis=0) - 1e-6), 0, size - 1).astype(np.int64)
    hi = np.clip(np.floor(c.max(axis=0) + 1e-6), 0, size - 1).astype(np.int64)
    return lo, hi


def choose_level(src: ImageSource, a2w: np.ndarray, lo_w, hi_w, min_voxels: int) -> int:
    """Coarsest level whose crop keeps ``min_voxels`` across on every axis that has that many at level 0.

    An axis thinner than that at full resolution must not be downsampled at all (a thin overlap,
    the z of a thin stack, a single plane).
    """
    lo0, hi0 = _voxel_range(level_affine(a2w, src.level_factors(0)), lo_w, hi_w, src.level_shape(0))
    n0 = (hi0 - lo0 + 1).astype(np.float64)
    best = 0
    for level in range(1, src.n_levels):
        f = np.asarray(src.level_factors(level), dtype=np.float64)[::-1]
        thick = n0 >= min_voxels
        if np.all(np.where(thick, n0 / f >= min_voxels, f == 1)):
            best = level
    return best


def _read(src: ImageSource, lo_xyz, hi_xyz, level: int) -> np.ndarray:
    box = tuple((int(a), int(b) + 1) for a, b in zip(lo_xyz[::-1], hi_xyz[::-1]))
    return np.asarray(src.read(box, level), dtype=np.float32)


def _cap(lo: np.ndarray, hi: np.ndarray, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Shrink an inclusive voxel range around its centre, longest axis first, to at most ``max_voxels``.

    The thin axis of an overlap (the one the shift is hardest to find along) is the last to go;
    the long axes only add precision, which a central part of them already gives.
    """
    lo, hi = lo.copy(), hi.copy()
    while float(np.prod(hi - lo + 1)) > max_voxels:
        ax = int(np.argmax(hi - lo))
        n = int(hi[ax] - lo[ax] + 1)
        if n <= 1:
            break
        keep = (n + 1) // 2
        lo[ax] += (n - keep) // 2
        hi[ax] = lo[ax] + keep - 1
    return lo, hi


def _crops(src_a, a2w, src_b, b2w, lo_w, hi_w, level, max_voxels=None):
    """Equally shaped crops of a and b over the world box, and b's sub-voxel offset (x, y, z).

    Returns (crop_a, crop_b, a's level-voxel -> world affine, d_xyz) or None.
    """
    la = level_affine(a2w, src_a.level_factors(level))
    level_b = min(level, src_b.n_levels - 1)
    lb = level_affine(b2w, src_b.level_factors(level_b))
    lo_a, hi_a = _voxel_range(la, lo_w, hi_w, src_a.level_shape(level))
    if max_voxels is not None:
        lo_a, hi_a = _cap(lo_a, hi_a, max_voxels)
    n = hi_a - lo_a + 1
    if np.any(n < 1):
        return None
    m = transforms.invert(lb) @ la  # a's level voxel -> b's level voxel
    size_b = np.asarray(src_b.level_shape(level_b)[::-1])
    if np.allclose(m[:3, :3], np.eye(3), atol=1e-6):
        jb = transforms.apply(m, lo_a[None].astype(np.float64))[0]
        j0 = np.round(jb).astype(np.int64)
        d = jb - j0
        # Shrink both crops where b's would leave b's grid (rounding at b's border).
        cut_lo = np.maximum(0, -j0)
        cut_hi = np.maximum(0, j0 + n - size_b)
        lo_a2, hi_a2 = lo_a + cut_lo, hi_a - cut_hi
        if np.any(hi_a2 < lo_a2):
            return None
        ca = _read(src_a, lo_a2, hi_a2, level)
        cb = _read(src_b, j0 + cut_lo, j0 + n - 1 - cut_hi, level_b)
        return ca, cb, la @ transforms.translation(lo_a2.astype(np.float64)), d
    # Different orientation or voxel size: resample b onto a's crop grid.
    corners = transforms.apply(m, transforms.box_corners(lo_a.astype(np.float64), hi_a.astype(np.float64)))
    rlo = np.clip(np.floor(corners.min(axis=0)) - 1, 0, size_b - 1).astype(np.int64)
    rhi = np.clip(np.ceil(corners.max(axis=0)) + 1, 0, size_b - 1).astype(np.int64)
    region = _read(src_b, rlo, rhi, level_b)
    ca = _read(src_a, lo_a, hi_a, level)
    mz = transforms.xyz_to_zyx(m)
    offset = mz[:3, :3] @ lo_a[::-1].astype(np.float64) + mz[:3, 3] - rlo[::-1]
    cb = ndi.affine_transform(region, mz[:3, :3], offset=offset, output_shape=ca.shape, order=1, mode="nearest")
    return ca, cb.astype(np.float32), la @ transforms.translation(lo_a.astype(np.float64)), np.zeros(3)


def _estimate(src_a, a2w, size_a, src_b, b2w, size_b, level, params, accept_world: Callable | None,
              blocks: bool = False):
    """One correlation at one level: (shift_xyz world, r, box, crop shape xyz, blocks) or a failure string.

    ``blocks``: also fit the shift in blocks of the crops (:func:`~rhapso_core.stitching.blocks.fit_blocks`;
    their shifts in the same frame as the returned shift); else the blocks are ().
    """
    box = overlap_box(a2w, size_a, b2w, size_b)
    if box is None:
        return "no_overlap"
    crops = _crops(src_a, a2w, src_b, b2w, box[0], box[1], level, params.max_crop_voxels)
    if crops is None:
        return "no_overlap"
    ca, cb, c2w, d = crops
    lin = c2w[:3, :3]
    # An axis the crops have one voxel along (a single plane) is not measured: no shift along it.
    d = np.where(np.asarray(ca.shape[::-1]) > 1, d, 0.0)

    def to_world(s_zyx) -> np.ndarray:
        return lin @ (np.asarray(s_zyx, dtype=np.float64)[::-1] + d)

    accept = None if accept_world is None else (lambda s: accept_world(to_world(s)))
    res = phase_correlate(ca, cb, peaks_to_check=params.peaks_to_check,
                          min_overlap_fraction=params.min_overlap_fraction, subpixel=params.subpixel,
                          apodization=params.apodization, accept=accept)
    if res is None:
        return "failed"
    # fixed(x) ~ moving(x - s): the content at a's crop voxel x sits at b's crop voxel x - s, which b's
    # registration puts s (+ the sub-voxel offset d) too low in the world; b must move up by that.
    parts = (fit_blocks(ca, cb, res.shift, c2w, to_world, params.min_overlap_voxels, params.min_r,
                        params.min_overlap_fraction, accept) if blocks else ())
    return to_world(res.shift), res.r, box, tuple(int(v) for v in ca.shape[::-1]), parts


def correlate_views(
    view_a, src_a: ImageSource, a2w: np.ndarray, size_a,
    view_b, src_b: ImageSource, b2w: np.ndarray, size_b,
    params: StitchingParams,
) -> PhaseLink:
    """Phase-correlate two views over their overlap; the :class:`PhaseLink` says how b must move.

    ``a2w`` / ``b2w``: current view voxel -> world affines (4x4, x y z); ``size_*``: view sizes (x y z
    voxels). Filters (``min_r``, ``max_r``, ``max_shift_*``) set the link's status; a link that
    fails them keeps its measured shift for the report.
    """
    t0 = time.perf_counter()
    a2w = np.asarray(a2w, dtype=np.float64)
    b2w = np.asarray(b2w, dtype=np.float64)
    h = registration_hash(a2w, b2w)
    box = overlap_box(a2w, size_a, b2w, size_b)
    nan3 = (float("nan"),) * 3

    def link(shift, r, status, reason, level, refined, shape, box=box, blocks=()):
        lo, hi = (nan3, nan3) if box is None else (tuple(map(float, box[0])), tuple(map(float, box[1])))
        return PhaseLink(tuple(view_a), tuple(view_b), tuple(float(v) for v in shift), float(r), lo, hi, h,
                         int(level), refined, tuple(shape), status, reason, time.perf_counter() - t0,
                         tuple(blocks))

    if box is None:
        return link(nan3, float("nan"), "no_overlap", "boxes do not overlap under the current registrations",
                    0, None, (0, 0, 0))
    if params.level == "auto":
        level = choose_level(src_a, a2w, box[0], box[1], params.min_overlap_voxels)
    else:
        level = min(int(params.level), src_a.n_levels - 1)
    refine = params.refine_level is not None and params.refine_level < level
    out = _estimate(src_a, a2w, size_a, src_b, b2w, size_b, level, params, params.max_shift_ok,
                    blocks=params.link_blocks and not refine)
    if isinstance(out, str):
        return link(nan3, float("nan"), out, "no verifiable correlation peak" if out == "failed" else
                    "the overlap is empty on the views' grids", level, None, (0, 0, 0))
    shift, r, _, shape, blocks = out
    refined = None
    if refine:
        fine = min(params.refine_level, src_a.n_levels - 1)
        # Search at most 2 coarse voxels around the coarse estimate (world extent of a coarse voxel per axis).
        reach = 2.0 * np.abs(level_affine(a2w, src_a.level_factors(level))[:3, :3]).sum(axis=1)

        def accept_fine(t):
            return bool(np.all(np.abs(t) <= reach)) and params.max_shift_ok(shift + t)

        moved_b = transforms.translation(shift) @ b2w
        out2 = _estimate(src_a, a2w, size_a, src_b, moved_b, size_b, fine, params, accept_fine,
                         blocks=params.link_blocks)
        if not isinstance(out2, str):
            # The fine crops' shifts are relative to b moved by the coarse estimate.
            blocks = tuple(dataclasses.replace(k, shift_xyz=tuple(map(float, shift + np.asarray(k.shift_xyz))))
                           for k in out2[4])
            shift, r, refined = shift + out2[0], out2[1], fine
    if not params.max_shift_ok(shift):
        return link(shift, r, "too_far", "shift beyond max_shift_xyz / max_shift_total", level, refined, shape, blocks=blocks)
    if r < params.min_r:
        return link(shift, r, "low_r", f"r {r:.3f} < min_r {params.min_r}", level, refined, shape, blocks=blocks)
    if r > params.max_r:
        return link(shift, r, "high_r", f"r {r:.3f} > max_r {params.max_r}", level, refined, shape, blocks=blocks)
    return link(shift, r, "ok", "", level, refined, shape, blocks=blocks)
