"""Every output path comes from rhapso_core.output_layout: local paths stay as given, URLs join with '/'."""

from __future__ import annotations

import os

from rhapso_core import output_layout as ol


def test_local_paths_keep_the_users_form_and_urls_join_with_slashes():
    assert ol.join("out", "a", "b.xml") == os.path.join("out", "a", "b.xml")
    assert ol.join("s3://bucket/run/", "x.json") == "s3://bucket/run/x.json"
    assert ol.lock_path("s3://b/run/") == "s3://b/run/.rhapso-run.lock"
    assert ol.lock_path("run") == os.path.join("run", ".rhapso-run.lock")
    assert ol.record_path("run") == os.path.join("run", ".rhapso-run.json")
    assert ol.summary_path("s3://b/o") == "s3://b/o/summary.json"
    assert ol.parent("s3://b/d/data.xml") == "s3://b/d"
    assert ol.parent("d/data.xml") == os.path.abspath("d")


def test_a_runs_files_are_named_once():
    a, fused = ol.stitch_outputs("s3://b/out", "s3://b/in/dataset.xml")
    assert (a, fused) == ("s3://b/out/dataset.aligned.xml", "s3://b/out/fused.ome.zarr")
    assert ol.fused_xml_path(fused) == "s3://b/out/fused.xml" and ol.fused_xml_path("f.zarr/") == "f.xml"
    lay = ol.alignment_layout(a)
    assert lay["store"] == "s3://b/out/interestpoints.zarr" and lay["n5"] == "s3://b/out/interestpoints.n5"
    assert lay["round_xml"].format(index=2, kind="affine") == "s3://b/out/dataset.aligned.rhapso/02-affine.xml"
    assert ol.join(lay["work"], ol.round_xml_name(2, "affine")) == lay["round_xml"].format(index=2, kind="affine")
    assert ol.split_outputs(lay["work"])[0] == "s3://b/out/dataset.aligned.rhapso/split.xml"
    assert ol.report_path(a) == "s3://b/out/qc_report.html"
    assert ol.report_path("x/s.xml") == os.path.join(os.path.abspath("x"), "qc_report.html")
    assert ol.staged_name("s3://b/out/dataset.aligned.xml") == "s3://b/out/.dataset.aligned.staged.xml"
    assert ol.staged_name("o/a.xml") == os.path.join(os.path.abspath("o"), ".a.staged.xml")
    assert ol.default_aligned_xml("d/data.xml") == "d/data.aligned.xml"


def test_the_flows_cli_and_qc_use_the_layout_module():
    from flows import fusion, layout, stitch
    from rhapso_core.pipeline import publish, run_lock, run_record
    from rhapso_core.qc import report

    assert stitch.stitch_outputs is ol.stitch_outputs and fusion.fused_xml_path is ol.fused_xml_path
    assert layout.alignment_layout is ol.alignment_layout and run_lock.lock_path is ol.lock_path
    assert run_record.record_path is ol.record_path and publish.staged_name is ol.staged_name
    assert report.default_report_uri("s3://b/o/x.xml") == ol.report_path("s3://b/o/x.xml")
