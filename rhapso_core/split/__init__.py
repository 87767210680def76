"""Split-dataset utility: cut deep views into overlapping sub-views for split-affine alignment.

:func:`split_dataset` reads a BigStitcher XML, cuts every view into a grid of
sub-views (BigStitcher's fixed-overlap distribution, offsets aligned to the
coarsest pyramid factor), writes a new XML in BigStitcher's split layout
(``split.viewerimgloader``) and a point store holding the input's interest points
moved into the sub-views plus *fake* correspondences that tie neighbouring
sub-views of one tile together. A split-affine solve
(:func:`rhapso_core.pipeline.solve.solve_dataset` with both labels)
then uses the real matches at full weight and the fake ones at ``fake_weight``.

Frames: sub-view voxel ``p`` is parent voxel ``p + offset`` (x y z); the split XML
gives every sub-view ``view_to_world(parent) @ translation(offset)``.

Example
-------
>>> from rhapso_core.split import SplitParams, split_dataset   # doctest: +SKIP
>>> r = split_dataset("aligned.xml", "split.xml", SplitParams(target_image_size=(2048, 2048, 512)))  # doctest: +SKIP
>>> # match r.xml with r.store, then solve labels ("beads", r.labels[-1]) with label_weights=r.label_weights
"""

from rhapso_core._lazy import lazy_exports
from .params import SplitParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.split.dataset": ('SplitError', 'SplitResult', 'data_step_xyz', 'default_split_store', 'split_dataset', 'write_split_points',),
    "rhapso_core.split.intervals": ('AxisPlan', 'SplitGeometryError', 'axis_intervals', 'distribute_intervals', 'snap_to_step', 'split_axis',),
    "rhapso_core.split.layout": ('SPLIT_TRANSFORM_NAME', 'SplitPlan', 'SubView', 'plan_split', 'pyramid_step_xyz', 'split_parents', 'split_spimdata',),
    "rhapso_core.split.points": ('draw_fake_points', 'fake_point_count', 'fake_rng', 'in_box', 'jitter_pair',),
})

__all__ = [
    "SPLIT_TRANSFORM_NAME",
    "AxisPlan",
    "SplitError",
    "SplitGeometryError",
    "SplitParams",
    "SplitPlan",
    "SplitResult",
    "SubView",
    "axis_intervals",
    "data_step_xyz",
    "default_split_store",
    "distribute_intervals",
    "draw_fake_points",
    "fake_point_count",
    "fake_rng",
    "in_box",
    "jitter_pair",
    "plan_split",
    "pyramid_step_xyz",
    "snap_to_step",
    "split_axis",
    "split_dataset",
    "split_parents",
    "split_spimdata",
    "write_split_points",
]
