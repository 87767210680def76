"""auto chooses phase correlation for 2-D mosaics whose overlaps hold too few points (issue 24, item 2).

Generated single-plane 2 x 2 mosaics (rhapso_core.synthetic.planar_mosaic), resolved with
every parameter on auto and aligned in-process. Tolerance for the phase-aligned sparse
mosaic: 0.5 pixel RMS against the ground truth (measured 0.39, 0.28 with phase links fitted in blocks; phase correlation of
overlaps holding a few faint blobs) and 4x better than the stage positions (2.2 pixel).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.autoparams import resolve_parameters
from rhapso_core.config import PipelineParams
from rhapso_core.detection import DetectionParams
from rhapso_core.pipeline.inprocess import align_in_process
from rhapso_core.pipeline.prealign import alignment_rounds
from rhapso_core.planar_rounds import choose_rounds, expected_overlap_points
from rhapso_core.synthetic.planar_mosaic import mosaic_params
from rhapso_core.synthetic.scoring import score
from rhapso_core.synthetic.write import write_dataset

SPARSE = 300.0  # blobs per 10^6 um^3: a few per overlap strip of a single plane


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("sparse") / "data",
                         mosaic_params((2, 2), planes=1, seed=1, blob_density=SPARSE))


def test_sparse_mosaic_is_aligned_by_phase(sparse, tmp_path):
    """Phase correlation leads: chosen by the 2-D rule (no overlap expects enough points) or, where
    the sampled overlaps expect some, by the prealignment's few-points rule."""
    res = resolve_parameters(str(sparse.xml), PipelineParams())
    rounds = alignment_rounds(res.params, res.prealignment)
    assert rounds[0] == "phase", (rounds, res.prealignment.reason)
    if res.params.alignment.rounds[0] == "phase":
        why = res.value("alignment.rounds").reason
    else:
        why = res.prealignment.reason
        assert "few_points" in res.prealignment.cause.split(","), why
    assert "phase correlation" in why, why
    run = align_in_process(str(sparse.xml), str(tmp_path / "auto"), PipelineParams())
    s = score(sparse.ground_truth, run.xml, gauge="rigid")
    assert s.rms_voxels <= 0.5 and s.rms_voxels < s.nominal_rms_voxels / 4, s.summary()


def test_user_rounds_are_kept_and_points_cannot_match_there(sparse, tmp_path):
    p = PipelineParams.model_validate({"alignment": {"rounds": ["rigid", "affine"]}})
    res = resolve_parameters(str(sparse.xml), p)
    assert res.params.alignment.rounds == ["rigid", "affine"]
    with pytest.raises(KeyError):
        res.value("alignment.rounds")
    # Why auto does not take them: no pair has enough candidates.
    run = align_in_process(str(sparse.xml), str(tmp_path / "points"), p, rounds=["rigid"])
    assert run.pairs_matched == ("0/6",)


def test_dense_mosaic_keeps_the_point_rounds(tmp_path):
    paths = write_dataset(tmp_path / "data", mosaic_params((2, 2), planes=1, seed=1))
    res = resolve_parameters(str(paths.xml), PipelineParams())
    assert res.params.alignment.rounds == ["rigid", "affine"]


def _geometry(n_planes):
    shift = np.eye(4)
    shift[0, 3] = 200.0
    return {(0, 0): (np.eye(4), (256, 256, n_planes)), (0, 1): (shift, (256, 256, n_planes))}


def _facts(points):
    # one crop of a whole 256 x 256 plane holding `points` points
    return {"sampled_overlaps": [{"view": [0, 0], "crop_xyz": [[0, 0, 0], [255, 255, 0]], "volume_fraction": 1.0}],
            "detection": {"expected_points_per_overlap": [points]}}


def test_expected_points_scale_with_the_overlap_area():
    # 56 x 256 of a 256 x 256 plane: 56/256 of its points
    assert expected_overlap_points(_facts(256.0), [56 * 256]) == [pytest.approx(56.0)]
    assert expected_overlap_points({}, [100.0]) == []


def test_rule():
    det = DetectionParams(sigma=1.8)
    # 200 points per plane, overlap 56 x 256: 44 expected >= 24 needed -> points
    assert choose_rounds(_geometry(1), det, 12, _facts(200.0), ["rigid", "affine"], False) is None
    # 80 per plane: 17.5 < 24 -> phase first, the point rounds after it
    r = choose_rounds(_geometry(1), det, 12, _facts(80.0), ["rigid", "affine"], False)
    assert r is not None and r.value == ["phase", "rigid", "affine"]  # never phase alone: translations only
    # a user's rounds, a phase round already there, and 3-D views are left alone
    assert choose_rounds(_geometry(1), det, 12, _facts(80.0), ["rigid"], True) is None
    assert choose_rounds(_geometry(1), det, 12, _facts(80.0), ["phase", "rigid"], False) is None
    assert choose_rounds(_geometry(64), det, 12, _facts(80.0), ["rigid", "affine"], False) is None


def test_rule_with_some_short_overlaps():
    # a wide and a narrow face overlap (36 % of the wide one): only the narrow one falls short
    det = DetectionParams(sigma=1.8)
    geo = _geometry(1)
    shift = np.eye(4)
    shift[1, 3] = 236.0
    geo[(0, 2)] = (shift, (256, 256, 1))
    r = choose_rounds(geo, det, 12, _facts(120.0), ["rigid", "affine"], False)
    assert r is not None and r.value == ["phase", "rigid", "affine"], r
