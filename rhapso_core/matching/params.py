"""Parameters of interest-point matching (names as in the seed's matching table).

Defaults are BigStitcher-Spark's geometric descriptor matching defaults
(``SparkGeometricDescriptorMatching``): 3 neighbours, redundancy 1, ratio 3,
affine regularised toward rigid with lambda 0.1, RANSAC 10,000 iterations,
max error 5, min inlier ratio 0.1, min 12 inliers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator

from rhapso_core.model_registry import ModelName, model_name_type
from rhapso_core.params import StageParams

__all__ = ["MatchingParams", "AUTO", "FALLBACKS"]

AUTO = "auto"
Auto = Literal["auto"]
# What "auto" means with no dataset to derive a value from (two point sets on their own):
# BigStitcher-Spark's fixed defaults. Datasets go through rhapso_core.autoparams.
FALLBACKS = {"search_radius": None, "max_epsilon": 5.0, "model_min_matches": 12}


class MatchingParams(StageParams):
    """Matching of one view pair: descriptors, RANSAC, robust filter, optional ICP.

    All distances are in **world units** (the frame the orchestration transforms
    the points into with the current registrations; normally full-resolution
    voxels of the first view setup). The seed's ``search_radius`` is "in
    downsampled units" because Rhapso 0.4.5 matches downsampled coordinates;
    here points are always world coordinates, so scale a seed value by the
    downsampling factor when porting a parameter file.
    """

    num_neighbors: int = Field(
        3,
        ge=1,
        le=8,
        description="Neighbours per descriptor: each point is described by the relative vectors to this many "
        "nearest neighbours, ordered by distance (count; default 3).",
    )
    redundancy: int = Field(
        1,
        ge=0,
        le=4,
        description="Extra neighbours: every subset of num_neighbors out of num_neighbors + redundancy nearest "
        "neighbours is a descriptor and all subsets of both points are compared (count; default 1).",
    )
    significance: float = Field(
        3.0,
        ge=1.0,
        description="Ratio test: a match is kept when best * significance < second best, on squared descriptor "
        "distances as BigStitcher's SquareDistance (unitless; default 3).",
    )
    search_radius: Annotated[float, Field(gt=0.0)] | None | Auto = Field(
        AUTO,
        description="Spatial gating: only points whose world positions are within this distance are compared "
        "(world units; None = no gating, as BigStitcher's RGLDM; the seed's typical range is 100-300 "
        "downsampled units; auto (default): the stage uncertainty plus the RANSAC error, per dataset).",
    )
    stage_uncertainty: Annotated[float, Field(gt=0.0)] | Auto = Field(
        AUTO,
        description="Largest expected error of a tile's nominal position relative to its neighbour (world "
        "units). Only read when parameters are resolved per dataset: beyond what the overlaps let the matcher "
        "bridge, a phase-correlation prealignment runs first (alignment.prealign), else it widens the search "
        "radius; auto (default): measured by phase correlation of a few sampled overlaps.",
    )
    num_required_neighbors: int = Field(
        3,
        ge=1,
        description="Minimum number of other points each side needs before matching runs; the effective "
        "requirement is max(num_required_neighbors, num_neighbors + redundancy) (count; default 3).",
    )
    descriptor: Literal["translation", "rotation"] = Field(
        "translation",
        description="translation: relative vectors compared directly (tolerates translation and small "
        "rotation); rotation: relative vectors expressed in a local frame built from the two nearest "
        "neighbours, so rigid rotations are tolerated (needs num_neighbors >= 2).",
    )
    model: ModelName = Field(
        "affine", description="RANSAC model mapping view a's world points onto view b's (default affine)."
    )
    regularization_model: model_name_type("none") = Field(  # type: ignore[valid-type]
        "rigid",
        description="Model the fit is regularised toward: (1 - lambda) * model + lambda * regularizer "
        "(BigStitcher's InterpolatedAffineModel3D; default rigid; none disables).",
    )
    lambda_value: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Regularisation weight lambda (unitless, 0..1; default 0.1; ignored when the "
        "regularization model is none or equals the model).",
    )
    max_epsilon: Annotated[float, Field(gt=0.0)] | Auto = Field(
        AUTO,
        validation_alias=AliasChoices("max_epsilon", "inlier_factor"),
        description="RANSAC max error: a candidate is an inlier when |T(a) - b| < max_epsilon (world units; "
        "the seed calls it inlier_factor; auto (default): three times the points' localisation error, "
        "which scales with the detection's working voxel; 5 with no dataset).",
    )
    min_inlier_ratio: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A model needs at least this fraction of the candidates as inliers (unitless; default 0.1).",
    )
    model_min_matches: Annotated[int, Field(ge=1)] | Auto = Field(
        AUTO,
        description="A model needs at least this many inliers, after the robust filter too (count; "
        "never fewer than the model's minimal sample; auto (default): from the points expected in an "
        "overlap, never below the count a chance consensus could reach; 12 with no dataset).",
    )
    num_iterations: int = Field(
        10000, ge=1, description="RANSAC hypotheses drawn (count; default 10,000)."
    )
    seed: int = Field(0, ge=0, description="Seed of RANSAC's sampling: same input and seed, same result.")
    robust_filter: bool = Field(
        True,
        description="After RANSAC, iteratively drop matches whose residual exceeds max_trust * median residual "
        "and refit (mpicbg's Model.filter; default on).",
    )
    max_trust: float = Field(
        4.0,
        gt=1.0,
        description="Robust filter: matches with residual > max_trust * median residual are dropped (unitless; "
        "default 4, mpicbg's).",
    )
    icp_iterations: int = Field(
        0,
        ge=0,
        description="ICP refinement after RANSAC: rounds of nearest-neighbour correspondence + refit over all "
        "points of both sides (count; default 0 = off).",
    )
    icp_max_distance: float = Field(
        5.0,
        gt=0.0,
        description="ICP: nearest neighbours farther apart than this after applying the model are not "
        "paired (world units; default 5).",
    )

    @model_validator(mode="after")
    def _check_descriptor(self) -> "MatchingParams":
        if self.descriptor == "rotation" and self.num_neighbors < 2:
            raise ValueError(
                "num_neighbors: the rotation-invariant descriptor needs at least 2 neighbours to build its frame, "
                f"got {self.num_neighbors}"
            )
        return self

    def auto_fields(self) -> list[str]:
        """Names of the parameters still set to ``auto``."""
        return [k for k in FALLBACKS if getattr(self, k) == AUTO]

    def concrete(self) -> "MatchingParams":
        """These parameters with every ``auto`` replaced by its dataset-free fallback."""
        auto = self.auto_fields()
        return self.model_copy(update={k: FALLBACKS[k] for k in auto}) if auto else self

    @property
    def neighbors_needed(self) -> int:
        """Neighbours every point needs: ``max(num_required_neighbors, num_neighbors + redundancy)``."""
        return max(self.num_required_neighbors, self.num_neighbors + self.redundancy)
