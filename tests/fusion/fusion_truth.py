"""Ground truth for fusion tests: a smooth specimen in world, cut into overlapping tiles.

The specimen is a volume on the world grid (world unit = 1 voxel of the specimen,
origin at specimen voxel 0). A tile with pose ``A`` (view voxel xyz -> world xyz)
holds the specimen sampled at ``A @ v`` (cubic spline; the specimen is smooth, so
the tiles are the specimen up to ~1e-3 relative). Tiles are ArraySources with a
2-level pyramid (mean downsampled by 2).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionView
from rhapso_core.image_source import ArraySource
from rhapso_core.multiscale import mean_downsample


def make_specimen(shape_zyx=(44, 150, 150), seed=0) -> np.ndarray:
    """Smooth random texture plus bright blobs, float64 in about [0, 1000]."""
    rng = np.random.default_rng(seed)
    tex = ndimage.gaussian_filter(rng.standard_normal(shape_zyx), 3.0)
    tex = (tex - tex.min()) / np.ptp(tex)
    blobs = np.zeros(shape_zyx)
    idx = tuple(rng.integers(0, n, 60) for n in shape_zyx)
    blobs[idx] = 1.0
    blobs = ndimage.gaussian_filter(blobs, 2.5)
    blobs /= blobs.max()
    return 600.0 * tex + 400.0 * blobs


def sample_world(specimen: np.ndarray, world_xyz: np.ndarray) -> np.ndarray:
    """Specimen values at world points ``(..., 3)`` xyz (cubic spline)."""
    coords = np.moveaxis(world_xyz[..., ::-1], -1, 0)
    return ndimage.map_coordinates(specimen, coords, order=3, mode="nearest")


def tile_poses(
    grid_xy=(2, 2), tile_xyz=(84, 84, 36), step_xy=(60, 60), origin_xyz=(6.0, 6.0, 4.0),
    max_rot_deg=1.5, seed=1,
):
    """View voxel -> world affines of a grid of tiles: translation + small rotation about z."""
    rng = np.random.default_rng(seed)
    poses = []
    centre = (np.asarray(tile_xyz, np.float64) - 1) / 2
    for j in range(grid_xy[1]):
        for i in range(grid_xy[0]):
            ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
            c, s = np.cos(ang), np.sin(ang)
            rot = np.eye(4)
            rot[:2, :2] = [[c, -s], [s, c]]
            about = tf.translation(centre) @ rot @ tf.translation(-centre)
            shift = np.asarray(origin_xyz) + [i * step_xy[0], j * step_xy[1], 0.0]
            shift = shift + rng.uniform(-1.5, 1.5, 3) * [1, 1, 0.3]
            poses.append(tf.translation(shift) @ about)
    return poses


def render_tile(specimen: np.ndarray, pose: np.ndarray, tile_xyz, dtype=np.float32) -> np.ndarray:
    nx, ny, nz = tile_xyz
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    v = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float64)
    vals = sample_world(specimen, tf.apply(pose, v)).reshape(nz, ny, nx)
    return vals.astype(dtype)


def tiles_to_views(tiles, poses, levels=2) -> list[FusionView]:
    views = []
    for k, (t, p) in enumerate(zip(tiles, poses)):
        lv = [t]
        for _ in range(levels - 1):
            lv.append(mean_downsample(lv[-1], (2, 2, 2)))
        factors = [(2**i,) * 3 for i in range(levels)]
        views.append(FusionView(ArraySource(lv, factors), p, tuple(t.shape[::-1]), k))
    return views


class CountingSource:
    """Wraps an ImageSource and counts reads per level."""

    def __init__(self, inner):
        self.inner = inner
        self.reads: dict[int, int] = {}

    dtype = property(lambda self: self.inner.dtype)
    n_levels = property(lambda self: self.inner.n_levels)

    def level_shape(self, level):
        return self.inner.level_shape(level)

    def level_factors(self, level):
        return self.inner.level_factors(level)

    def read(self, box, level=0):
        self.reads[level] = self.reads.get(level, 0) + 1
        return self.inner.read(box, level)
