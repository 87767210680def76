"""Parameters of the interest-point detection stage (names follow the seed's detection table)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from rhapso_core.detection.registry import check_detector_name
from rhapso_core.params import StageParams

__all__ = ["DetectionParams", "MAX_MOVES", "GAUSS_TRUNCATE", "IMAGE_SIGMA", "AUTO", "FALLBACKS"]

# Sub-voxel localisation may shift the integer peak at most this many times (ImgLib2's
# SubpixelLocalization default); it also sets part of the chunk halo.
MAX_MOVES = 4
# Gaussian kernels are sampled to radius ceil(GAUSS_TRUNCATE * sigma) (scipy's default),
# wider than ImgLib2's ~3 sigma so the DoG is accurate to < 1e-4 of the blob contrast.
GAUSS_TRUNCATE = 4.0
# Blur already present in a sampled image (BigStitcher's "image sigma").
IMAGE_SIGMA = 0.5

AUTO = "auto"
Auto = Literal["auto"]
# What "auto" means where no dataset is at hand to derive a value from (an in-memory
# array, one view on its own): the values this project used as fixed defaults before
# parameters were resolved per dataset (rhapso_core.autoparams). Intensity None = the
# view's own minimum / maximum.
FALLBACKS = {"dsxy": 2, "dsz": 1, "sigma": 1.8, "threshold": 0.008, "min_intensity": None, "max_intensity": None}


class DetectionParams(StageParams):
    """Difference-of-Gaussian interest-point detection.

    Units: ``dsxy``/``dsz`` are integer factors relative to full resolution;
    ``sigma`` and ``median_filter`` are in voxels of the *downsampled working grid*
    (isotropic there, as BigStitcher does); ``combine_distance`` is in full-resolution
    view voxels; ``threshold`` is a DoG value of the normalised image
    ``(I - min_intensity) / (max_intensity - min_intensity)``.
    """

    label: str = Field("beads", min_length=1, description="interest-point label stored per view")
    method: Annotated[str, AfterValidator(check_detector_name)] = Field(
        "dog",
        description="detector (rhapso_core.detection.registry): dog (default), BigStitcher's Difference of "
        "Gaussians; a registered detector's name selects it (the chunking, levels and halo stay the same)",
    )
    dsxy: Annotated[int, Field(ge=1, le=256)] | Auto = Field(
        AUTO,
        description="downsampling factor in x and y before detection (integer, full-res voxels per "
        "working voxel); read from the coarsest pyramid level that divides it, rest averaged in memory; "
        "auto (default): per dataset from the overlap widths and the feature size (rhapso_core.autoparams)",
    )
    dsz: Annotated[int, Field(ge=1, le=256)] | Auto = Field(
        AUTO,
        description="downsampling factor in z before detection (integer); as dsxy; auto (default): the "
        "z factor that makes the working voxel closest to cubic, within the z overlap and tile depth",
    )
    min_intensity: float | None | Auto = Field(
        AUTO,
        description="intensity mapped to 0 before the DoG (image units); None: the view's minimum, "
        "taken from its coarsest pyramid level so every chunk uses the same value; auto (default): a "
        "low percentile of the dataset's coarse levels",
    )
    max_intensity: float | None | Auto = Field(
        AUTO,
        description="intensity mapped to 1 before the DoG (image units); None: the view's maximum "
        "(coarsest pyramid level); auto (default): a high percentile of the dataset's coarse levels",
    )
    median_filter: int = Field(
        0, ge=0, le=64,
        description="XY background subtraction radius r (working-grid voxels): the image minus its "
        "median over a (2r+1) x (2r+1) XY window, as Rhapso 0.4.5; 0 = off",
    )
    sigma: Annotated[float, Field(gt=0.5, le=50)] | Auto = Field(
        AUTO,
        description="DoG scale (working-grid voxels); Gaussians sqrt(s^2-0.5^2) and "
        "sqrt((s*2^(1/4))^2-0.5^2); auto (default): 1.8, or the features' own scale where the "
        "working grid cannot be matched to them",
    )
    threshold: Annotated[float, Field(gt=0)] | Auto = Field(
        AUTO,
        description="minimum |DoG| of a fitted peak (normalised intensity); candidates need threshold/3; "
        "auto (default): the value that gives a target number of points per overlap in a sample of "
        "the dataset's overlaps, never below the noise floor of the DoG",
    )
    peak_type: Literal["max", "min", "both"] = Field(
        "max", description="detect DoG maxima (bright blobs), minima (dark blobs) or both"
    )
    combine_distance: float = Field(
        0.5, ge=0,
        description="detections closer than this are merged, the strongest |DoG| kept "
        "(full-resolution view voxels); 0 = off",
    )
    max_spots: int = Field(
        0, ge=0,
        description="cap on points per view, or per overlap box in overlap_only mode (count); "
        "spatially balanced; 0 = no cap",
    )
    chunks_per_bound: int = Field(
        1, ge=1, le=100_000,
        description="number of chunks each region (view or overlap box) is split into, in total "
        "(as Rhapso 0.4.5: repeated halving of the longest axis); each chunk is one task",
    )
    max_chunk_voxels: int = Field(
        128 * 512 * 512, ge=4096,
        description="most voxels (in the downsampled working grid) one chunk task holds, halo excluded; "
        "regions larger than chunks_per_bound chunks of this size are cut into more chunks, so a task's "
        "memory (about 3x the chunk's float32 size, measured) is bounded whatever the view's size "
        "(voxels; default 128*512*512, about 0.4 GB per task)",
    )
    dimensions: Literal["auto", "2d", "3d"] = Field(
        "auto",
        description="'3d': DoG in 3-D, 26-neighbour extrema, 3-D sub-voxel fit; '2d': every plane on its "
        "own (in-plane Gaussians, 8-neighbour extrema, 2-D sub-pixel fit; points keep their plane's z); "
        "'auto' (default): '2d' for views thinner than the DoG's extent in z (2 * ceil(2 * 2^(1/4) sigma) + 1 "
        "planes, at least 3), '3d' otherwise. In 3-D, dsz is "
        "lowered where it would leave a thinner stack than that to detect in",
    )
    overlap_only: bool = Field(
        False, description="detect only inside the boxes where the view overlaps other views"
    )
    exclude_border: bool = Field(
        True,
        description="record with each view's points how far from its x and y borders the detector's "
        "localisation reads voxels past the border (the DoG: twice its outer sigma, working voxels), and "
        "leave matches there out of the solve where a pair keeps at least half of its matches and the "
        "solver's min_matches without them and their offset from the pair's other matches outweighs what "
        "they are worth (rhapso_core.pipeline.border_matches): such positions are pushed off by up to a "
        "quarter working voxel, differently in the two views of an overlap. Every point is still "
        "detected, stored and matched. false: the solve uses every match (BigStitcher)",
    )
    channels: list[int] | None = Field(
        None,
        description="channel ids whose views get interest points; None (default): every channel. Channels may "
        "image different structures and the grouped solve pools the matches of all of them, so using every "
        "channel never loses a usable channel; list one (e.g. a bead or nuclear channel) to detect and match "
        "only there (detection and matching time scale with the channels used).",
    )

    @model_validator(mode="after")
    def _check_range(self):
        lo, hi = self.min_intensity, self.max_intensity
        if lo not in (None, AUTO) and hi not in (None, AUTO) and not hi > lo:
            raise ValueError(
                f"max_intensity ({hi}) must be greater than min_intensity ({lo})"
            )
        return self

    def auto_fields(self) -> list[str]:
        """Names of the parameters still set to ``auto``."""
        return [k for k in FALLBACKS if getattr(self, k) == AUTO]

    def concrete(self) -> "DetectionParams":
        """These parameters with every ``auto`` replaced by its dataset-free fallback.

        For code that works on one array or one view with no dataset to derive a value
        from; datasets go through :func:`rhapso_core.autoparams.resolve_parameters`.
        """
        auto = self.auto_fields()
        return self.model_copy(update={k: FALLBACKS[k] for k in auto}) if auto else self

    def factors_zyx(self) -> tuple[int, int, int]:
        """Requested total downsampling factor (z, y, x) (``auto``: the fallbacks)."""
        p = self.concrete()
        return (int(p.dsz), int(p.dsxy), int(p.dsxy))
