"""Parameters of the multiscale (pyramid) stage."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from rhapso_core.params import StageParams

__all__ = ["MultiscaleParams"]

Triple = tuple[int, int, int]


class MultiscaleParams(StageParams):
    """Pyramid levels added below an existing OME-Zarr level.

    Axis order here is (z, y, x), as in the seed's multiscale table (its ``voxel_size``
    is z, y, x); the fusion stage's own block sizes are x, y, z.
    """

    n_lvls: int = Field(
        5, ge=1, le=20,
        description="number of pyramid levels including the base level (count); 1 adds none",
    )
    scale_factor: list[Triple] | Triple = Field(
        (2, 2, 2),
        description="downsampling factor (z, y, x) from each level to the next (integer >= 1); "
        "one triple for every level, or a list of n_lvls - 1 triples",
    )
    multiscale_chunk_size: Triple = Field(
        (128, 128, 128), description="chunk shape (z, y, x) of the added levels (voxels)"
    )
    target_block_size_mb: float = Field(
        256.0, gt=0,
        description="approximate size of the source region one task reads (MiB); blocks are "
        "whole output chunks",
    )
    base_level: int = Field(
        0, ge=0, description="index of the existing level the new levels are computed from"
    )
    voxel_size: tuple[float, float, float] | None = Field(
        None,
        description="voxel size (z, y, x) of the base level in world units, used only when "
        "the group's NGFF metadata has none",
    )

    @field_validator("multiscale_chunk_size")
    @classmethod
    def _positive_chunks(cls, v):
        if any(int(c) < 1 for c in v):
            raise ValueError(f"multiscale_chunk_size must be >= 1 per axis, got {v}")
        return v

    @model_validator(mode="after")
    def _check_factors(self):
        f = self.scale_factor
        if isinstance(f, tuple) or (len(f) == 3 and all(isinstance(v, int) for v in f)):
            f = [tuple(f)] * (self.n_lvls - 1)  # type: ignore[arg-type]
        if len(f) != self.n_lvls - 1:
            raise ValueError(
                f"scale_factor: need n_lvls - 1 = {self.n_lvls - 1} triples, got {len(f)}"
            )
        for t in f:
            if any(int(v) < 1 for v in t):
                raise ValueError(f"scale_factor: factors must be >= 1, got {t}")
        return self

    def level_factors(self) -> list[Triple]:
        """Factor (z, y, x) from each level to the next, ``n_lvls - 1`` entries."""
        f = self.scale_factor
        if isinstance(f, tuple) or (len(f) == 3 and all(isinstance(v, int) for v in f)):
            return [tuple(int(v) for v in f)] * (self.n_lvls - 1)  # type: ignore[list-item]
        return [tuple(int(v) for v in t) for t in f]  # type: ignore[misc]
