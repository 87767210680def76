"""Thresholds of the QC verdict and the sizes of what QC reads and draws."""

from __future__ import annotations

from pydantic import Field

from rhapso_core.model_registry import ModelName
from rhapso_core.params import StageParams

__all__ = ["QCParams"]


class QCParams(StageParams):
    """What makes a run pass, warn or fail, and how much QC reads.

    Distances are world units of the XML (BigStitcher's default world unit is the
    finest voxel size). Every threshold appears in the report next to the verdict.
    """

    # --- detection -------------------------------------------------------------------
    min_points_per_view: int = Field(
        20, ge=0, description="Warn when a view has fewer interest points than this (points)."
    )
    min_coverage: float = Field(
        0.2, ge=0.0, le=1.0,
        description="Warn when a view's points occupy less than this fraction of its coverage grid cells (fraction).",
    )
    coverage_grid: tuple[int, int, int] = Field(
        (8, 8, 1), description="Cells along x, y, z of the per-view grid used for spatial coverage (cells)."
    )

    # --- matching --------------------------------------------------------------------
    min_inliers: int = Field(
        12, ge=0, description="Flag a matched pair with fewer RANSAC inliers than this (correspondences)."
    )
    min_inlier_ratio: float = Field(
        0.3, ge=0.0, le=1.0, description="Flag a matched pair whose inliers / candidates is below this (fraction)."
    )
    min_overlap_points: int = Field(
        20, ge=0,
        description="A flagged pair only warns when both views have at least this many points in their overlap; "
        "fewer means there was little to match (e.g. diagonal neighbours) (points).",
    )

    # --- solver ----------------------------------------------------------------------
    max_link_error: float = Field(
        2.0, gt=0.0, description="Fail when a used link's mean match distance after the solve exceeds this (world units)."
    )
    max_tile_error: float = Field(
        1.0, gt=0.0, description="Warn when a view's mean match distance after the solve exceeds this (world units)."
    )
    max_loop_closure: float = Field(
        3.0, gt=0.0,
        description="Warn when composing pairwise models around a cycle of links moves points by more than this (world units).",
    )
    loop_model: ModelName = Field(
        "rigid", description="Model fitted to each pair's stored correspondences for the loop-closure check."
    )

    # --- fusion ----------------------------------------------------------------------
    min_ncc_after: float = Field(
        0.3, ge=-1.0, le=1.0,
        description="Warn when the normalised cross-correlation of two overlapping views after alignment is below this.",
    )
    max_ncc_drop: float = Field(
        0.05, ge=0.0, le=2.0,
        description="Fail when an overlap's NCC after alignment is lower than before by more than this "
        "(and by more than ncc_drop_sigmas standard errors).",
    )
    ncc_drop_sigmas: float = Field(
        3.0, ge=0.0, le=100.0,
        description="An NCC drop counts only beyond this many standard errors of the difference (each NCC's "
        "error: a jackknife over 27 blocks of its overlap; unitless). A small overlap whose correlation one "
        "structure carries has errors of 0.3 and more, where a textured one's are under 0.015.",
    )
    max_seam_ratio: float = Field(
        1.5, gt=0.0,
        description="Warn when the fused image's mean gradient magnitude at view borders over that elsewhere exceeds this (ratio).",
    )
    seam_width: float = Field(
        2.0, gt=0.0, description="Half-width of the band around view borders counted as seam (fused-level voxels)."
    )

    # --- ground truth (synthetic data) ------------------------------------------------
    max_truth_rms_voxels: float = Field(
        1.0, gt=0.0, description="Fail when the RMS error against the ground truth exceeds this (finest-axis voxels)."
    )

    # --- what is read and drawn --------------------------------------------------------
    max_read_voxels: int = Field(
        2_000_000, ge=1000,
        description="QC reads the finest pyramid level with at most this many voxels per view or fused image (voxels).",
    )
    ncc_samples: int = Field(
        20_000, ge=100, description="Grid points sampled per overlap for the NCC (points)."
    )
    picture_size: int = Field(
        240, ge=32, le=2048, description="Largest side of each picture in the report (pixels)."
    )
    max_pictured_views: int = Field(
        24, ge=0, description="Views shown in the detection gallery; the rest are listed only (views)."
    )
