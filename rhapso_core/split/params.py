"""Parameters of the split-dataset utility (names as in the seed's "Fake points" and "Grid split" tables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from rhapso_core.params import StageParams

__all__ = ["SplitParams"]

_Voxels = Annotated[int, Field(ge=1, le=1_000_000)]
_Overlap = Annotated[int, Field(ge=0, le=1_000_000)]
_Step = Annotated[int, Field(ge=1, le=4096)]


class SplitParams(StageParams):
    """Split every view into overlapping sub-views, and tie neighbouring sub-views of one
    tile together with synthetic ("fake") correspondences.

    All sizes are full-resolution view voxels in x, y, z order. Sub-view offsets and
    sizes are multiples of the *step* (``min_step_size``; by default the coarsest
    pyramid factor of the data per axis), so every pyramid level of a sub-view is an
    exact crop of its parent's level. ``target_image_size`` is rounded to the nearest
    multiple of the step and ``target_overlap`` up to the next multiple (as
    BigStitcher's Split_Views does).
    """

    target_image_size: tuple[_Voxels, _Voxels, _Voxels] = Field(
        (7040, 7040, 7040),
        description="Desired sub-view size along x, y, z (view voxels; default 7040 7040 7040). "
        "A view no larger than this along an axis is not split along it.",
    )
    target_overlap: tuple[_Overlap, _Overlap, _Overlap] = Field(
        (128, 128, 128),
        description="Overlap of neighbouring sub-views along x, y, z (view voxels; default 128 128 128); "
        "must stay below target_image_size.",
    )
    min_step_size: tuple[_Step, _Step, _Step] | None = Field(
        None,
        description="Alignment of sub-view offsets and sizes along x, y, z (view voxels); None (default): "
        "the least common multiple of the pyramid factors of every view's image, so pyramid levels crop exactly.",
    )
    optimize: bool = Field(
        True,
        description="Balance the sub-views: shrink the sub-view size (in steps) as far as the same number "
        "of sub-views still covers the view, so the last one is not a thin remainder (default true).",
    )
    point_density: float = Field(
        100.0, ge=0.0, le=1.0e6,
        description="Fake points per 100^3 voxels of overlap between two sub-views (points; default 100).",
    )
    min_points: int = Field(
        20, ge=0, le=1_000_000, description="Fewest fake points per overlapping sub-view pair (points; default 20)."
    )
    max_points: int = Field(
        500, ge=0, le=1_000_000, description="Most fake points per overlapping sub-view pair (points; default 500)."
    )
    error: float = Field(
        0.1, ge=0.0, le=1000.0,
        description="Jitter of fake points: each end of a fake correspondence moves by a Gaussian of this "
        "standard deviation per axis (world units, i.e. finest voxels; isotropic; default 0.1). Measured on "
        "a 3x2 synthetic dataset split into 2x2 pieces: 0.5 left 1.35 voxel seams between pieces, 0.1 left "
        "0.27 (the seed's 0.5 was in anisotropic voxels, far more along z).",
    )
    exclude_radius: float = Field(
        200.0, ge=0.0, le=1.0e6,
        description="No fake point closer than this to a real interest point of the parent view (view "
        "voxels; default 200; 0 = no exclusion). Where fewer than min_points survive, the candidates "
        "farthest from real points are kept.",
    )
    fake_label: str = Field(
        "splitpoints", min_length=1,
        description="Interest-point label of the fake points and their correspondences (default 'splitpoints').",
    )
    fake_weight: float = Field(
        0.1, ge=0.0, le=1.0e3,
        description="Solver weight of the fake correspondences' label relative to real matches (weight 1): "
        "SolverParams.label_weights[fake_label] (unitless; default 0.1, enough to keep the pieces of a "
        "tile together where no real match does, weak enough that real matches decide the shape).",
    )
    labels: list[str] | None = Field(
        None,
        description="Interest-point labels moved into the sub-views (default None: every label stored for the view).",
    )
    assign_ids: Literal["sequential", "grid"] = Field(
        "sequential",
        description="New setup ids: 'sequential' numbers sub-views 0, 1, 2, ... in parent-setup order "
        "(BigStitcher's choice); 'grid' gives sub-view i of setup s the id s * max_pieces + i, so ids "
        "tell their parent (default 'sequential').",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the fake points; same seed, same points.")

    @field_validator("fake_label")
    @classmethod
    def _label_is_path_segment(cls, v: str) -> str:
        if "/" in v or "\\" in v or v.startswith(".") or v.startswith("__"):
            raise ValueError(f"fake_label {v!r} cannot be a path segment (no '/', '\\', leading '.' or '__')")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "SplitParams":
        if self.min_points > self.max_points:
            raise ValueError(f"min_points ({self.min_points}) exceeds max_points ({self.max_points})")
        for axis, (s, o) in enumerate(zip(self.target_image_size, self.target_overlap)):
            if o >= s:
                raise ValueError(
                    f"target_overlap[{axis}]={o} must be smaller than target_image_size[{axis}]={s} (view voxels)"
                )
        if self.labels is not None and self.fake_label in self.labels:
            raise ValueError(f"fake_label {self.fake_label!r} is also listed in labels")
        return self

    def label_weights(self) -> dict[str, float]:
        """``SolverParams.label_weights`` entry for the fake points: ``{fake_label: fake_weight}``."""
        return {self.fake_label: float(self.fake_weight)}
