"""Tile grid geometry: nominal stage positions and the true (jittered) pose of each tile.

Every affine here maps *view voxel* coordinates (x, y, z) to the XML *world* frame,
whose unit is ``world_unit_um`` micrometres (see :class:`SyntheticParams.world_unit`).
A microscope writes the nominal pose as two BigStitcher ``ViewTransform``\\ s,
``[Translation to Regular Grid, calibration]``; the true pose additionally moves
the tile centre by the stage error and, optionally, rotates / scales / shears the
tile about its centre and distorts it by a smooth z-dependent shift
(:class:`~rhapso_core.synthetic.warp.ZWarp`, applied to view voxels before the affine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.warp import ZWarp

__all__ = ["TileSpec", "tile_grid", "grid_extent_um", "rotation_matrix", "seed_sequence"]

# Stream keys of the seeded RNG: each concern draws from its own child sequence, so
# changing one (say the fibre count) never changes another (say the tile jitter).
STREAM_SPECIMEN = 0
STREAM_GEOMETRY = 1
STREAM_NOISE = 2
STREAM_WARP = 3


def seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    """The seed sequence of one stream (``key``) of a dataset's seed."""
    return np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key))


@dataclass(frozen=True)
class TileSpec:
    """One tile of the grid.

    Attributes
    ----------
    setup : int
        ViewSetup id (x index fastest, then y, then z).
    grid_index : tuple of int
        Tile index (i, j, k) along x, y, z.
    size_xyz : tuple of int
        Tile size (view voxels).
    voxel_size_xyz : tuple of float
        Voxel size (um).
    stage_world : (3,) ndarray
        Nominal stage position: world position of view voxel (0, 0, 0) (world units).
    calibration : (4, 4) ndarray
        View voxel -> calibrated frame: ``diag(voxel_size / world_unit_um)``.
    nominal_affine : (4, 4) ndarray
        ``translation(stage_world) @ calibration`` (view voxel -> world, xyz).
    true_affine : (4, 4) ndarray
        The pose the specimen is actually imaged with (view voxel -> world, xyz).
    jitter_world : (3,) ndarray
        Displacement of the tile centre, true minus nominal (world units).
    warp : ZWarp or None
        Non-affine distortion of the view voxels (None: none); the true mapping of
        view voxel ``v`` is ``true_affine @ warp.apply(v)`` (see :meth:`voxel_to_world`).
    """

    setup: int
    grid_index: tuple[int, int, int]
    size_xyz: tuple[int, int, int]
    voxel_size_xyz: tuple[float, float, float]
    stage_world: np.ndarray
    calibration: np.ndarray
    nominal_affine: np.ndarray
    true_affine: np.ndarray
    jitter_world: np.ndarray
    warp: ZWarp | None = None

    def voxel_to_world(self, points_xyz: np.ndarray) -> np.ndarray:
        """Exact world positions (world units) of view voxels ``(N, 3)`` (xyz), warp included."""
        p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        return tf.apply(self.true_affine, p if self.warp is None else self.warp.apply(p))

    @property
    def name(self) -> str:
        i, j, k = self.grid_index
        return f"tile_x_{i:04d}_y_{j:04d}_z_{k:04d}"

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (self.size_xyz[2], self.size_xyz[1], self.size_xyz[0])


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """3x3 rotation by ``angle_rad`` about unit ``axis`` (Rodrigues, right-handed, xyz)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1.0 - np.cos(angle_rad)) * (k @ k)


def _step_voxels(params: SyntheticParams) -> np.ndarray:
    return np.asarray(params.tile_size_xyz, dtype=np.float64) * (1.0 - params.overlap)


def grid_extent_um(params: SyntheticParams) -> tuple[np.ndarray, np.ndarray]:
    """Nominal box ``(lo, hi)`` (um, xyz) spanned by all tiles' voxel centres."""
    vox = np.asarray(params.voxel_size_xyz, dtype=np.float64)
    size = np.asarray(params.tile_size_xyz, dtype=np.float64)
    n = np.asarray(params.grid, dtype=np.float64)
    hi = ((n - 1.0) * _step_voxels(params) + size - 1.0) * vox
    return np.zeros(3), hi


def tile_grid(params: SyntheticParams) -> list[TileSpec]:
    """The tiles of ``params.grid`` with their nominal and true poses (seeded).

    Parameters
    ----------
    params : SyntheticParams
        Uses ``grid``, ``tile_size_xyz``, ``overlap``, ``voxel_size_xyz``, ``world_unit``,
        ``jitter_voxels`` (view voxels), ``rotation_deg`` (degrees), ``scale_jitter``,
        ``shear`` (fractions), ``warp_amplitude_voxels`` (view voxels), ``warp_periods``
        and ``seed``.

    Returns
    -------
    list of TileSpec
        Ordered by setup id (x index fastest). Tile (0, 0, 0) sits nominally at world 0.
    """
    unit = params.world_unit_um
    vox = np.asarray(params.voxel_size_xyz, dtype=np.float64)
    size = np.asarray(params.tile_size_xyz, dtype=np.int64)
    calib = tf.scaling(vox / unit)
    centre_cal = (size - 1.0) / 2.0 * vox / unit
    step_world = _step_voxels(params) * vox / unit
    jitter_world_max = np.asarray(params.jitter_voxels, dtype=np.float64) * vox / unit
    rng = np.random.default_rng(seed_sequence(params.seed, STREAM_GEOMETRY))
    # The warp draws from its own stream so the poses of datasets without a warp stay as they were.
    warp_rng = np.random.default_rng(seed_sequence(params.seed, STREAM_WARP))
    warp_amp = np.asarray(params.warp_amplitude_voxels, dtype=np.float64)

    nx, ny, nz = params.grid
    tiles: list[TileSpec] = []
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                # Draw every random number for every tile, even when its amplitude is 0, so
                # turning one perturbation on never reshuffles the others.
                jitter = rng.uniform(-1.0, 1.0, 3) * jitter_world_max
                axis = rng.normal(size=3)
                angle = np.deg2rad(rng.uniform(-1.0, 1.0) * params.rotation_deg)
                scale = 1.0 + rng.uniform(-1.0, 1.0, 3) * params.scale_jitter
                shear = rng.uniform(-1.0, 1.0, 3) * params.shear
                warp_phase = warp_rng.uniform(0.0, 2.0 * np.pi)
                warp_sign = warp_rng.choice([-1.0, 1.0], 3)

                if params.pose_axes == "xy":
                    # Same draws, confined to the plane: the sequence of random numbers is unchanged.
                    jitter[2] = 0.0
                    axis = np.array([0.0, 0.0, 1.0])
                    scale[2] = 1.0
                    shear[1:] = 0.0
                stage = np.array([i, j, k], dtype=np.float64) * step_world
                nominal = tf.translation(stage) @ calib
                lin = np.eye(3)
                lin[0, 1], lin[0, 2], lin[1, 2] = shear
                lin = rotation_matrix(axis, angle) @ np.diag(scale) @ lin
                about_centre = tf.translation(centre_cal) @ _linear(lin) @ tf.translation(-centre_cal)
                true = tf.translation(stage + jitter) @ about_centre @ calib
                tiles.append(
                    TileSpec(
                        setup=len(tiles),
                        grid_index=(i, j, k),
                        size_xyz=tuple(int(s) for s in size),  # type: ignore[arg-type]
                        voxel_size_xyz=tuple(float(v) for v in vox),  # type: ignore[arg-type]
                        stage_world=stage,
                        calibration=calib,
                        nominal_affine=nominal,
                        true_affine=true,
                        jitter_world=jitter,
                        warp=ZWarp(warp_amp * warp_sign, params.warp_periods, warp_phase, float(size[2]))
                        if np.any(warp_amp > 0) else None,
                    )
                )
    return tiles


def _linear(lin: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = lin
    return out
