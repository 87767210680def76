"""Parameters of intensity correction (per-view maps and the per-channel flat field)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from rhapso_core.params import StageParams

__all__ = ["IntensityParams"]

_Cells = Annotated[int, Field(ge=1, le=64)]


class IntensityParams(StageParams):
    """How tile brightness differences are estimated from overlaps and removed at fusion.

    Every pair of views of one timepoint, channel and illumination whose boxes overlap
    under the current registrations is sampled at the same world points (a coarse
    pyramid level); one global least-squares fit then finds each view's linear map
    (and, with ``flatfield``, each channel's vignetting profile and dark level) that
    makes overlapping views agree. Axis order of ``cells`` is x, y, z.

    Defaults: ``model='view'`` with ``flatfield`` on is the physical model of a tiled
    light-sheet or confocal acquisition (laser power, exposure and bleaching scale a
    whole tile; the objective's vignetting is the same for every tile of a channel).
    A grid of cells per view (BigStitcher-Spark's model) sees only the cells that lie
    in overlaps; the centre of a tile is then set by smoothness alone (each view's mean
    map is held at its one-map fit), so it is the option for smooth in-tile changes
    (bleaching along z) rather than the default.
    """

    enabled: bool = Field(
        False,
        description="Run intensity correction in the alignment flow (after the last round). Off by default: "
        "it changes fused intensities, which a user must ask for (BigStitcher and BigStitcher-Spark "
        "also run it only on request).",
    )
    model: Literal["view", "grid"] = Field(
        "view", description="'view': one linear map y = a x + b per view (BigStitcher's IntensityAdjustments); "
        "'grid': one per cell of `cells` inside each view (BigStitcher-Spark's intensity solver).",
    )
    cells: tuple[_Cells, _Cells, _Cells] = Field(
        (4, 4, 1), description="Cells per view along x, y, z for model='grid' (cells; BigStitcher-Spark uses 8, 8, 8).",
    )
    flatfield: bool = Field(
        True, description="Also fit one vignetting profile F(u, w) per channel (a 2-D polynomial over the tile's "
        "in-plane position, F = 1 at the centre) acting above a dark level fitted with it.",
    )
    flatfield_degree: int = Field(
        2, ge=2, le=6, description="Total degree of the flat-field polynomial, even terms only (2: u^2, u w, w^2, "
        "the paraxial vignetting model; 4 adds the quartic terms).",
    )
    offsets: bool = Field(
        False, description="Fit a free offset b per view (or cell) besides the gain. Off (default): each map is "
        "a gain about the dark level, y - d = a (x - d) (d: `dark_level`, the flat field's, else 0), the "
        "physical model of laser power, exposure and bleaching; a free offset trades off against the gain over "
        "the narrow range of intensities the overlaps see, which biases both.",
    )
    dark_level: float | None = Field(
        None, ge=0.0, description="Camera dark level (counts): the offset under the signal that vignetting "
        "scales. None: the level under which overlapping views agree best (flatfield only), well determined "
        "where overlaps span a range of brightness (measured on generated tiles with a true level of 100: "
        "95-104 on textured content, 18-109 on smooth content, where it trades off against the fall-off; "
        "fused worst block 2.1 %); give "
        "the camera's documented offset when it is known.",
    )
    samples_per_pair: int = Field(
        5_000, ge=100, le=10_000_000, description="World points sampled on a regular grid over each overlap (points).",
    )
    max_voxels: int = Field(
        4_000_000, ge=1000, description="Each view is sampled at its finest pyramid level with at most this many "
        "voxels (voxels): a coarse level averages noise and keeps the reads small.",
    )
    min_samples: int = Field(
        200, ge=10, description="A pair with fewer sample points inside both views is not used (points).",
    )
    regularisation: float = Field(
        0.01, ge=0.0, le=100.0, description="Weight of each cell's pull towards the identity map (a = 1, b = 0), "
        "in overlap samples of that cell (0.01: a hundredth of one sample; BigStitcher-Spark's lambda is 0.01): "
        "it decides only what the overlaps leave undetermined (dimensionless).",
    )
    smoothness: float = Field(
        0.1, ge=0.0, le=100.0, description="model='grid': weight tying neighbouring cells of a view together "
        "(relative to the mean information of the view's cells: 0.1 is a tenth of all their samples).",
    )
    outlier_mad: float = Field(
        4.0, gt=0.0, le=100.0, description="After a first fit, samples whose residual exceeds this many robust "
        "standard deviations (1.4826 MAD) are dropped and the fit repeated (misregistered or moving content).",
    )
    reference: Literal["mean"] | Annotated[int, Field(ge=0)] = Field(
        "mean", description="Gauge: 'mean' keeps the mean map of the views of each timepoint and channel at "
        "identity (the data's overall brightness is kept); a setup id keeps that view unchanged (only "
        "without `flatfield`: a fixed view does not fix the flat field's scale).",
    )

    @model_validator(mode="after")
    def _gauge(self) -> "IntensityParams":
        if self.flatfield and self.reference != "mean":
            raise ValueError("reference: a fixed view needs flatfield=false; with a flat field use 'mean'")
        return self
