"""Failure is loud: a "fail" QC verdict names its real cause and exits with status 3 (bad input is 2)."""

from __future__ import annotations

import contextlib
import json

import pytest

from rhapso_cli import main as cli
from rhapso_core.qc.causes import EXIT_QC_FAILED, QCFailedError, failure_causes


def _summary(points, records=(), unconnected=()):
    return {
        "detection": points,
        "rounds": [{"pair_records": list(records),
                    "solver_report": {"report": {"unconnected_views": list(unconnected), "tile_errors": []}}}],
        "qc": {"verdict": "fail", "reasons": [{"level": "fail", "stage": "solver", "message": "t0 s1: no used link"}]},
    }


def test_single_plane_views_detected_in_3d_are_named_as_the_cause():
    s = _summary({"0/0": 0, "0/1": 0},
                 [{"status": "too few points", "reason": "0 and 0 points; each side needs more than 4"}],
                 [{"timepoint": 0, "setup": 1}])
    causes = failure_causes(s, {"0/0": 1, "0/1": 1}, "3d")
    assert causes[0].startswith("single-plane views: no 3-D detection possible")
    assert "1 of 1 pair(s) not matched (1 too few points" in causes[1]
    assert "keep their metadata position (0/1)" in causes[2]
    # The same views with several planes: empty tiles, not a dimensionality problem.
    assert failure_causes(s, {"0/0": 40, "0/1": 40}, "auto")[0].startswith("no interest points in 2 of 2")


def test_without_an_upstream_cause_the_qc_reasons_are_given():
    s = _summary({"0/0": 500, "0/1": 480}, [{"status": "ok"}])
    assert failure_causes(s) == ["solver: t0 s1: no used link"]


@pytest.mark.parametrize("command", ["align", "stitch"])
def test_cli_exits_3_with_summary_and_cause_on_qc_failure(command, monkeypatch, tmp_path, capsys):
    import flows.alignment
    import flows.layout
    import flows.runtime
    import flows.stitch

    summary = {"qc": {"verdict": "fail"}, "output": str(tmp_path / "out")}

    def failing_flow(*args, **kwargs):
        raise QCFailedError(["single-plane views: no 3-D detection possible (2 view(s))"], summary)

    monkeypatch.setattr(flows.alignment, "alignment", failing_flow)
    monkeypatch.setattr(flows.stitch, "stitch", failing_flow)
    monkeypatch.setattr(flows.runtime, "prefect_api", contextlib.nullcontext)
    monkeypatch.setattr(cli, "_preflight", lambda xml, *a: None)
    # The flow is replaced: the input guard and the re-run check have no real dataset to read.
    monkeypatch.setattr(flows.layout, "guard_outputs", lambda *a, **k: None)
    monkeypatch.setattr(cli, "_check_rerun", lambda *a, **k: None)
    xml = tmp_path / "in.xml"
    xml.write_text("<SpimData/>")
    rc = cli.main([command, str(xml), "--json", "--out",
                   str(tmp_path / "out.xml" if command == "align" else tmp_path / "o")])
    out, err = capsys.readouterr()
    assert rc == EXIT_QC_FAILED == 3
    assert json.loads(out)["qc"]["verdict"] == "fail"
    assert "QC verdict fail: single-plane views: no 3-D detection possible" in err


@pytest.mark.slow
def test_align_of_single_planes_forced_to_3d_exits_3(prefect_harness, tmp_path):
    """End to end: single-plane tiles detected in 3-D find nothing; the run says why and exits 3.

    Prealignment is off: auto would otherwise lead with a phase round (no points expected in the
    overlaps), which aligns these tiles without points.
    """
    import io

    from rhapso_core.synthetic.planar_mosaic import mosaic_params
    from rhapso_core.synthetic.write import write_dataset

    paths = write_dataset(tmp_path / "data", mosaic_params((2, 1), planes=1, tile_xy=(128, 128)))
    out_buf, err_buf = io.StringIO(), io.StringIO()  # not capsys: Prefect's handler keeps the first stream
    with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
        rc = cli.main(["align", str(paths.xml), "--out", str(tmp_path / "out" / "a.xml"),
                       "--set", "detection.dimensions=3d", "--set", "alignment.prealign=off", "--no-ray", "--json"])
    err = err_buf.getvalue()
    assert rc == 3, err[-2000:]
    assert "QC verdict fail: single-plane views: no 3-D detection possible" in err
    assert (tmp_path / "out" / "a.xml").exists()  # the outputs are still written
    assert json.loads(out_buf.getvalue()[out_buf.getvalue().index("{"):])["qc"]["verdict"] == "fail"
