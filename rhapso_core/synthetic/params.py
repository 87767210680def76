"""Parameters of a synthetic tiled acquisition (specimen, tile grid, camera, output)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from rhapso_core.params import StageParams
from rhapso_core.synthetic.warp import max_z_slope

__all__ = ["SyntheticParams"]

_Count = Annotated[int, Field(ge=1, le=64)]
_TileVox = Annotated[int, Field(ge=8, le=8192)]
# Along z a tile may be a single plane (a 2-D mosaic) or a thin stack.
_TilePlanes = Annotated[int, Field(ge=1, le=8192)]
_VoxUm = Annotated[float, Field(gt=0.0, le=1000.0)]
_Jitter = Annotated[float, Field(ge=0.0, le=200.0)]
_Chunk = Annotated[int, Field(ge=8, le=4096)]
_ChunkZ = Annotated[int, Field(ge=1, le=4096)]
_PosUm = Annotated[float, Field(gt=0.0, le=1.0e4)]
_Photons = Annotated[float, Field(ge=0.0, le=6.0e4)]
_WarpVox = Annotated[float, Field(ge=0.0, le=1000.0)]


def _check_range(name: str, lo_hi: tuple[float, float]) -> None:
    if lo_hi[0] > lo_hi[1]:
        raise ValueError(f"{name}: minimum {lo_hi[0]} exceeds maximum {lo_hi[1]}")


class SyntheticParams(StageParams):
    """A tiled acquisition of an analytic (or user-given) specimen.

    Axis order of every ``*_xyz`` field is x, y, z. Lengths of the specimen are in
    micrometres (um); tile geometry in view voxels; intensities in photons.
    """

    # --- tile grid -------------------------------------------------------------------
    grid: tuple[_Count, _Count, _Count] = Field(
        (3, 2, 1), description="Number of tiles along x, y, z (tiles)."
    )
    tile_size_xyz: tuple[_TileVox, _TileVox, _TilePlanes] = Field(
        (256, 256, 64), description="Tile size along x, y, z (view voxels); z may be 1 (a single-plane tile)."
    )
    overlap: float = Field(
        0.12, ge=0.0, le=0.5, description="Nominal overlap of neighbouring tiles (fraction of the tile size)."
    )
    voxel_size_xyz: tuple[_VoxUm, _VoxUm, _VoxUm] = Field(
        (0.5, 0.5, 2.0), description="Voxel size along x, y, z (um)."
    )
    world_unit: Literal["finest_voxel", "um"] = Field(
        "finest_voxel",
        description=(
            "Unit of the XML world frame: 'finest_voxel' (BigStitcher's convention: the calibration "
            "transform divides voxel sizes by the smallest one) or 'um'."
        ),
    )

    # --- true pose of each tile relative to its nominal stage position ----------------
    jitter_voxels: tuple[_Jitter, _Jitter, _Jitter] = Field(
        (3.0, 3.0, 1.0),
        description="Stage error: tile centre displaced uniformly within +-jitter along x, y, z (view voxels).",
    )
    rotation_deg: float = Field(
        0.0, ge=0.0, le=10.0, description="Tile rotation about its centre: random axis, angle uniform in +-value (degrees)."
    )
    scale_jitter: float = Field(
        0.0, ge=0.0, le=0.1, description="Per-axis tile scale error uniform in +-value (fraction)."
    )
    shear: float = Field(
        0.0, ge=0.0, le=0.1, description="Tile shear: xy, xz, yz entries uniform in +-value (fraction)."
    )

    pose_axes: Literal["3d", "xy"] = Field(
        "3d",
        description=(
            "Axes of the pose errors: '3d' (default) rotates about a random axis and scales / shears / "
            "jitters every axis; 'xy' keeps every error in the x, y plane (rotation about z, x y scale and "
            "xy shear, no z jitter), the truth of a 2-D mosaic or of a thin stack imaged plane by plane."
        ),
    )

    warp_amplitude_voxels: tuple[_WarpVox, _WarpVox, _WarpVox] = Field(
        (0.0, 0.0, 0.0),
        description=(
            "Smooth non-affine tile distortion: view voxel v is imaged at true_affine(v + a * s * sin(2 pi "
            "warp_periods v_z / depth + phase)), amplitude a along x, y, z (view voxels; default 0 = off); "
            "phase and sign s are drawn per tile."
        ),
    )
    warp_periods: float = Field(
        1.0, gt=0.0, le=100.0, description="Sine periods of the warp over the tile depth (periods; default 1)."
    )

    # --- multiview acquisition (channels, illuminations, timepoints) ------------------
    channels: int = Field(
        1, ge=1, le=16,
        description="Channels per tile (channels); channel c > 0 images its own specimen (drawn with a seed "
        "derived from `seed` and c), at the same tile poses.",
    )
    illuminations: int = Field(
        1, ge=1, le=2,
        description="Illumination sides per tile and channel (1 or 2): side 0 lights the specimen from low x, "
        "side 1 from high x, each attenuated along x by `illumination_attenuation`.",
    )
    illumination_attenuation: float = Field(
        1.5, ge=0.0, le=20.0,
        description="Light-sheet attenuation across the specimen along x: intensity times exp(-a * d), d the "
        "depth from the lit side as a fraction of the specimen width (dimensionless); used only when "
        "illuminations > 1.",
    )
    timepoints: int = Field(1, ge=1, le=64, description="Timepoints (timepoints); every tile is imaged at each.")
    timepoint_drift_voxels: tuple[_Jitter, _Jitter, _Jitter] = Field(
        (2.0, 2.0, 1.0),
        description="Specimen drift between timepoints: at each timepoint > 0 the specimen is displaced "
        "uniformly within +-value along x, y, z relative to timepoint 0 (view voxels); used only when "
        "timepoints > 1.",
    )

    # --- tile brightness errors (see rhapso_core.synthetic.intensity) -----------------
    tile_gain_spread: float = Field(
        0.0, ge=0.0, le=0.9,
        description="Per-view signal gain drawn uniformly in [1 - value, 1 + value] (fraction; default 0 = "
        "none): laser power, exposure or bleaching differing between tiles.",
    )
    vignetting: float = Field(
        0.0, ge=0.0, le=0.45,
        description="In-plane fall-off of every tile's signal: times 1 - v (u^2 + w^2), u, w in [-1, 1] across "
        "the tile's x and y (fraction at the middle of an edge, twice that at the corners; default 0 = none).",
    )

    # --- specimen ----------------------------------------------------------------------
    blob_count: int | None = Field(
        None, ge=0, le=2_000_000, description="Number of nucleus-like blobs; None uses blob_density (blobs)."
    )
    blob_density: float = Field(
        300.0, ge=0.0, le=1.0e5, description="Blobs per 10^6 um^3 of specimen when blob_count is None (1 / um^3 * 1e6)."
    )
    blob_sigma_um: tuple[_PosUm, _PosUm] = Field(
        (1.5, 3.0), description="Range of blob Gaussian sigma, uniform (um)."
    )
    blob_amplitude: tuple[_Photons, _Photons] = Field(
        (300.0, 3000.0), description="Range of blob peak brightness, log-uniform (photons)."
    )
    fibre_count: int = Field(20, ge=0, le=100_000, description="Number of fibres (tubes along smooth curves).")
    fibre_sigma_um: tuple[_PosUm, _PosUm] = Field(
        (0.6, 1.2), description="Range of fibre cross-section Gaussian sigma, uniform (um)."
    )
    fibre_length_um: tuple[_PosUm, _PosUm] = Field(
        (60.0, 300.0), description="Range of fibre length, uniform (um)."
    )
    fibre_amplitude: tuple[_Photons, _Photons] = Field(
        (100.0, 600.0), description="Range of fibre peak brightness, uniform (photons)."
    )
    background: float = Field(100.0, ge=0.0, le=6.0e4, description="Mean background level (photons).")
    background_modulation: float = Field(
        0.3, ge=0.0, le=0.95, description="Peak relative modulation of the background by low-frequency cosines (fraction)."
    )
    margin_um: float = Field(
        20.0, ge=0.0, le=1.0e4, description="Specimen extends this far beyond the union of tiles (um)."
    )

    # --- camera --------------------------------------------------------------------------
    noise: bool = Field(True, description="Add Poisson photon noise and Gaussian read noise.")
    read_noise: float = Field(2.0, ge=0.0, le=1000.0, description="Gaussian read noise sigma (counts).")
    gain: float = Field(1.0, gt=0.0, le=100.0, description="Camera gain (counts per photon).")
    camera_offset: float = Field(100.0, ge=0.0, le=30000.0, description="Camera baseline added to every voxel (counts).")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of every random choice; same seed gives identical bytes.")

    # --- user-given volume ------------------------------------------------------------------
    interpolation_order: int = Field(
        1, ge=0, le=3, description="Spline order used to sample a user-given volume at tile voxels (0-3)."
    )

    # --- output ----------------------------------------------------------------------------
    n_levels: int = Field(3, ge=1, le=10, description="Pyramid levels written per tile (levels).")
    ngff_version: Literal["0.4", "0.5"] = Field("0.4", description="OME-NGFF version of the tile images.")
    chunk_size_xyz: tuple[_Chunk, _Chunk, _ChunkZ] = Field(
        (128, 128, 64), description="Zarr chunk shape along x, y, z (voxels)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "SyntheticParams":
        _check_range("blob_sigma_um", self.blob_sigma_um)
        _check_range("blob_amplitude", self.blob_amplitude)
        _check_range("fibre_sigma_um", self.fibre_sigma_um)
        _check_range("fibre_length_um", self.fibre_length_um)
        _check_range("fibre_amplitude", self.fibre_amplitude)
        for axis, (j, w, n, g) in enumerate(
            zip(self.jitter_voxels, self.warp_amplitude_voxels, self.tile_size_xyz, self.grid)
        ):
            width = self.overlap * n
            # Jitter (and warp) of two neighbours adds up; beyond the overlap width tiles could lose contact.
            if g > 1 and w == 0 and 2.0 * j >= width:
                raise ValueError(
                    f"jitter_voxels[{axis}]={j} is too large for an overlap of {width:g} voxels "
                    f"(need 2 * jitter < overlap * tile_size_xyz[{axis}])"
                )
            if g > 1 and 2.0 * (j + w) >= width:
                raise ValueError(
                    f"jitter_voxels[{axis}] + warp_amplitude_voxels[{axis}] = {j + w:g} is too large for an overlap "
                    f"of {width:g} voxels (need 2 * (jitter + warp amplitude) < overlap * tile_size_xyz[{axis}])"
                )
        slope = max_z_slope(self.warp_amplitude_voxels[2], self.warp_periods, self.tile_size_xyz[2])
        if slope >= 1.0:
            raise ValueError(
                f"warp_amplitude_voxels[2]={self.warp_amplitude_voxels[2]:g} with warp_periods={self.warp_periods:g} "
                f"over {self.tile_size_xyz[2]} planes folds the stack (need 2 pi periods a_z / tile depth < 1)"
            )
        return self

    @property
    def world_unit_um(self) -> float:
        """Length of one XML world unit (um)."""
        return min(self.voxel_size_xyz) if self.world_unit == "finest_voxel" else 1.0
