"""Auto chooses a phase-correlation prealignment where point matching cannot work on its own.

Two causes, both derived from the data (``rhapso_core.autoparams.matching``):

* the stage error is larger than the matcher bridges: a 2 x 1 grid whose second tile's
  nominal position is off by 1.5 x the search radius the resolver gives the dataset from
  its XML (widest overlap + RANSAC error), across the overlap axis so the tiles still share
  half their height; the resolver's phase-correlation probe measures it;
* the overlaps hold too few interest points to match: 64-voxel tiles with 25 % overlap
  hold 3-5 DoG peaks per overlap (fewer than twice the 12 inliers a match needs), which no
  threshold raises (the escalation "lower_threshold" finds nothing new: the peaks are the
  specimen's blobs, and the DoG at sigma 1.8 leaves almost no noise peaks).

Tolerance: <= 0.3 voxel RMS against the ground truth with default parameters (measured
0.01-0.12 over 64-128 voxel tiles, overlaps 15-30 %, seeds 0-2), and the decision and
its reason are recorded in the resolution (resolved_params.json, --explain).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.autoparams import resolve_parameters
from rhapso_core.config import PipelineParams
from rhapso_core.pipeline.inprocess import align_in_process
from rhapso_core.spimdata import load_xml, save_xml
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.scoring import score
from rhapso_core.synthetic.write import write_dataset


def test_stage_error_beyond_the_search_radius_is_prealigned(tmp_path):
    paths = write_dataset(tmp_path / "d", SyntheticParams(
        grid=(2, 1, 1), tile_size_xyz=(128, 160, 24), overlap=0.3, voxel_size_xyz=(0.5, 0.5, 1.5),
        jitter_voxels=(1.0, 1.0, 0.5), blob_density=1500.0, n_levels=2, chunk_size_xyz=(64, 64, 24), seed=4))
    radius = resolve_parameters(str(paths.xml), PipelineParams(), read_pixels=False).params.matching.search_radius
    sd = load_xml(str(paths.xml))
    moved = sorted(sd.views())[1]
    error = 1.5 * radius
    shifted = str(tmp_path / "d" / "shifted.xml")  # beside the images: same relative paths
    save_xml(sd.with_prepended_transform(moved, "stage error", transforms.translation([0.0, error, 0.0])), shifted)
    stage_rms = score(paths.ground_truth, shifted, gauge="rigid").rms_voxels
    assert stage_rms > 20.0

    r = align_in_process(shifted, str(tmp_path / "work"), PipelineParams())
    pre = r.resolution.prealignment
    assert pre.chosen and "measured_stage_error" in pre.cause, pre.reason
    assert pre.stage_uncertainty > radius, pre   # the probe measured the error (world units = x voxels)
    assert r.pairs_matched[0].startswith("phase")
    d = json.loads(r.resolution.to_json())
    assert d["prealignment"]["chosen"] and "phase correlation" in d["prealignment"]["reason"]
    assert "prealignment: chosen" in r.resolution.table()
    result = score(paths.ground_truth, r.xml, gauge="rigid")
    assert result.rms_voxels <= 0.3, result.summary()


@pytest.mark.parametrize("tile,overlap,seed", [((64, 64, 16), 0.25, 0), ((96, 96, 24), 0.15, 1)])
def test_small_tiles_with_few_points_are_linked_by_phase_correlation(tmp_path, tile, overlap, seed):
    paths = write_dataset(tmp_path / "d", SyntheticParams(
        grid=(2, 1, 1), tile_size_xyz=tile, overlap=overlap, n_levels=1, chunk_size_xyz=(32, 32, 16), seed=seed))
    r = align_in_process(str(paths.xml), str(tmp_path / "work"), PipelineParams())
    pre = r.resolution.prealignment
    assert pre.chosen and "few_points" in pre.cause, pre.reason
    assert "interest points" in pre.reason
    result = score(paths.ground_truth, r.xml, gauge="rigid")
    assert result.rms_voxels <= 0.3, result.summary()
    assert result.nominal_rms_voxels > 0.8   # there was an error to correct


def test_prealignment_off_is_respected_and_recorded(tmp_path):
    paths = write_dataset(tmp_path / "d", SyntheticParams(
        grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16)))
    r = resolve_parameters(str(paths.xml), PipelineParams(alignment={"prealign": "off"}))
    assert not r.prealignment.chosen and "prealign=off" in r.prealignment.reason
    from rhapso_core.pipeline.prealign import alignment_rounds

    assert alignment_rounds(r.params, r.prealignment) == ["rigid", "affine"]
    on = resolve_parameters(str(paths.xml), PipelineParams(alignment={"prealign": "on"}))
    assert alignment_rounds(on.params, on.prealignment) == ["phase", "rigid", "affine"]
    kept = PipelineParams(alignment={"rounds": ["phase", "rigid"]})
    assert alignment_rounds(kept, on.prealignment) == ["phase", "rigid"]


def test_anchors_leave_out_removed_links_and_reverted_tiles():
    from rhapso_core.pipeline.prealign import kept_links

    def link(a, b):
        return {"view_a": [0, a], "view_b": [0, b], "status": "ok"}

    links = [link(0, 1), link(0, 2), link(1, 2), link(2, 3)]
    report = {"removed_links": [{"a": {"timepoint": 0, "setup": 1}, "b": {"timepoint": 0, "setup": 2}}]}
    verify = {"reverted": [{"view": [0, 3], "views": [[0, 3]]}]}
    kept = kept_links(links, report, verify)
    assert [(k["view_a"][1], k["view_b"][1]) for k in kept] == [(0, 1), (0, 2)]
    assert len(kept_links(links, None)) == 4
