"""The alignment flow with a phase-correlation round (Prefect tasks per batch of pairs)."""

from __future__ import annotations

import pytest

from rhapso_core.spimdata import load_xml
from rhapso_core.spimdata.stitching_results import read_stitching_results
from rhapso_core.synthetic.scoring import score

pytestmark = pytest.mark.slow


def test_alignment_flow_phase_then_rigid(prefect_harness, small_dataset, tmp_path):
    from flows.alignment import alignment

    out = tmp_path / "aligned.xml"
    result = alignment(str(small_dataset.xml), str(out), overrides=[
        "runtime.use_ray=false", "alignment.rounds=[phase, rigid]"], ground_truth=str(small_dataset.ground_truth))
    phase, rigid = result["rounds"]
    assert phase["transform"] == "rhapso phase-correlation translation"
    assert phase["pairs_matched"] >= 7 and rigid["pairs_matched"] >= 5
    assert len(phase["phase_links"]) == phase["pairs"]
    sd = load_xml(str(out))
    names = [t.name for t in sd.registrations[(0, 1)][:2]]
    # the rigid round's name carries the validated model, e.g. "rhapso rigid solve (validated: translation)"
    assert names[0].startswith("rhapso rigid solve") and names[1] == "rhapso phase-correlation translation", names
    assert len(read_stitching_results(sd)) == phase["pairs_matched"]
    assert score(small_dataset.ground_truth, str(out)).rms_voxels <= 0.3
    html = open(result["qc"]["report_uri"]).read()
    assert '<section id="phase">' in html


def test_alignment_flow_phase_only_skips_detection(prefect_harness, small_dataset, tmp_path):
    from flows.alignment import alignment

    out = tmp_path / "phase.xml"
    result = alignment(str(small_dataset.xml), str(out), overrides=["runtime.use_ray=false", "alignment.rounds=[phase]"])
    assert "detection" not in result and "n5" not in result
    assert score(small_dataset.ground_truth, str(out), gauge="translation").rms_voxels <= 0.5
    assert result["qc"]["verdict"] in ("pass", "warn")


def test_alignment_flow_affine_round_uses_checked_overlap_affines(prefect_harness, small_dataset, tmp_path):
    """The flow's affine round fits every matched pair's overlap affine (as the in-process alignment) and
    solves with the checked fits in place of their pairs' points; tolerance as the phase test above."""
    from flows.alignment import alignment

    out = tmp_path / "affine.xml"
    result = alignment(str(small_dataset.xml), str(out), overrides=[
        "runtime.use_ray=false", "alignment.rounds=[rigid, affine]"], ground_truth=str(small_dataset.ground_truth))
    rigid, affine = result["rounds"]
    assert rigid["overlap_affines"] == []  # a rigid round has nothing to gain from them
    fits = affine["overlap_affines"]
    assert len(fits) == affine["pairs_matched"] and sum(f["status"] == "used" for f in fits) >= 5, fits
    assert affine["solver_report"]["n_links_by_label"].get("overlap_affine", 0) == sum(
        f["status"] == "used" for f in fits)
    assert score(small_dataset.ground_truth, str(out), gauge="affine").rms_voxels <= 0.3
