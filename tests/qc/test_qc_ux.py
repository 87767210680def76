"""The QC report's units, colour scale, scale bar and wording (issue 22 item 4)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rhapso_core.qc import pictures as pics
from rhapso_core.qc.units import um_per_world_unit, unit_note
from rhapso_core.spimdata import load_xml


def test_one_world_unit_is_the_synthetic_datasets_finest_voxel(qc_run):
    um = um_per_world_unit(load_xml(qc_run.input_xml))
    sd = load_xml(qc_run.input_xml)
    finest = min(min(sd.setup_of(v).voxel_size) for v in sd.views())
    # BigStitcher's calibration scales the finest axis to 1 world unit
    assert um == pytest.approx(finest, rel=1e-6), (um, finest)
    assert unit_note(um) == f"Distances are in world units: 1 world unit = {finest:.4g} um."
    assert "do not say micrometres" in unit_note(None)


@pytest.mark.parametrize("target, expect", [(0.9, 0.5), (1.0, 1.0), (37.0, 20.0), (260.0, 200.0), (7.0, 5.0)])
def test_scale_bar_length_is_a_round_number_not_above_the_target(target, expect):
    assert pics.nice_length(target) == pytest.approx(expect)


def test_fused_projection_gets_a_scale_bar():
    mip = np.random.default_rng(0).integers(0, 1000, (200, 300)).astype(np.uint16)
    plain = np.asarray(Image.open(io.BytesIO(pics.mip_picture(mip, None, 300))).convert("L"))
    barred = np.asarray(Image.open(io.BytesIO(pics.mip_picture(mip, None, 300, pixel_size=0.5, unit="um"))).convert("L"))
    assert plain.shape == barred.shape
    diff = np.argwhere(plain != barred)
    assert len(diff) > 50
    assert diff[:, 0].min() > plain.shape[0] - 30 and diff[:, 1].max() < plain.shape[1] / 2  # bottom-left only


def test_report_names_the_unit_and_the_layout_scale_ends_at_the_threshold(qc_run, tmp_path, monkeypatch):
    from rhapso_core.qc import report as report_mod
    from rhapso_core.qc.params import QCParams

    seen = {}
    real = report_mod.tile_layout_picture

    def spy(*a, **k):
        seen["vmax"] = k.get("vmax")
        return real(*a, **k)

    monkeypatch.setattr(report_mod, "tile_layout_picture", spy)
    params = QCParams(max_tile_error=0.7)
    out = tmp_path / "r.html"
    report_mod.build_report(qc_run.input_xml, qc_run.solved_xml, qc_run.store, "beads", pair_records=qc_run.pair_records,
                            solver_report=qc_run.solver_report, fused_uri=qc_run.fused, out_html=str(out), params=params)
    html = out.read_text()
    assert "1 world unit = " in html and " um." in html
    assert seen["vmax"] == 0.7


def test_candidate_counts_are_plural_only_when_more_than_one():
    from rhapso_core.matching.ransac import ransac
    from rhapso_core.models import make_model

    one = ransac(np.zeros((1, 3)), np.zeros((1, 3)), make_model("translation"), min_inliers=3)
    two = ransac(np.zeros((2, 3)), np.zeros((2, 3)), make_model("translation"), min_inliers=3)
    assert one.reason.startswith("1 candidate, fewer than") and two.reason.startswith("2 candidates, fewer")


def test_qc_command_takes_a_base_url_so_the_neuroglancer_link_works_for_local_data(qc_run, tmp_path):
    import contextlib
    import json
    from urllib.parse import unquote

    from rhapso_cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["qc", qc_run.solved_xml, "--input", qc_run.input_xml, "--store", qc_run.store, "--fused",
                   qc_run.fused, "--out", str(tmp_path / "r.html"), "--base-url", "http://127.0.0.1:9000/",
                   "--serve-root", str(qc_run.root)])
    assert rc == 0
    url = json.loads(buf.getvalue())["neuroglancer_url"]
    state = json.loads(unquote(url.split("#!", 1)[1]))
    sources = [ly["source"]["url"] if isinstance(ly["source"], dict) else ly["source"] for ly in state["layers"]]
    assert "zarr://http://127.0.0.1:9000/out/fused.ome.zarr/" in sources
    assert 'class="ng-link"' in (tmp_path / "r.html").read_text()
