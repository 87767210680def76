"""Parameters of the after-solve check: when a round's result counts as worse than its input."""

from __future__ import annotations

from pydantic import Field

from rhapso_core.params import StageParams

__all__ = ["VerifyParams"]


class VerifyParams(StageParams):
    """How each round's solved registrations are checked against the round's input.

    An overlap is compared under the input and the solved registrations by the
    normalised cross-correlation (NCC) of both views sampled at the same world
    points (the QC report's overlap NCC), and by the mean distance of its stored
    matches. A tile whose solved registration makes its overlaps worse keeps its
    input registration (see :mod:`rhapso_core.verify.guard`).
    """

    enabled: bool = Field(True, description="Check every round's result and revert tiles it made worse.")
    max_ncc_drop: float = Field(
        0.05, ge=0.0, le=2.0,
        description=(
            "An overlap is worse when its NCC after the round is below its NCC before by more than this "
            "(unitless; default 0.05, the QC report's max_ncc_drop: well above the NCC's sampling noise "
            "of a few thousand samples, well below what a misplacement of a few voxels costs)."
        ),
    )
    ncc_drop_sigmas: float = Field(
        3.0, ge=0.0, le=100.0,
        description=(
            "An NCC drop counts only beyond this many standard errors of the difference as well (unitless; the "
            "QC report's ncc_drop_sigmas): where one structure carries an overlap's correlation (a small "
            "diagonal overlap of a 3-D grid), the NCC at the true registration was seen 0.13 below the one at "
            "stage positions 3 voxels off, with errors of 0.3 (rhapso_core.qc.ncc_error.ncc_standard_error)."
        ),
    )
    max_link_increase: float = Field(
        1.0, ge=0.0,
        description=(
            "For an overlap without a usable NCC (too few samples, constant content): it is worse when "
            "the mean distance of its stored matches grows by more than this (world units; default 1.0, "
            "about one voxel, above the matches' localisation error)."
        ),
    )
    ncc_samples: int = Field(8_000, ge=100, description="Grid points sampled per overlap for the NCC (points).")
    max_read_voxels: int = Field(
        2_000_000, ge=1000,
        description="Each view is sampled at its finest pyramid level with at most this many voxels (voxels).",
    )
