"""Parameters of the failed-pair retries (:mod:`rhapso_core.pipeline.retry`), apart from it so
that validating a run's parameters imports nothing heavy."""

from __future__ import annotations

from pydantic import Field, field_validator

from rhapso_core.params import StageParams

ESCALATIONS = ("lower_threshold", "finer_downsampling", "wider_search", "rotation_descriptor")


class RetryParams(StageParams):
    """How a failed pair is retried (the escalations of :mod:`rhapso_core.pipeline.retry`)."""

    enabled: bool = Field(True, description="Retry every failed pair of overlapping views with escalations.")
    steps: list[str] = Field(
        default_factory=lambda: list(ESCALATIONS),
        description="Escalations in the order tried: lower_threshold, finer_downsampling, wider_search, "
        "rotation_descriptor (each builds on the previous).",
    )
    threshold_factor: float = Field(
        0.25, gt=0.0, lt=1.0,
        description="lower_threshold: the DoG threshold is multiplied by this inside the overlap (unitless; "
        "default 0.25: dim features that the view-wide threshold left out, still above the candidate "
        "threshold of noise peaks that RANSAC then rejects).",
    )
    search_radius_factor: float = Field(
        3.0, gt=1.0, description="wider_search: search_radius is multiplied by this (unitless; default 3)."
    )
    dedup_distance: float = Field(
        1.5, gt=0.0,
        description="A re-detected point closer than this to a stored point of the view is the same point "
        "(full-resolution view voxels; default 1.5: localisation differences between downsamplings).",
    )
    min_overlap_voxels: int = Field(
        1000, ge=0,
        description="Pairs whose world overlap box holds fewer full-resolution voxels than this are not "
        "retried (voxels).",
    )
    min_relative_overlap: float = Field(
        0.25, ge=0.0, le=1.0,
        description="Pairs whose overlap volume is below this fraction of the largest overlap of either of "
        "their views are not retried: corner contacts of a grid hold a few percent of an edge overlap's "
        "features and are redundant links (fraction; default 0.25).",
    )

    phase_link: bool = Field(
        False,
        description="A pair of face-overlapping views still unmatched after the escalations is phase-correlated "
        "over its overlap; a link passing stitching.min_r holds the pair in the round's solve "
        "(rhapso_core.pipeline.phase_fallback). Default off: where the other pairs' points are biased (DoG "
        "points along fibres, docs/accuracy.md) the correct image links beside them made the result worse "
        "(0.54 -> 1.05 voxel RMS); measured with image_check off. "
        "Pairs that an earlier "
        "phase round links are never retried.",
    )

    image_check: bool = Field(
        True,
        description="Check every matched pair's points against its images (rhapso_core.pipeline.pair_check): "
        "the translation its matches imply against the phase-correlation shift of its overlap (automatic level, no "
        "refinement), each with a standard error per axis measured on the data (scatter, blocks of the overlap, "
        "closure of the grid's loops, and the sub-voxel fit's pull toward the integer shift measured by resampling "
        "the crop half a voxel: rhapso_core.stitching.peak_fit). Points that disagree beyond 3 standard errors are "
        "dropped and the phase link holds the pair; agreeing points are joined by the phase link at the overlap's "
        "centre, combined per axis by the two precisions (rhapso_core.pipeline.axis_fusion). On by default: on "
        "docs/accuracy.md's matrix it takes the fibres-only cell from 0.55 to 0.13 voxel RMS and keeps every "
        "measured cell within its target. False: points only.",
    )

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in ESCALATIONS]
        if unknown:
            raise ValueError(f"unknown escalation {unknown[0]!r} (known: {', '.join(ESCALATIONS)})")
        return v
