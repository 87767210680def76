"""A small synthetic acquisition with tile gains and vignetting, registered at the true poses,
and the figures the acceptance tests compare: seam visibility and error against the specimen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.fusion import FusionParams, fuse_block, make_output_grid
from rhapso_core.pipeline.fuse import fusion_views
from rhapso_core.qc.fusion import level_to_world, seam_visibility
from rhapso_core.spimdata import ViewTransform, load_xml, save_xml
from rhapso_core.synthetic import GroundTruth, SyntheticParams, make_specimen, render_tile, write_dataset

# Small enough for seconds: 3 x 2 tiles of 96 x 96 x 24 voxels.
PARAMS = dict(grid=(3, 2, 1), tile_size_xyz=(96, 96, 24), voxel_size_xyz=(1.0, 1.0, 2.0), n_levels=3,
              tile_gain_spread=0.15, vignetting=0.15)


@dataclass
class Dataset:
    params: SyntheticParams
    xml: str  # registered at the true poses
    truth: GroundTruth


def make_dataset(root: Path, seed: int = 0, **overrides) -> Dataset:
    params = SyntheticParams(**{**PARAMS, "seed": seed, **overrides})
    paths = write_dataset(root, params)
    truth = GroundTruth.load(paths.ground_truth)
    sd = load_xml(str(paths.xml))
    sd = sd.with_registrations({v.view_id: (ViewTransform("truth", v.true_affine),) for v in truth.views})
    xml = str(root / "true.xml")
    save_xml(sd, xml)
    return Dataset(params, xml, truth)


@dataclass
class FusedFigures:
    seam_ratio: float  # seam_visibility ratio of the fused image (1: no seams)
    step_ratio: float  # seam_visibility step_ratio: gradient across borders / along them (1: no seams)
    error_median: float  # |fused / truth - 1| over blocks, after one global scale: median
    error_max: float  # ... and worst block


def fuse_and_measure(ds: Dataset, xml: str, correct: bool, block: int = 12,
                     strategy: str = "closest_pixel_wins") -> FusedFigures:
    """Fuse (float32; by default closest_pixel_wins, whose hard borders show every intensity
    step between tiles, where blending would spread it over the overlap) and compare with
    the noise-free specimen.

    The truth is the specimen's photons at each fused voxel; the fused signal is the
    fused counts minus the camera offset. Both are averaged over ``block`` x ``block``
    voxel columns (all planes; interpolation and noise average out) and compared after
    one global scale (relative intensities: the gauge of a correction is free).
    """
    sd = load_xml(xml)
    views = fusion_views(sd, sd.views(), xml_uri=xml if correct else None)
    grid = make_output_grid(views)
    box = tuple((0, n) for n in grid.shape_zyx)
    fused = fuse_block(box, grid, views, FusionParams(output_dtype="float32", overlap_strategy=strategy)).astype(np.float64)
    geometry = {v.view_id: (v.view_to_world, v.size_xyz) for v in views}
    # On a coarse level (4 x 4 in-plane means), as the QC report reads it: there noise no
    # longer hides an intensity step between tiles.
    nz0, ny0, nx0 = fused.shape
    coarse = fused[:, : ny0 // 4 * 4, : nx0 // 4 * 4].reshape(nz0, ny0 // 4, 4, nx0 // 4, 4).mean(axis=(2, 4))
    to_world = level_to_world(grid.origin_xyz, grid.voxel_size_xyz, (1, 4, 4))
    seam = seam_visibility(coarse, to_world, geometry)
    specimen = make_specimen(ds.params)
    to_um = tf.scaling([ds.params.world_unit_um] * 3) @ grid.out_to_world()
    truth = render_tile(specimen, to_um, grid.shape_zyx[::-1]).astype(np.float64)
    signal = (fused - ds.params.camera_offset) / ds.params.gain
    nz, ny, nx = fused.shape
    ty, tx = ny // block, nx // block
    def blocks(a):
        return a[:, : ty * block, : tx * block].reshape(nz, ty, block, tx, block).mean(axis=(0, 2, 4))
    inside = (fused > 0).astype(np.float64)  # voxels some view covers
    covered = blocks(inside) >= 0.9
    ratio = (blocks(signal * inside) / blocks(truth * inside))[covered]
    ratio /= np.median(ratio)
    err = np.abs(ratio - 1.0)
    return FusedFigures(float(seam["ratio"]), float(seam["step_ratio"]), float(np.median(err)), float(err.max()))
