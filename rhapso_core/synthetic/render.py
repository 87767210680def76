"""Render a tile: evaluate the specimen at the tile's voxel positions, then add camera noise.

A warped tile (:class:`~rhapso_core.synthetic.warp.ZWarp`) shifts each z plane as a
whole, so every plane is still an affine image of the specimen: it is rendered
plane by plane with that plane's affine, which keeps the analytic kernels exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.synthetic import _kernels
from rhapso_core.synthetic.geometry import STREAM_NOISE, TileSpec, seed_sequence
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.specimen import AnalyticSpecimen, VolumeSpecimen
from rhapso_core.synthetic.warp import ZWarp

__all__ = ["render_tile", "apply_camera_noise", "tile_affine_um", "acquire_tile"]

# Primitives are cut off beyond this many sigmas: exp(-4.5^2 / 2) ~ 4e-5 of the peak.
N_SIGMA = 4.5
_SLAB_VOXELS = 1 << 21  # map_coordinates works on slabs of about this many voxels


def tile_affine_um(tile: TileSpec, params: SyntheticParams, which: str = "true") -> np.ndarray:
    """A tile's view voxel -> um affine (xyz): its world affine scaled by ``world_unit_um``."""
    affine = tile.true_affine if which == "true" else tile.nominal_affine
    return tf.scaling([params.world_unit_um] * 3) @ affine


def _render_analytic(
    spec: AnalyticSpecimen, affine_um: np.ndarray, shape_zyx: tuple[int, int, int], warp: ZWarp | None = None
) -> np.ndarray:
    if warp is None:
        return _render_analytic_affine(spec, affine_um, shape_zyx)
    # Plane z of a warped tile: voxel (x, y) sits at affine @ (x + s_x, y + s_y, z + s_z),
    # i.e. an affine image of the plane with a shifted origin.
    nz, ny, nx = shape_zyx
    out = np.empty(shape_zyx, dtype=np.float32)
    z = np.arange(nz, dtype=np.float64)
    origin = warp.shift(z)
    origin[:, 2] += z
    for k in range(nz):
        plane = affine_um @ tf.translation(origin[k])
        out[k : k + 1] = _render_analytic_affine(spec, plane, (1, ny, nx))
    return out


def _render_analytic_affine(spec: AnalyticSpecimen, affine_um: np.ndarray, shape_zyx: tuple[int, int, int]) -> np.ndarray:
    lin = np.ascontiguousarray(affine_um[:3, :3], dtype=np.float64)
    t = np.ascontiguousarray(affine_um[:3, 3], dtype=np.float64)
    inv_lin = np.ascontiguousarray(np.linalg.inv(lin))
    out = np.empty(shape_zyx, dtype=np.float32)
    _kernels.background(
        out, lin, t, float(spec.background),
        np.ascontiguousarray(spec.cos_wavevector, dtype=np.float64).reshape(-1, 3),
        np.ascontiguousarray(spec.cos_amplitude, dtype=np.float64),
        np.ascontiguousarray(spec.cos_phase, dtype=np.float64),
    )
    if spec.n_blobs:
        _kernels.splat_blobs(
            out, lin, t, inv_lin,
            np.ascontiguousarray(spec.blob_centres_um, dtype=np.float64),
            np.ascontiguousarray(spec.blob_sigma_um, dtype=np.float64),
            np.ascontiguousarray(spec.blob_amplitude, dtype=np.float64),
            N_SIGMA,
        )
    if spec.fibre_p0_um.shape[0]:
        # Fibres combine by maximum (a crossing is not twice as bright as one fibre), so
        # they go to their own buffer first.
        fib = np.zeros(shape_zyx, dtype=np.float32)
        _kernels.splat_segments(
            fib, lin, t, inv_lin,
            np.ascontiguousarray(spec.fibre_p0_um, dtype=np.float64),
            np.ascontiguousarray(spec.fibre_p1_um, dtype=np.float64),
            np.ascontiguousarray(spec.fibre_sigma_um, dtype=np.float64),
            np.ascontiguousarray(spec.fibre_amplitude, dtype=np.float64),
            N_SIGMA,
        )
        out += fib
    return out


def _render_volume(
    spec: VolumeSpecimen, affine_um: np.ndarray, shape_zyx: tuple[int, int, int], order: int, warp: ZWarp | None = None
) -> np.ndarray:
    # view voxel (xyz) -> volume voxel (xyz), then to (z, y, x) for map_coordinates.
    to_vol = tf.scaling(1.0 / np.asarray(spec.voxel_size_xyz)) @ tf.translation(-np.asarray(spec.origin_um)) @ affine_um
    m = tf.xyz_to_zyx(to_vol)
    data = spec.coefficients(order)
    nz, ny, nx = shape_zyx
    out = np.empty(shape_zyx, dtype=np.float32)
    grid_yx = np.stack(np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij"))
    step = max(1, _SLAB_VOXELS // max(ny * nx, 1))
    for z0 in range(0, nz, step):
        z1 = min(z0 + step, nz)
        zz = np.broadcast_to(np.arange(z0, z1, dtype=np.float64)[:, None, None], (z1 - z0, ny, nx))
        vox = np.stack([zz, np.broadcast_to(grid_yx[0], zz.shape), np.broadcast_to(grid_yx[1], zz.shape)])
        if warp is not None:
            shift_zyx = warp.shift(np.arange(z0, z1, dtype=np.float64))[:, ::-1]  # (planes, 3) z y x
            vox = vox + shift_zyx.T[:, :, None, None]
        coords = np.einsum("ij,j...->i...", m[:3, :3], vox) + m[:3, 3].reshape(3, 1, 1, 1)
        out[z0:z1] = ndimage.map_coordinates(
            data, coords, order=order, mode="constant", cval=0.0, prefilter=False, output=np.float32
        )
    return out


def render_tile(
    specimen: AnalyticSpecimen | VolumeSpecimen,
    affine_um: np.ndarray,
    size_xyz: Sequence[int],
    interpolation_order: int = 1,
    warp: ZWarp | None = None,
) -> np.ndarray:
    """Noise-free image (photons) of ``specimen`` seen by a tile.

    Parameters
    ----------
    specimen : AnalyticSpecimen or VolumeSpecimen
        What is imaged (um frame, xyz).
    affine_um : (4, 4) ndarray
        The tile's view voxel -> um affine (xyz); voxel centres are integers.
    size_xyz : sequence of int
        Tile size (view voxels, x y z).
    interpolation_order : int, default 1
        Spline order used to sample a :class:`VolumeSpecimen` (ignored for analytic ones).
    warp : ZWarp, optional
        Non-affine distortion: voxel ``v`` shows the specimen at ``affine_um @ warp.apply(v)``.
        None (default): none.

    Returns
    -------
    (Z, Y, X) float32 ndarray
        The specimen at every voxel centre; a volume specimen reads 0 outside its extent.
    """
    shape_zyx = (int(size_xyz[2]), int(size_xyz[1]), int(size_xyz[0]))
    affine_um = np.asarray(affine_um, dtype=np.float64)
    if isinstance(specimen, AnalyticSpecimen):
        return _render_analytic(specimen, affine_um, shape_zyx, warp)
    if isinstance(specimen, VolumeSpecimen):
        return _render_volume(specimen, affine_um, shape_zyx, int(interpolation_order), warp)
    raise TypeError(f"specimen must be AnalyticSpecimen or VolumeSpecimen, got {type(specimen).__name__}")


def apply_camera_noise(
    photons: np.ndarray,
    rng: np.random.Generator | None,
    read_noise: float = 2.0,
    gain: float = 1.0,
    offset: float = 100.0,
) -> np.ndarray:
    """Camera counts (uint16) of an expected photon image.

    ``counts = gain * Poisson(photons) + Normal(0, read_noise) + offset``, rounded and
    clipped to [0, 65535]. With ``rng=None`` no noise is drawn:
    ``counts = round(gain * photons + offset)``.

    Parameters
    ----------
    photons : ndarray
        Expected photons per voxel (>= 0; negatives are treated as 0).
    rng : numpy.random.Generator or None
        Source of the noise; None for a noise-free image.
    read_noise : float, default 2.0
        Gaussian read noise sigma (counts).
    gain : float, default 1.0
        Counts per photon.
    offset : float, default 100.0
        Camera baseline (counts).
    """
    lam = np.maximum(np.asarray(photons, dtype=np.float64), 0.0)
    if rng is None:
        counts = gain * lam + offset
    else:
        counts = gain * rng.poisson(lam).astype(np.float64)
        if read_noise > 0:
            counts += rng.normal(0.0, read_noise, size=lam.shape)
        counts += offset
    return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def acquire_tile(
    specimen: AnalyticSpecimen | VolumeSpecimen, tile: TileSpec, params: SyntheticParams
) -> np.ndarray:
    """The uint16 (z, y, x) image a camera records of ``tile`` at its true pose and warp (seeded per tile)."""
    clean = render_tile(specimen, tile_affine_um(tile, params), tile.size_xyz, params.interpolation_order, tile.warp)
    rng = np.random.default_rng(seed_sequence(params.seed, STREAM_NOISE, tile.setup)) if params.noise else None
    return apply_camera_noise(clean, rng, params.read_noise, params.gain, params.camera_offset)
