"""Parameters of image-based pairwise stitching (phase correlation) and its global solve."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from rhapso_core.params import StageParams

__all__ = ["OverlapAffineParams", "StitchingParams"]


class OverlapAffineParams(StageParams):
    """Affine rounds: each matched pair's relative affine fitted to its overlap's voxels
    (rhapso_core.pipeline.overlap_affine_links)."""

    enabled: bool = Field(
        True,
        description="Fit the relative affine of every point-matched pair from its overlap's intensities in "
        "rounds whose solver may choose an affine; a checked fit replaces the pair's point matches in the solve, "
        "with the same total weight (default on: on 3 x 2 real-texture tiles with 1 % affine truth the result "
        "went from 0.41-0.60 to about 0.17 voxel RMS, docs/accuracy.md).",
    )
    sigma: float = Field(
        1.0, ge=0.0,
        description="Gaussian smoothing of both crops before the fit (voxels of each axis at the fitted level; "
        "default 1). Per axis, not per micrometre: linear interpolation between the voxels of an image sharper "
        "than a voxel pulls the fit toward whole voxels along that axis (measured: tiles with z voxels 5x the "
        "xy voxels, translation truth, 0.016 voxel RMS with 0.5 voxel along z, 0.006 with 1; real texture with "
        "1 % affine truth 0.186 -> 0.167). It also widens the fit's reach to the voxel or two the point round "
        "before it leaves.",
    )
    margin_voxels: float = Field(
        2.0, ge=0.0,
        description="Trimmed from each side of the overlap box before sampling (voxels; default 2: edge voxels "
        "of a tile carry the filters' border effects).",
    )
    reach_voxels: int = Field(
        4, ge=0,
        description="The moving crop extends this far beyond the overlap mapped by the current registrations "
        "(voxels of the fitted level; default 4).",
    )
    max_samples: int = Field(
        30_000, ge=1000,
        description="Most overlap voxels compared per pair; a larger overlap is strided, longest axes first "
        "(count; default 30 000). The fit's error falls as one over the square root of the count and its cost "
        "grows with it; at 30 000 the fitted affine's error at the overlap's corners (about 0.01-0.05 voxel) is "
        "still an order below that of the points' own affine, and the fits cost 0.2-0.3 s per pair (measured, "
        "docs/accuracy.md: 3 x 2 real-texture tiles with 1 % affine truth 0.139 voxel RMS with 30 000, 0.147 with "
        "100 000, 0.146 with 200 000 at 2.2, 4.9 and 7.1 s of fits; the base cell 0.003 with 30 000 and 100 000).",
    )
    max_crop_voxels: int = Field(
        2**24, ge=4096,
        description="Largest crop read per view: the fit runs at the finest pyramid level whose overlap box fits "
        "(voxels; default 16 Mi = 64 MiB as float32, a pair's working set about 6x that).",
    )
    phase_held_pairs: bool = Field(
        False,
        description="Also fit the face pairs whose points did not match and that a phase link holds; with no "
        "points to check a fit against, the correlation check alone decides (default off: on sparse single "
        "planes, 300 blobs over a 4 x 4 mosaic, such fits took the result from 0.073 to 2.7 pixel RMS while "
        "each correlated at 0.99 or more, the background's smooth gradients fitting as well as the blobs; "
        "on real planes where points matched 1-2 of 11 pairs, 1 % affine truth, they helped: 0.469 -> 0.271).",
    )
    min_ncc: float = Field(
        0.3, ge=-1.0, le=1.0,
        description="A fit is used only where the overlaps' normalised cross-correlation under it reaches this "
        "(unitless; default 0.3, as stitching.min_r).",
    )
    ncc_tolerance: float = Field(
        0.002, ge=0.0,
        description="... and falls by at most this from the registrations it started from (unitless; default "
        "0.002: converged fits on the translation-truth cells of docs/accuracy.md lowered it by at most 0.0002, "
        "their numerical noise; at a correlation of 0.99 a fall of 0.01 would double the residual).",
    )


class StitchingParams(StageParams):
    """Pairwise translation by phase correlation over each pair's overlap, then a translation solve.

    Defaults follow BigStitcher(-Spark)'s "Calculate pairwise shifts" (links kept from r >= 0.3)
    except where noted (peaks_to_check, refine_level). Shifts and boxes are in the world frame (x, y, z;
    world units, normally full-resolution voxels of the finest axis).
    """

    level: int | Literal["auto"] = Field(
        "auto",
        description="Pyramid level the overlaps are correlated at (0 = full resolution); 'auto': the coarsest "
        "level at which the overlap keeps at least min_overlap_voxels along each of its axes that has that "
        "many at full resolution (default auto).",
    )
    min_overlap_voxels: int = Field(
        32,
        ge=4,
        description="Automatic level: fewest voxels the overlap must keep across at the chosen level "
        "(voxels; default 32: below that a shift of a few voxels removes a large share of what two crops share).",
    )
    refine_level: int | None = Field(
        0,
        ge=0,
        description="After the coarse estimate, correlate again at this finer level over the overlap moved by "
        "the estimate, searching at most 2 coarse voxels around it (level; default 0 = full resolution; None: "
        "keep the coarse estimate, as BigStitcher does; reads the overlap box at this level).",
    )
    max_crop_voxels: int = Field(
        2**25, ge=64,
        description="Largest crop correlated per view (voxels; default 32 Mi = 128 MiB as float32, a task's "
        "working set about 6x that): a larger overlap box is cut around its centre, longest axis first, so "
        "full-resolution refinement of big tiles keeps a bounded memory.",
    )
    peaks_to_check: int = Field(
        20, ge=1, le=100,
        description="Highest phase-correlation peaks verified by normalised cross-correlation; each gives one "
        "candidate shift per periodic alias (count; default 20). BigStitcher checks 5, but where the stage error "
        "is a large share of a thin overlap (10-15 % of the tile) the true peak was measured below the fifth "
        "(bench/bench_phase.py); each extra peak costs at most 2^dims correlations over the crop.",
    )
    min_overlap_fraction: float = Field(
        0.1, gt=0.0, le=1.0,
        description="A candidate shift is tested only if the crops still share this fraction of their voxels "
        "after it: correlations over a few voxels are noise (fraction; default 0.1).",
    )
    subpixel: bool = Field(
        True,
        description="Refine the best integer shift to the local maximum of the normalised cross-correlation "
        "and fit its peak (Gaussian through the maximum and its neighbours) for a sub-voxel shift (default on).",
    )
    min_r: float = Field(
        0.3, ge=-1.0, le=1.0,
        description="Links whose normalised cross-correlation r is below this are not used (unitless; default "
        "0.3, BigStitcher-Spark's --minR).",
    )
    max_r: float = Field(1.0, ge=-1.0, le=1.0, description="Links with r above this are not used (default 1).")
    max_shift_xyz: tuple[float, float, float] | None = Field(
        None,
        description="Largest accepted |shift| per axis x, y, z relative to the current registrations (world "
        "units; default None = no limit). Candidates beyond it are never chosen.",
    )
    max_shift_total: float | None = Field(
        None, gt=0.0,
        description="Largest accepted shift length (world units; default None = no limit).",
    )
    apodization: float = Field(
        0.1, ge=0.0, le=0.5,
        description="Fraction of each crop axis (each side) faded to the mean by a cosine ramp before the FFT, "
        "so the crops' borders do not correlate (fraction; default 0.1; 0 = none).",
    )
    link_blocks: bool = Field(
        True,
        description="Fit each link's shift again in blocks of its overlap, about as long as the overlap is thin "
        "(at most 3 per axis, each at least min_overlap_voxels): point rounds that keep the link then see how the "
        "shift changes along the overlap (relative rotation, scale, shear) instead of one translation; the "
        "phase round's own solve uses the whole shift (default on; a few NCC evaluations per block).",
    )
    keep_links: bool = Field(
        True,
        description="Interest-point rounds after a phase round also solve with its links (label "
        "'phase-correlation', weight solver.label_weights['phase-correlation'], default 1): pairs whose points "
        "are too few to match stay held where phase correlation put them (default on).",
    )
    overlap_affine: OverlapAffineParams = Field(
        default_factory=OverlapAffineParams,
        description="Affine rounds: matched face pairs' relative affines fitted to their overlaps' voxels.",
    )
    fail_without_links: bool = Field(
        False,
        description="Raise when no pair gives a usable link (default False: views keep their registrations "
        "and the report says so).",
    )

    def max_shift_ok(self, shift_xyz) -> bool:
        """True when a world shift (x, y, z) is within max_shift_xyz and max_shift_total."""
        s = [abs(float(v)) for v in shift_xyz]
        if self.max_shift_xyz is not None and any(v > m for v, m in zip(s, self.max_shift_xyz)):
            return False
        if self.max_shift_total is not None and math.sqrt(sum(v * v for v in s)) > self.max_shift_total:
            return False
        return True
