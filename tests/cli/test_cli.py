"""The `rhapso` command's contract: bad input -> one line naming the culprit, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rhapso_cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rhapso_cli.main", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small generated dataset (2x2 tiles) shared by the tests of this module."""
    out = tmp_path_factory.mktemp("synth") / "data"
    rc = main(["synth", str(out), "--grid", "2x2", "--set", "synthetic.tile_size_xyz=[96,96,24]",
               "--set", "synthetic.n_levels=2"])
    assert rc == 0
    return out


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_synth_writes_dataset_with_ground_truth(dataset):
    assert (dataset / "dataset.xml").exists()
    assert (dataset / "ground_truth.json").exists()
    truth = json.loads((dataset / "ground_truth.json").read_text())
    assert len(truth["views"]) == 4


def test_xml_roundtrip_of_fixtures(tmp_path):
    xmls = sorted((ROOT / "tests" / "fixtures" / "xml").rglob("*.xml"))
    assert len(xmls) >= 7, "tests/fixtures/xml holds the real XMLs"
    ok = 0
    for i, xml in enumerate(xmls):
        out = tmp_path / f"{i}.xml"
        rc = main(["xml", str(xml), "--out", str(out)])
        if rc == 0:
            ok += 1
            assert out.exists()
        else:
            assert not out.exists(), f"{xml}: failed but wrote {out}"
    # Two pydantic-bigstitcher fixtures are deliberately incomplete (a view without
    # a registration, an empty affine): refused with a message; all others pass.
    assert ok >= len(xmls) - 2


@pytest.mark.parametrize(
    "case, expect",
    [
        ("malformed", "dataset.xml"),
        ("missing_image", "images.ome.zarr"),
        ("no_registration", "ViewRegistration"),
        ("unknown_loader", "my.unknown.format"),
    ],
)
def test_bad_xml_one_line_error_nothing_written(dataset, tmp_path, case, expect):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad, ignore=shutil.ignore_patterns("images.ome.zarr"))
    text = (bad / "dataset.xml").read_text()
    if case == "malformed":
        (bad / "dataset.xml").write_text(text[: len(text) // 2])
    elif case == "missing_image":
        pass  # images were not copied: the XML points at nothing
    elif case == "no_registration":
        start = text.index("<ViewRegistration ")
        end = text.index("</ViewRegistration>", start) + len("</ViewRegistration>")
        (bad / "dataset.xml").write_text(text[:start] + text[end:])
    elif case == "unknown_loader":
        (bad / "dataset.xml").write_text(text.replace('format="bdv.multimg.zarr"', 'format="my.unknown.format"'))
    if case != "missing_image":
        os.symlink(dataset / "images.ome.zarr", bad / "images.ome.zarr")
    before = _files(tmp_path)
    res = run_cli("align", str(bad / "dataset.xml"), "--out", str(tmp_path / "solved.xml"), "--no-ray")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert expect in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    assert _files(tmp_path) == before, "a refused command wrote files"


@pytest.mark.parametrize(
    "override, name",
    [("detection.sigma=-1", "detection.sigma"), ("matching.num_iterations=0", "matching.num_iterations"),
     ("fusion.overlap_strategy=blurry", "fusion.overlap_strategy"), ("detection.sigmaa=2", "detection.sigmaa")],
)
def test_parameter_out_of_range_names_it(dataset, tmp_path, override, name):
    res = run_cli("align", str(dataset / "dataset.xml"), "--out", str(tmp_path / "s.xml"), "--set", override)
    assert res.returncode == 2
    assert name in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "s.xml").exists()


def test_seed_style_flat_parameter_file_is_accepted(tmp_path):
    from rhapso_core import param_files
    from rhapso_core.config import PipelineParams

    f = tmp_path / "rhapso.yml"
    f.write_text("dsxy: 4\ndsz: 2\nsigma: 2.0\nthreshold: 0.01\nnum_neighbors: 3\nredundancy: 1\n"
                 "significance: 3\nmodel_min_matches: 18\nrelative_threshold: 3.5\nabsolute_threshold: 7.0\n"
                 "block_size: [128, 128, 64]\nxml_file_path: s3://bucket/dataset.xml\n")
    p = param_files.load(PipelineParams, f)
    assert (p.detection.dsxy, p.detection.dsz, p.detection.sigma) == (4, 2, 2.0)
    assert p.matching.model_min_matches == 18
    assert p.solver.relative_threshold == 3.5
    assert p.fusion.block_size == (128, 128, 64)
    f.write_text("sigmaa: 2\n")
    with pytest.raises(param_files.ParameterError, match="sigmaa"):
        param_files.load(PipelineParams, f)


def test_output_never_overwrites_input(dataset):
    res = run_cli("align", str(dataset / "dataset.xml"), "--out", str(dataset / "dataset.xml"), "--no-ray")
    assert res.returncode == 2 and "input" in res.stderr


def test_score_of_nominal_positions(dataset):
    res = run_cli("score", str(dataset / "ground_truth.json"), str(dataset / "dataset.xml"), "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    # The XML holds nominal stage positions: its error is the jitter, and equals the nominal figure.
    assert s["rms_voxels"] == pytest.approx(s["nominal_rms_voxels"], rel=1e-9)
    assert s["rms_voxels"] > 0.5


def test_detect_writes_xml_with_interest_points_and_n5(dataset, tmp_path):
    from rhapso_core.pipeline.preflight import check_dataset
    from rhapso_core.pointstore import PointStore, read_n5

    out = tmp_path / "detected" / "detected.xml"
    before = (dataset / "dataset.xml").read_bytes()
    rc = main(["detect", str(dataset / "dataset.xml"), "--out", str(out), "--no-ray"])
    assert rc == 0
    assert (dataset / "dataset.xml").read_bytes() == before, "input XML modified"
    sd = check_dataset(str(out))  # written elsewhere, still finds its images
    entries = {(f.timepoint, f.setup, f.label): f.path for f in sd.interest_points}
    assert set(entries) == {(0, s, "beads") for s in range(4)}
    store = PointStore(str(out.parent / "interestpoints.zarr"))
    n5 = read_n5(str(out.parent / "interestpoints.n5"))
    for v in sd.views():
        pts = store.read_points(v, "beads")
        assert len(pts.ids) > 0
        exported = n5.points[(v, "beads")]
        assert (exported.ids == pts.ids).all() and abs(exported.loc_xyz - pts.loc_xyz).max() == 0


def test_qc_command_reports_on_outputs(dataset, tmp_path):
    """`rhapso qc` on a detected (unsolved) copy: the report exists and names its verdict."""
    out = tmp_path / "d" / "detected.xml"
    assert main(["detect", str(dataset / "dataset.xml"), "--out", str(out), "--no-ray"]) == 0
    res = run_cli("qc", str(out), "--input", str(dataset / "dataset.xml"),
                  "--ground-truth", str(dataset / "ground_truth.json"))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["verdict"] in ("pass", "warn", "fail")
    html = Path(summary["report_uri"]).read_text()
    assert summary["verdict"].upper() in html.upper()


def test_synth_from_a_real_volume(tmp_path, cellfinder_ch0):
    """The real mouse-brain crop cut into tiles: level 0 of a tile is a crop of the specimen."""
    out = tmp_path / "real"
    rc = main(["synth", str(out), "--grid", "2x2", "--volume", str(cellfinder_ch0), "--volume-voxel-size", "5,2,2",
               "--set", "synthetic.voxel_size_xyz=[2,2,5]", "--set", "synthetic.tile_size_xyz=[176,128,18]",
               "--set", "synthetic.n_levels=2", "--set", "synthetic.noise=false"])
    assert rc == 0
    from rhapso_core.io import open_image
    from rhapso_core.spimdata import load_xml

    sd = load_xml(out / "dataset.xml")
    img = open_image(sd.image_location((0, 0)).uri, dataset=sd.image_location((0, 0)).dataset)
    tile = img.read(((0, 18), (0, 128), (0, 176)))
    assert tile.std() > 0, "tiles must carry the specimen's texture"


def test_main_leaves_the_environment_as_it_found_it(dataset, tmp_path):
    """In-process calls must not change later logging (a quieted PREFECT_LOGGING_LEVEL once
    hid every INFO log of the rest of the test session)."""
    before = dict(os.environ)
    main(["xml", str(dataset / "dataset.xml"), "--out", str(tmp_path / "copy.xml")])
    assert dict(os.environ) == before


def test_main_keeps_prefect_run_logs_at_info(dataset, tmp_path):
    """A quiet command quiets the console only: flow-run loggers stay at INFO for the API."""
    import logging

    main(["detect", str(dataset / "dataset.xml"), "--out", str(tmp_path / "d" / "d.xml"), "--no-ray"])
    assert logging.getLogger("prefect.flow_runs").getEffectiveLevel() <= logging.INFO


def test_plan_prints_stages_and_cost_and_refuses_bad_price(dataset, capsys):
    xml = str(dataset / "dataset.xml")
    assert main(["plan", xml, "--cores", "16", "--memory-per-core", "4", "--price-per-core-hour", "0.05"]) == 0
    out = capsys.readouterr().out
    for stage in ("detection", "matching", "solve", "fusion", "multiscale", "total"):
        assert f"\n{stage}" in out, stage
    assert "core-hours held (16 cores x" in out and "at 0.05 per core-hour" in out
    assert main(["plan", xml, "--cores", "16", "--memory-per-core", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cost"] is None and doc["core_hours_held"] > 0
    assert main(["plan", xml, "--cores", "16", "--memory-per-core", "4", "--price-per-core-hour", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "price_per_core_hour" in err[0]
