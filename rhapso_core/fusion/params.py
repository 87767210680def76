"""Parameters of the fusion stage (names follow the seed's fusion table)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from rhapso_core.multiscale.params import MultiscaleParams
from rhapso_core.params import StageParams

__all__ = ["FusionParams", "OVERLAP_STRATEGIES"]

OVERLAP_STRATEGIES = (
    "avg", "avg_blend", "max", "lowest_view_wins", "closest_pixel_wins", "content_based"
)

IntTriple = tuple[int, int, int]
FloatTriple = tuple[float, float, float]


def _triple(v, name):
    if isinstance(v, (int, float)):
        v = (v, v, v)
    v = tuple(v)
    if len(v) != 3:
        raise ValueError(f"{name}: need one number or three (x, y, z), got {v}")
    return v


class FusionParams(StageParams):
    """How views are resampled into one output volume.

    Axis order of every triple here is (x, y, z), as in the seed's fusion table and
    BigStitcher XML. The default ``block_size`` of 256^3 voxels keeps one block's
    working set (two float32 accumulators, 128 MiB, plus one view's source sub-box at a
    time) well under 1 GiB per worker while amortising per-block overheads; it is
    rounded up to whole output chunks (or shards) so no two writers touch one chunk.
    """

    block_size: IntTriple = Field(
        (256, 256, 256),
        description="output voxels (x, y, z) computed in one piece; rounded up to whole chunks",
    )
    block_scale: IntTriple = Field(
        (2, 2, 1),
        description="blocks (x, y, z) per task: a task's work unit is block_size * block_scale",
    )
    intensity_range: tuple[float, float] = Field(
        (0.0, 65535.0),
        description="fused intensities (min, max) mapped onto the integer output dtype's full "
        "range, clipped and rounded; ignored for float32 (values kept as fused)",
    )
    output_dtype: Literal["uint16", "uint8", "float32"] = Field(
        "uint16", description="data type of the fused image"
    )
    overlap_strategy: Literal[
        "avg", "avg_blend", "max", "lowest_view_wins", "closest_pixel_wins", "content_based"
    ] = Field(
        "avg_blend",
        description="how overlapping views combine: avg (mean), avg_blend (BigStitcher cosine "
        "blending), max, lowest_view_wins (lowest view id), closest_pixel_wins (largest "
        "distance to the view's own edge), content_based (avg_blend weights times each "
        "view's local contrast, BigStitcher's content-based fusion; favours the sharper view)",
    )
    blending_range: FloatTriple = Field(
        (40.0, 40.0, 40.0),
        description="width (x, y, z) of the cosine ramp from a view's edge inwards (view voxels)",
    )
    blending_border: FloatTriple = Field(
        (0.0, 0.0, 0.0),
        description="zero-weight margin (x, y, z) at a view's edge before the ramp (view voxels)",
    )
    content_sigma1: FloatTriple = Field(
        (20.0, 20.0, 20.0),
        description="content_based only: sigma (x, y, z) of the Gaussian subtracted from each "
        "view to isolate its detail, I - G_sigma1 * I (view voxels, level 0; BigStitcher's "
        "default 20)",
    )
    content_sigma2: FloatTriple = Field(
        (40.0, 40.0, 40.0),
        description="content_based only: sigma (x, y, z) of the Gaussian averaging the squared "
        "detail into the local-contrast weight G_sigma2 * (I - G_sigma1 * I)^2 (view voxels, "
        "level 0; BigStitcher's default 40). The weights need a halo of about "
        "3 * (sigma1 + sigma2) view voxels per side; a task filters each view once on its work "
        "unit's box (block_size * block_scale) grown by that halo where that is less filtering "
        "than block by block, holding all the unit's accumulators (about 6 GiB per task at the "
        "defaults; block_scale (1, 1, 1) bounds it by one block, about 3 GiB)",
    )
    content_adjust_anisotropy: bool = Field(
        True,
        description="content_based only: divide each axis's sigma by that axis's voxel length "
        "relative to the view's finest axis (BigStitcher's default), so the filters are "
        "isotropic in world; False uses the sigmas as given in view voxels",
    )
    illumination: Literal["blend", "brightest", "gradient"] | Annotated[int, Field(ge=0)] = Field(
        "blend",
        description="How the illuminations of one tile, channel and angle are combined: 'blend' fuses them all "
        "(BigStitcher-Spark's affine-fusion fuses every selected view); 'brightest' keeps the one of highest "
        "mean intensity and 'gradient' the one of highest mean gradient magnitude, both measured on the "
        "coarsest pyramid level (BigStitcher's illumination selection); an integer keeps that illumination id.",
    )
    intensity_correction: bool = Field(
        True,
        description="apply the intensity correction the dataset carries (the coefficients container "
        "'<xml stem>-intensity.n5' beside the XML, else the XML's IntensityAdjustments) to each view's "
        "values before blending; none present: values as read",
    )
    voxel_size: FloatTriple | None = Field(
        None,
        description="output voxel size (x, y, z) in world units; default: the finest input "
        "voxel size per axis",
    )
    isotropic: bool = Field(
        False,
        description="when voxel_size is not given, use the finest input voxel size on all "
        "three axes instead of preserving the input's anisotropy",
    )
    bounding_box: tuple[FloatTriple, FloatTriple] | None = Field(
        None,
        description="world box ((min x, y, z), (max x, y, z)) to fuse, in world units; "
        "default: the bounding box of all views",
    )
    ngff_version: Literal["0.4", "0.5"] = Field(
        "0.4", description="OME-Zarr version: 0.4 (zarr v2) or 0.5 (zarr v3)"
    )
    chunks: IntTriple = Field(
        (128, 128, 128), description="chunk shape (x, y, z) of the fused level 0 (voxels)"
    )
    shards: IntTriple | None = Field(
        None,
        description="shard shape (x, y, z) for OME-Zarr 0.5 (voxels, a multiple of chunks); "
        "None: no sharding. Blocks are aligned to shards when set",
    )
    compressor: Literal["lz4", "zstd", "none"] = Field(
        "lz4",
        description="Blosc codec of the fused image and its pyramid (bitshuffled); 'none' stores raw "
        "chunks. lz4 because encoding is the costliest step after sampling: on uint16 microscopy "
        "(docs/benchmarks.md, codec table) blosc-lz4 level 5 encodes 7-9x and decodes 1.6-2x faster "
        "than zstd level 5, for chunks 4-12 % larger; choose zstd where storage outweighs compute",
    )
    clevel: int = Field(5, ge=1, le=9, description="Blosc compression level (1-9) of ``compressor``")
    multiscale: MultiscaleParams = Field(
        default_factory=MultiscaleParams, description="pyramid levels added after fusion"
    )

    @field_validator(
        "blending_range", "blending_border", "voxel_size", "content_sigma1", "content_sigma2",
        mode="before",
    )
    @classmethod
    def _broadcast(cls, v, info):
        if v is None:
            return v
        return _triple(v, info.field_name)

    @field_validator("block_size", "block_scale", "chunks", "shards")
    @classmethod
    def _positive(cls, v, info):
        if v is not None and any(int(c) < 1 for c in v):
            raise ValueError(f"{info.field_name} must be >= 1 per axis, got {v}")
        return v

    @field_validator("blending_range", "blending_border")
    @classmethod
    def _non_negative(cls, v, info):
        if any(c < 0 for c in v):
            raise ValueError(f"{info.field_name} must be >= 0 (view voxels), got {v}")
        return v

    @field_validator("content_sigma1", "content_sigma2")
    @classmethod
    def _positive_sigma(cls, v, info):
        if any(not (math.isfinite(c) and c > 0) for c in v):
            raise ValueError(f"{info.field_name} must be finite and > 0 (view voxels), got {v}")
        return v

    @field_validator("voxel_size")
    @classmethod
    def _positive_voxel(cls, v):
        if v is not None and any(c <= 0 for c in v):
            raise ValueError(f"voxel_size must be > 0 (world units), got {v}")
        return v

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.intensity_range
        if not hi > lo:
            raise ValueError(f"intensity_range: max must exceed min, got {self.intensity_range}")
        if self.bounding_box is not None:
            bmin, bmax = self.bounding_box
            if any(b < a for a, b in zip(bmin, bmax)):
                raise ValueError(f"bounding_box: max below min, got {self.bounding_box}")
        if self.shards is not None and any(s % c for s, c in zip(self.shards, self.chunks)):
            raise ValueError(f"shards {self.shards} must be a multiple of chunks {self.chunks}")
        return self
