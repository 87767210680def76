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


def test_single_plane_mosaics_are_prealigned_by_phase_correlation(tmp_path):
    # Dense blobs (points would match every face): the phase round leads anyway, because its
    # links, fitted in blocks, also hold pairs whose points fail; a 3-D grid of the same
    # geometry is not prealigned for being 3-D.
    from rhapso_core.autoparams import resolve_parameters
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline.prealign import alignment_rounds

    paths = write_dataset(tmp_path / "data", mosaic_params((2, 2), planes=1, tile_xy=(128, 128), seed=0))
    res = resolve_parameters(str(paths.xml), PipelineParams())
    assert res.prealignment.chosen and "single_plane" in res.prealignment.cause.split(","), res.prealignment
    assert alignment_rounds(res.params, res.prealignment)[0] == "phase"
    off = resolve_parameters(str(paths.xml), PipelineParams.model_validate({"alignment": {"prealign": "off"}}))
    assert not off.prealignment.chosen
    thick = write_dataset(tmp_path / "thick", mosaic_params((2, 2), planes=8, tile_xy=(128, 128), seed=0))
    assert "single_plane" not in resolve_parameters(str(thick.xml), PipelineParams()).prealignment.cause
