"""The survey of a single-plane mosaic sees its overlaps (before: a box without depth was
'no overlapping pairs', and every 2-D dataset was resolved on fallbacks)."""

from __future__ import annotations

import numpy as np

from rhapso_core import transforms
from rhapso_core.autoparams.survey import survey_dataset
from rhapso_core.overlap import world_box_in_view
from rhapso_core.synthetic.planar_mosaic import mosaic_params
from rhapso_core.synthetic.write import write_dataset


def test_single_plane_overlaps_are_surveyed_with_their_width_in_the_plane(tmp_path):
    paths = write_dataset(tmp_path / "data", mosaic_params((2, 2), planes=1, tile_xy=(128, 128), seed=0))
    survey = survey_dataset(str(paths.xml))
    faces = [p for p in survey.pairs if p.volume_voxels >= 0.5 * max(q.volume_voxels for q in survey.pairs)]
    assert len(faces) == 4, survey.pairs  # the 2 x 2 grid's four edge overlaps (corners aside)
    for p in faces:
        assert p.flat_xyz == (False, False, True)
        assert p.across_axis in (0, 1)
        # 20 % of 128 pixels, give or take the stage error: a width in the plane, not z's thickness
        assert 15 <= p.across_world <= 35, p


def test_a_box_meets_a_plane_within_half_a_voxel():
    plane = np.eye(4)
    assert world_box_in_view(plane, (100, 100, 1), np.array([10.0, 10.0, -0.4]), np.array([20.0, 20.0, 0.4])) is not None
    assert world_box_in_view(plane, (100, 100, 1), np.array([10.0, 10.0, 0.7]), np.array([20.0, 20.0, 3.0])) is None
    assert world_box_in_view(transforms.translation([0, 0, 0.3]), (100, 100, 1),
                             np.array([10.0, 10.0, 0.0]), np.array([20.0, 20.0, 0.0])) is not None
