"""Generated 2-D mosaics (single-plane tiles) and thin stacks, with the 3-D generator's ground truth.

:func:`mosaic_params` returns the :class:`SyntheticParams` of a grid of tiles that are a
single plane (``planes=1``) or a thin stack (3, 5, 8 ... planes), whose true poses
differ from the nominal ones only in the x, y plane (``pose_axes="xy"``): a
translation, a rigid motion (rotation about z), or an affine with about 1 % of scale
and shear. The dataset is written by :func:`~rhapso_core.synthetic.write.write_dataset`
(OME-Zarr tiles with z = 1 or a few planes, BigStitcher XML, ``ground_truth.json``) and
scored by :func:`~rhapso_core.synthetic.scoring.score`.

Example
-------
>>> from rhapso_core.synthetic.planar_mosaic import mosaic_params
>>> p = mosaic_params((3, 2), planes=1, truth="rigid")
>>> p.tile_size_xyz[2], p.grid, p.pose_axes
(1, (3, 2, 1), 'xy')
"""

from __future__ import annotations

from typing import Literal

from rhapso_core.synthetic.params import SyntheticParams

__all__ = ["MosaicTruth", "mosaic_params", "TRUTH_POSES"]

MosaicTruth = Literal["translation", "rigid", "affine"]

#: In-plane pose errors of each truth kind, on top of the stage jitter. "affine": the
#: linear part departs from a rotation by about 1 % (x, y scale within +-0.7 %, xy shear
#: within +-0.7 %).
TRUTH_POSES: dict[str, dict[str, float]] = {
    "translation": {},
    "rigid": {"rotation_deg": 1.0},
    "affine": {"rotation_deg": 1.0, "scale_jitter": 0.007, "shear": 0.007},
}


def mosaic_params(
    grid_xy: tuple[int, int],
    planes: int = 1,
    truth: MosaicTruth = "translation",
    tile_xy: tuple[int, int] = (256, 256),
    overlap: float = 0.2,
    jitter_xy_voxels: float = 4.0,
    seed: int = 0,
    **overrides,
) -> SyntheticParams:
    """Parameters of a generated single-plane mosaic or thin-stack grid.

    Parameters
    ----------
    grid_xy : (int, int)
        Tiles along x and y (one tile along z).
    planes : int, default 1
        Planes per tile: 1 for a 2-D mosaic, a few for a thin stack.
    truth : {"translation", "rigid", "affine"}
        The kind of true in-plane pose error (see :data:`TRUTH_POSES`).
    tile_xy : (int, int), default (256, 256)
        Tile size in x, y (voxels).
    overlap : float, default 0.2
        Nominal overlap of neighbours (fraction of the tile).
    jitter_xy_voxels : float, default 4
        Stage error: tile centres displaced uniformly within +- this in x and y (voxels).
    seed : int, default 0
    **overrides
        Any other :class:`SyntheticParams` field.

    Notes
    -----
    The specimen is a slab reaching 1.5 um beyond the tiles in z, of smaller and denser
    blobs than the 3-D default (sigma 0.8-1.6 um, 10000 per 10^6 um^3): a plane only shows
    the blobs within a few sigma of it, and the overlap strips of a mosaic must still
    hold enough of them to match. Voxels are
    0.5 um in x, y and 2 um in z (the thin stacks' anisotropy; irrelevant for one plane).
    """
    if truth not in TRUTH_POSES:
        raise ValueError(f"truth must be translation, rigid or affine, got {truth!r}")
    if planes < 1:
        raise ValueError(f"planes must be >= 1, got {planes}")
    fields = dict(
        grid=(int(grid_xy[0]), int(grid_xy[1]), 1),
        tile_size_xyz=(int(tile_xy[0]), int(tile_xy[1]), int(planes)),
        overlap=overlap,
        voxel_size_xyz=(0.5, 0.5, 2.0),
        jitter_voxels=(jitter_xy_voxels, jitter_xy_voxels, 0.0),
        pose_axes="xy",
        blob_density=10000.0,
        blob_sigma_um=(0.8, 1.6),
        fibre_count=10,
        margin_um=1.5,
        n_levels=2,
        chunk_size_xyz=(128, 128, max(1, int(planes))),
        seed=seed,
        **TRUTH_POSES[truth],
    )
    fields.update(overrides)
    return SyntheticParams(**fields)
