"""Parameters of the global solve (names as in the seed's solver table)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rhapso_core.model_registry import ModelName, model_name_type
from rhapso_core.params import StageParams

__all__ = ["SolverParams"]


def _nonlinear(model: str) -> bool:
    """The direct sparse solver is linear least squares in translation or affine; "auto" is not decided."""
    return model not in ("auto", "translation", "affine")


class SolverParams(StageParams):
    """Global optimisation parameters (BigStitcher defaults).

    ``solver="auto"`` picks the direct sparse solver for ``translation`` and
    ``affine`` (exact least squares, fast for thousands of tiles) and the
    iterative mpicbg-style optimiser for ``rigid`` (not linear, so no direct
    solve). Both give the same answer where both apply (see the tests).
    """

    model: model_name_type("auto") = Field(  # type: ignore[valid-type]
        "auto",
        description=(
            "Transformation model of every view's correction. auto (default): chosen per dataset by held-out "
            "validation (whole links held out one at a time, see validation_pairs) among the models no more "
            "flexible than max_model, "
            "the simplest one that predicts held-out matches as well as the best; translation, rigid or affine: "
            "used as named (in the alignment flow: each round's own model of alignment.rounds)."
        ),
    )
    lambda_value: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Regularisation of the affine model toward rigid: each fit is (1 - lambda) * affine + lambda * rigid "
            "(unitless, 0..1; ignored for translation and rigid). auto (default): chosen with the model by "
            "held-out validation among lambda_candidates."
        ),
    )
    max_model: ModelName = Field(
        "affine",
        description="With model auto: the most flexible model the validation may choose (an alignment round "
        "sets it to its own model).",
    )
    lambda_candidates: list[float] = Field(
        # About a factor 4-5 apart from 0.5 down to 0.001: lambda's effect at a tile's far side scales with
        # lambda times the tile's distortion (1 % over a 256-voxel tile: 2.5 voxels), so a geometric
        # grid resolves it alike for every tile size and distortion; 0.1 -> 0.02 -> 0 left 3-D and 2-D
        # mosaics with 1 % affine truth 1.5-3x above their best lambda (0.001-0.005).
        default_factory=lambda: [0.5, 0.1, 0.02, 0.005, 0.001, 0.0],
        min_length=1,
        description="Affine regularisations tried when lambda_value is auto (unitless, each 0..1; rigid, lambda 1, "
        "is tried as the rigid model).",
    )
    validation_folds: int = Field(
        4, ge=2, le=20,
        description="Folds of the held-out validation where no whole link can be held out (see validation_pairs): "
        "each fold's matches are left out once and predicted by a solve on the others (folds).",
    )
    validation_pairs: int = Field(
        12, ge=0,
        description="Links held out whole, one at a time (each predicted by a solve on all the other links), "
        "when the model or lambda is chosen (links). Links whose removal would disconnect a view are never "
        "held out; where none can be (two tiles, a strip) or with 0, the validation holds out matches instead "
        "(validation_folds). Its cost is this many solves per candidate (default 12: about 500 held-out "
        "matches on the benchmark mosaics).",
    )
    validation_max_views: int = Field(
        64, ge=2,
        description="The held-out validation solves the links among at most this many views: a connected "
        "neighbourhood grown from the best-linked view (views). Its cost is folds x candidates solves; bounded "
        "this way it stays seconds on thousands of tiles, and whether the data support an affine is a property "
        "of the acquisition that a neighbourhood of this size shows (default 64: an 8 x 8 sub-grid).",
    )
    validation_trained_only_labels: list[str] = Field(
        default_factory=lambda: ["phase-correlation"],
        description="Labels whose links the held-out validation trains on but does not hold out while links of "
        "other labels can be (a round with image links only validates on them, unit by unit). Image links "
        "(label 'phase-correlation') are one shift per overlap box, measured from the pixels with errors of "
        "another kind than interest points' localisation: held out, their prediction error is mostly their "
        "own and steered the lambda choice (measured: a 6 x 6 single-plane mosaic with 1 % affine truth "
        "got lambda 0.02, 0.34 pixel RMS, where its matches alone choose 0 and 0.21) (default "
        "['phase-correlation']).",
    )
    relative_threshold: float = Field(
        3.5,
        gt=0.0,
        description="Iterative link removal: not converged while mean tile error * this < max tile error (unitless; default 3.5).",
    )
    absolute_threshold: float = Field(
        7.0,
        gt=0.0,
        description="Iterative link removal: not converged while the mean tile error exceeds this (world units, normally voxels; default 7.0).",
    )
    min_matches: int = Field(
        3, ge=1, description="Links with fewer matches than this are ignored (matches per link; default 3)."
    )
    damp: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Iterative optimiser: fraction of each new tile fit applied per iteration (unitless, (0, 1]; default 1.0).",
    )
    max_iterations: int = Field(
        10000, ge=1, description="Iterative optimiser: upper bound on iterations (default 10,000)."
    )
    max_allowed_error: float = Field(
        math.inf,
        ge=0.0,
        description="Iterative optimiser: do not stop on a plateau while the mean error exceeds this (world units; default inf).",
    )
    max_plateauwidth: int = Field(
        200,
        ge=1,
        description="Iterative optimiser: the error history window (iterations) whose slope must be below 1e-4 to stop (default 200).",
    )
    method: Literal["one_round", "iterative", "two_round"] = Field(
        "iterative",
        description=(
            "Outlier handling: one_round (solve once), iterative (drop the worst link until the relative / absolute "
            "thresholds hold), two_round (iterative, then place unconnected groups by their metadata overlaps)."
        ),
    )
    solver: Literal["auto", "iterative", "sparse"] = Field(
        "auto",
        description="auto: sparse for translation / affine, iterative for rigid; iterative: mpicbg TileConfiguration; sparse: direct least squares.",
    )
    fixed_views: list[tuple[int, int]] | None = Field(
        None,
        description="Views (timepoint, setup) whose registration is kept; default: the first view of each timepoint.",
    )
    label_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Weight multiplying the matches of each interest point label (unitless, >= 0; labels not listed: 1.0).",
    )

    @field_validator("label_weights")
    @classmethod
    def _weights_non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        for label, w in v.items():
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"label_weights[{label!r}] must be finite and >= 0, got {w}")
        return v

    @field_validator("lambda_value")
    @classmethod
    def _lambda_range(cls, v):
        if v != "auto" and not (0.0 <= v <= 1.0):
            raise ValueError(f"lambda_value must be 'auto' or in 0..1, got {v}")
        return v

    @field_validator("lambda_candidates")
    @classmethod
    def _candidates_range(cls, v: list[float]) -> list[float]:
        for lam in v:
            if not (0.0 <= lam <= 1.0):
                raise ValueError(f"lambda_candidates: {lam} is not in 0..1")
        return v

    @property
    def is_resolved(self) -> bool:
        """Model and lambda are both named (nothing left to choose by validation)."""
        return self.model != "auto" and (self.lambda_value != "auto" or self.model != "affine")

    @model_validator(mode="after")
    def _sparse_needs_linear_model(self) -> "SolverParams":
        lam = 0.0 if self.lambda_value == "auto" else self.lambda_value
        if self.solver == "sparse" and (_nonlinear(self.model) or (self.model == "affine" and lam >= 1.0)):
            raise ValueError(
                "solver='sparse' supports translation and affine with lambda_value < 1; use solver='iterative' for rigid"
            )
        return self

    def resolved_solver(self) -> str:
        """The solver actually used: ``"sparse"`` or ``"iterative"``."""
        if self.solver != "auto":
            return self.solver
        lam = 0.0 if self.lambda_value == "auto" else self.lambda_value
        nonlinear = _nonlinear(self.model) or (self.model == "affine" and lam >= 1.0)
        return "iterative" if nonlinear else "sparse"

    def effective_lambda(self) -> float:
        """Lambda as applied: only the affine model is regularised (toward rigid)."""
        if self.model == "affine" and self.lambda_value == "auto":
            raise ValueError("lambda_value 'auto' is resolved by the solve (rhapso_core.solver.select)")
        return self.lambda_value if self.model == "affine" else 0.0

    def transform_name(self) -> str:
        """Name of the ViewTransform the integrator prepends, e.g. ``rhapso affine solve (lambda=0.10)``."""
        if self.model == "affine" and self.lambda_value != "auto":
            return f"rhapso affine solve (lambda={self.lambda_value:.2f})"
        return f"rhapso {self.model} solve"
