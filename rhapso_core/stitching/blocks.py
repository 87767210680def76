"""Shifts of the parts of an overlap: what a phase link says about rotation, scale and shear.

One phase-correlation shift per pair is a translation: used as an anchor in a rigid or affine
round it holds the two views at the same rotation and scale, although real tiles differ by a
fraction of a degree and a fraction of a percent (a 1 degree rotation moves the far end of a
200-pixel overlap by 3.5 pixels). Where interest points match a pair, they carry that; where
they do not (sparse or blurred specimens, the thin strips of a 2-D mosaic), the phase link is
all the solve has. So once the overlap's shift is found, the overlap is cut into blocks
along its long axes and the normalised cross-correlation peak is fitted again in each block,
starting from the whole overlap's shift (a local climb: a block cannot jump to another
peak). A block's shift at its own position is a correspondence like an interest-point
match; a link of several blocks tells the solve how the shift changes along the overlap.

Frames as in :mod:`rhapso_core.stitching.pairwise`: crops are arrays (z, y, x) on view a's
grid at one level; block boxes and shifts are world x, y, z, and a shift says how view b must
move relative to a.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PhaseBlock", "block_parts", "fit_blocks", "information", "refit_block", "MAX_PARTS", "MAX_CLIMB"]

#: Most parts along one axis. Three blocks in a row give the shift's change along the overlap
#: (rotation, scale, shear) with one degree of freedom left to check it; more blocks only
#: make each one smaller and noisier.
MAX_PARTS = 3


#: Farthest a block's integer peak may be from its overlap's (crop voxels): blocks are at most
#: two thirds of an overlap's length apart, and a 1 degree rotation moves the outer blocks of a
#: 200-voxel strip 1.2 voxels from the middle; the climb of a block without a peak wanders up to
#: eight.
MAX_CLIMB = 2


@dataclass(frozen=True)
class PhaseBlock:
    """One block of a phase link: its world box (x, y, z, on view a's side), shift and NCC r."""

    box_min_xyz: tuple[float, float, float]
    box_max_xyz: tuple[float, float, float]
    shift_xyz: tuple[float, float, float]
    r: float

    @property
    def information(self) -> float:
        """Weight of the block among its link's blocks (:func:`information`)."""
        return information(np.abs(np.asarray(self.box_max_xyz) - np.asarray(self.box_min_xyz)), self.r)

    def to_dict(self) -> dict[str, Any]:
        return {"box_min_xyz": list(self.box_min_xyz), "box_max_xyz": list(self.box_max_xyz),
                "shift_xyz": list(self.shift_xyz), "r": float(self.r)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PhaseBlock":
        return cls(tuple(map(float, d["box_min_xyz"])), tuple(map(float, d["box_max_xyz"])),
                   tuple(map(float, d["shift_xyz"])), float(d["r"]))


def information(extent_xyz, r: float) -> float:
    """What a correlation over a box tells of its shift: compared volume x r / (1 - r).

    r / (1 - r) is the signal-to-noise ratio of two noisy records of one signal whose Pearson
    correlation is r, and a peak's position is known better the more voxels are compared.
    r is clipped to [0.01, 0.999] (a perfect r would make one box absolute); an axis without
    extent (a single plane) does not count.
    """
    r = min(max(float(r), 0.01), 0.999)
    extent = np.asarray(extent_xyz, dtype=np.float64)
    deep = extent > 1e-6
    return float(np.prod(extent[deep])) * r / (1.0 - r) if deep.any() else r / (1.0 - r)


def block_parts(shape_zyx: tuple[int, ...], min_len: int) -> list[tuple[slice, ...]]:
    """Blocks of a crop: each axis cut into parts about as long as the crop's shortest measured axis.

    Blocks roughly as wide as the overlap is thin keep their own features in both directions
    (a strip of a 2-D mosaic, 40 x 200 pixels, gives three blocks of 40 x 67). An axis is cut
    only into parts of at least ``min_len`` voxels (the phase round's ``min_overlap_voxels``:
    a block thinner than that loses too much to a shift of a few voxels), at most
    :data:`MAX_PARTS`. Returns [] when no axis can be cut (the link stays one translation).
    """
    shape = tuple(int(n) for n in shape_zyx)
    measured = [n for n in shape if n > 1]
    if not measured:
        return []
    width = max(min(measured), int(min_len))
    parts = [min(MAX_PARTS, n // width) if n > 1 else 1 for n in shape]
    if max(parts) < 2:
        return []
    blocks: list[tuple[slice, ...]] = [tuple(slice(0, n) for n in shape)]
    for a, k in enumerate(parts):
        if k < 2:
            continue
        edges = np.linspace(0, shape[a], k + 1).round().astype(int)
        blocks = [b[:a] + (slice(int(lo), int(hi)),) + b[a + 1:] for b in blocks
                  for lo, hi in zip(edges[:-1], edges[1:])]
    return blocks


def refit_block(
    fixed: np.ndarray, moving: np.ndarray, s_int: np.ndarray, accept: Callable[[np.ndarray], bool] | None = None,
    min_overlap_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """One block's NCC peak, climbed to from the integer shift ``s_int`` (z, y, x) and fitted.

    Returns (integer peak, fitted sub-voxel shift, r) in crop voxels (z, y, x), or None where the
    block's NCC at ``s_int`` is undefined (no shared voxels, or a flat block).
    """
    from rhapso_core.stitching.phase import _refine, _shared_ncc  # scipy.fft: only where blocks are fitted

    r0 = _shared_ncc(fixed, moving, s_int)
    if not np.isfinite(r0):
        return None
    s_b, r_b, sub = _refine(fixed, moving, s_int, r0, accept, min_overlap_fraction)
    return s_b, s_b.astype(np.float64) + sub, float(r_b)


def fit_blocks(
    fixed: np.ndarray, moving: np.ndarray, shift_zyx, crop_to_world: np.ndarray,
    to_world: Callable[[np.ndarray], np.ndarray], min_len: int, min_r: float,
    min_overlap_fraction: float = 0.0, accept: Callable[[np.ndarray], bool] | None = None,
) -> tuple[PhaseBlock, ...]:
    """The blocks of two equally shaped crops whose NCC peak could be fitted near ``shift_zyx``.

    ``shift_zyx``: the crops' shift (crop voxels, as :func:`~rhapso_core.stitching.phase.phase_correlate`
    returns); each block climbs from its integer part to its own NCC maximum and fits the
    peak. ``crop_to_world``: a's crop voxel (x, y, z) -> world (4x4) for the block boxes;
    ``to_world``: a crop shift (z, y, x) -> the link's world shift. Blocks whose r is below
    ``min_r`` or whose peak is more than :data:`MAX_CLIMB` voxels from ``shift_zyx`` are left out; fewer than two
    left, or blocks that do not follow one linear field of position to a voxel: () (the link
    stays one translation).
    """
    slices = block_parts(fixed.shape, min_len)
    if not slices:
        return ()
    f, m = np.asarray(fixed, dtype=np.float32), np.asarray(moving, dtype=np.float32)
    s_int = np.round(np.asarray(shift_zyx, dtype=np.float64)).astype(np.int64)
    lin, t = np.asarray(crop_to_world)[:3, :3], np.asarray(crop_to_world)[:3, 3]
    out, centres, shifts = [], [], []
    for sl in slices:
        fit = refit_block(f[sl], m[sl], s_int, accept, min_overlap_fraction)
        if fit is None:
            continue
        s_b, s_fit, r_b = fit
        # A block whose NCC climbs further from the overlap's peak than a relative rotation or scale
        # of a few degrees / percent moves it has no peak of its own there (a few faint features,
        # background), where the climb wanders: it is not the same correspondence.
        if not np.isfinite(r_b) or r_b < min_r or np.any(np.abs(s_b - s_int) > MAX_CLIMB):
            continue
        centres.append([0.5 * (x.start + x.stop - 1) for x in sl])
        shifts.append(s_fit)
        lo_zyx = np.array([s.start for s in sl], dtype=np.float64)
        hi_zyx = np.array([s.stop - 1 for s in sl], dtype=np.float64)
        lo_w = lin @ lo_zyx[::-1] + t
        hi_w = lin @ hi_zyx[::-1] + t
        shift = to_world(s_fit)
        out.append(PhaseBlock(tuple(map(float, np.minimum(lo_w, hi_w))), tuple(map(float, np.maximum(lo_w, hi_w))),
                              tuple(map(float, shift)), float(r_b)))
    if len(out) < 2 or not _linear(np.asarray(centres), np.asarray(shifts)):
        return ()
    return tuple(out)


def _linear(centres_zyx: np.ndarray, shifts_zyx: np.ndarray) -> bool:
    """Whether the block shifts (crop voxels) follow one linear field of the block centres to a voxel.

    Two views' relative rotation, scale and shear make the shift a linear function of position;
    a block off that field by more than a voxel of its crops is on another peak, not imprecise
    (the rule :func:`rhapso_core.stitching.globalopt.consistent_links` applies to whole links).
    Blocks with no degree of freedom left over (as many as the field's terms) pass.
    """
    varying = [a for a in range(centres_zyx.shape[1]) if np.ptp(centres_zyx[:, a]) > 0]
    design = np.column_stack([np.ones(len(centres_zyx))] + [centres_zyx[:, a] for a in varying])
    if len(centres_zyx) <= design.shape[1]:
        return True
    coef, *_ = np.linalg.lstsq(design, shifts_zyx, rcond=None)
    return bool(np.max(np.abs(shifts_zyx - design @ coef)) <= 1.0)
