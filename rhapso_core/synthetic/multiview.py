"""Multiview acquisitions: channels, illumination sides and timepoints of one tile grid.

Every tile is imaged once per (timepoint, channel, illumination), always at the
tile's pose (the views of a tile move together, as on a microscope). What differs:

* channel ``c`` images its own specimen (a different blob / fibre set, drawn with a
  seed derived from the dataset seed and ``c``; channel 0 is the dataset's specimen);
* illumination side ``i`` multiplies the photons by ``exp(-a * d)``, ``d`` the depth
  along x from the lit side (low x for side 0, high x for side 1) as a fraction of the
  specimen's width, so each side is bright where the other is dim;
* timepoint ``t > 0`` sees the specimen displaced by a seeded drift (view voxels,
  uniform within ``+-timepoint_drift_voxels``): in the world frame of timepoint 0 the
  tile's true pose is ``translation(-drift) @ true_affine``.

Setup ids are ``(tile * channels + channel) * illuminations + illumination``, so a
single-channel single-illumination dataset keeps setup == tile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.synthetic.geometry import STREAM_NOISE, TileSpec, seed_sequence
from rhapso_core.synthetic.intensity import view_gain, vignetting_profile
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.render import apply_camera_noise, render_tile, tile_affine_um
from rhapso_core.synthetic.specimen import AnalyticSpecimen, VolumeSpecimen, make_specimen, specimen_box_um

__all__ = ["ViewSpec", "views_of", "channel_specimen", "illumination_profile", "acquire_view", "timepoint_drift_world"]

# Stream keys beyond geometry.py's (0-3): per-channel specimen seeds and timepoint drift.
STREAM_CHANNEL = 4
STREAM_DRIFT = 5


@dataclass(frozen=True)
class ViewSpec:
    """One view of a multiview acquisition: a tile seen at a timepoint, in a channel, lit from one side."""

    tile: TileSpec  # pose at this timepoint (drift included in true_affine)
    timepoint: int
    channel: int
    illumination: int
    setup: int

    @property
    def name(self) -> str:
        return self.tile.name


def setup_id(tile_index: int, channel: int, illumination: int, params: SyntheticParams) -> int:
    return (tile_index * params.channels + channel) * params.illuminations + illumination


def setup_name(tile: TileSpec, channel: int, illumination: int, params: SyntheticParams) -> str:
    name = tile.name
    if params.channels > 1:
        name += f"_ch_{channel}"
    if params.illuminations > 1:
        name += f"_ill_{illumination}"
    return name


def timepoint_drift_world(params: SyntheticParams, timepoint: int) -> np.ndarray:
    """Displacement of the specimen at ``timepoint`` relative to timepoint 0 (world units, xyz)."""
    if timepoint == 0:
        return np.zeros(3)
    rng = np.random.default_rng(seed_sequence(params.seed, STREAM_DRIFT, timepoint))
    vox = np.asarray(params.voxel_size_xyz, dtype=np.float64)
    return rng.uniform(-1.0, 1.0, 3) * np.asarray(params.timepoint_drift_voxels) * vox / params.world_unit_um


def views_of(tiles: list[TileSpec], params: SyntheticParams) -> list[ViewSpec]:
    """Every view, ordered by timepoint then setup id."""
    out = []
    for t in range(params.timepoints):
        # The specimen moved by +drift, i.e. the tile sees what sits at (pose - drift) at timepoint 0.
        shift = tf.translation(-timepoint_drift_world(params, t))
        for k, tile in enumerate(tiles):
            posed = tile if t == 0 else dataclasses.replace(tile, true_affine=shift @ tile.true_affine)
            for c in range(params.channels):
                for i in range(params.illuminations):
                    out.append(ViewSpec(posed, t, c, i, setup_id(k, c, i, params)))
    return out


def channel_specimen(params: SyntheticParams, channel: int, base: AnalyticSpecimen | VolumeSpecimen | None = None):
    """The specimen of one channel: ``base`` (or the dataset's) for channel 0, a new draw for the others."""
    if channel == 0:
        return base if base is not None else make_specimen(params)
    if isinstance(base, VolumeSpecimen):
        raise ValueError("channels > 1 needs the analytic specimen (a user-given volume has one channel)")
    seed = int(seed_sequence(params.seed, STREAM_CHANNEL, channel).generate_state(1, np.uint64)[0] >> np.uint64(1))
    return make_specimen(params.model_copy(update={"seed": seed}))


def illumination_profile(
    affine_um: np.ndarray, shape_zyx: tuple[int, int, int], side: int, params: SyntheticParams
) -> np.ndarray:
    """Relative excitation (0-1] at each voxel of a tile lit from ``side`` (0: low x, 1: high x)."""
    lo, hi = specimen_box_um(params)
    width = float(hi[0] - lo[0])
    nz, ny, nx = shape_zyx
    a = np.asarray(affine_um, dtype=np.float64)
    # World x (um) of voxel (x, y, z) is a00 x + a01 y + a02 z + t0: an outer sum, no full coordinate grid.
    x_um = (
        a[0, 0] * np.arange(nx)[None, None, :]
        + a[0, 1] * np.arange(ny)[None, :, None]
        + a[0, 2] * np.arange(nz)[:, None, None]
        + a[0, 3]
    )
    depth = (x_um - lo[0]) / width if side == 0 else (hi[0] - x_um) / width
    return np.exp(-params.illumination_attenuation * np.clip(depth, 0.0, 1.0)).astype(np.float32)


def acquire_view(specimen, view: ViewSpec, params: SyntheticParams) -> np.ndarray:
    """The uint16 (z, y, x) camera image of one view (noise seeded per view)."""
    tile = view.tile
    affine_um = tile_affine_um(tile, params)
    photons = render_tile(specimen, affine_um, tile.size_xyz, params.interpolation_order, tile.warp)
    if params.illuminations > 1:
        photons *= illumination_profile(affine_um, tile.shape_zyx, view.illumination, params)
    if params.tile_gain_spread > 0.0:
        photons *= np.float32(view_gain(params.seed, params.tile_gain_spread, view.timepoint, view.setup))
    if params.vignetting > 0.0:
        photons *= vignetting_profile(tile.shape_zyx[1], tile.shape_zyx[2], params.vignetting)[None]
    rng = None
    if params.noise:
        # View (0, tile) of channel 0, side 0 keeps the single-view stream: such datasets stay byte-identical.
        first = view.timepoint == 0 and view.channel == 0 and view.illumination == 0
        key = (tile.setup,) if first else (tile.setup, view.timepoint, view.channel, view.illumination)
        rng = np.random.default_rng(seed_sequence(params.seed, STREAM_NOISE, *key))
    return apply_camera_noise(photons, rng, params.read_noise, params.gain, params.camera_offset)
