"""Parameters of image-based pairwise stitching (phase correlation) and its global solve."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from rhapso_core.params import StageParams

__all__ = ["StitchingParams"]


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
