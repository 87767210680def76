"""Synthetic tiled acquisitions with exact ground truth, and the accuracy score.

A specimen (analytic: blobs, fibres, background; or a user-given volume) is imaged
by a grid of overlapping tiles whose true poses differ from the nominal stage
positions by a seeded error. :func:`write_dataset` writes the tiles as OME-Zarr, a
BigStitcher XML with the nominal poses and a ground-truth JSON; :func:`score`
measures how close a solved registration comes to the truth. Tiles may also carry a
smooth non-affine warp along z (``warp_amplitude_voxels``); :func:`overlap_consistency`
then measures how well overlapping tiles agree, for plain and split XMLs.

Frames: specimen lengths are micrometres (x, y, z); each view's affines map view
voxels (x, y, z, voxel centres on integers) to the XML world frame, whose unit is
``SyntheticParams.world_unit_um`` (by default the finest voxel size, BigStitcher's
convention).

Example
-------
>>> from rhapso_core.synthetic import SyntheticParams, write_dataset, score   # doctest: +SKIP
>>> paths = write_dataset("out/synth", SyntheticParams(grid=(3, 2, 1)))       # doctest: +SKIP
>>> # ... detect, match, solve into out/synth/solved.xml ...
>>> print(score(paths.ground_truth, "out/synth/solved.xml").summary())         # doctest: +SKIP
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.synthetic.params import SyntheticParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.synthetic.consistency": ('OverlapConsistency', 'PairConsistency', 'overlap_consistency',),
    "rhapso_core.synthetic.geometry": ('TileSpec', 'tile_grid',),
    "rhapso_core.synthetic.render": ('acquire_tile', 'apply_camera_noise', 'render_tile', 'tile_affine_um',),
    "rhapso_core.synthetic.scoring": ('Score', 'ScoreError', 'ViewError', 'sample_points', 'score', 'solved_affines',),
    "rhapso_core.synthetic.specimen": ('AnalyticSpecimen', 'VolumeSpecimen', 'load_blobs_csv', 'load_tiff_planes', 'make_specimen', 'save_blobs_csv',),
    "rhapso_core.synthetic.truth": ('GroundTruth', 'ViewBlobs', 'ViewTruth', 'view_blob_centres',),
    "rhapso_core.synthetic.warp": ('WarpError', 'ZWarp',),
    "rhapso_core.synthetic.write": ('DatasetPaths', 'pyramid_steps', 'write_dataset',),
})

__all__ = [
    "SyntheticParams",
    "TileSpec",
    "tile_grid",
    "AnalyticSpecimen",
    "VolumeSpecimen",
    "make_specimen",
    "load_tiff_planes",
    "save_blobs_csv",
    "load_blobs_csv",
    "render_tile",
    "apply_camera_noise",
    "acquire_tile",
    "tile_affine_um",
    "GroundTruth",
    "ViewTruth",
    "ViewBlobs",
    "view_blob_centres",
    "Score",
    "ViewError",
    "ScoreError",
    "score",
    "sample_points",
    "solved_affines",
    "overlap_consistency",
    "OverlapConsistency",
    "PairConsistency",
    "ZWarp",
    "WarpError",
    "write_dataset",
    "DatasetPaths",
    "pyramid_steps",
]
