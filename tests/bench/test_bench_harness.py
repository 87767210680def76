"""The end-to-end benchmark harness (bench/run_benchmarks.py): its arithmetic and one real run.

Rhapso itself is not run here (its venv takes minutes to build); the comparison columns
are exercised with fabricated figures.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run_benchmarks.py"


@pytest.fixture(scope="module")
def rb():
    spec = importlib.util.spec_from_file_location("run_benchmarks_under_test", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _fake(voxels: int, detect_s: float, fuse_s: float, out_vox: int, mem: float) -> dict:
    stage = {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mb": mem}
    ours = {s: dict(stage) for s in ("detect", "match_rigid", "solve_rigid", "match_affine", "solve_affine",
                                     "fuse", "multiscale")}
    ours["detect"]["wall_s"] = detect_s
    ours["fuse"].update(wall_s=fuse_s, output_voxels=out_vox)
    ours["match_affine"]["pairs"] = 4
    ours["solve_affine"]["links"] = 4
    ours["score"] = {"rms_voxels": 0.1, "max_voxels": 0.2, "nominal_rms_voxels": 2.0}
    rhapso = {s: {**stage, "wall_s": 10.0, "peak_rss_mb": 2 * mem} for s in ours if s != "score"}
    rhapso["match_rigid"]["scaled"] = True
    return {"views": 6, "voxels": voxels, "bytes": 2 * voxels, "ours": ours, "rhapso": rhapso}


def test_scaling_exponents_and_ratio(rb):
    # Detection time x2 for 4x the voxels is exponent 0.5; fusion x8 for 8x output is linear.
    res = {"small": _fake(1_000_000, 1.0, 1.0, 500_000, 300.0), "large": _fake(4_000_000, 2.0, 8.0, 4_000_000, 310.0)}
    text = rb.scaling_text(res)
    assert "detection        time x   2.00 for voxels x   4.00: exponent 0.50" in text
    assert "exponent 1.00" in text.split("fusion")[1].splitlines()[0]
    assert "300 [  600]" in text and "310 [  620]" in text
    assert "chunks <= " not in text  # no bounded-detection figures given, no row
    table = rb.print_table(res, type("A", (), {"rhapso_iterations": 200})())
    whole = [ln for ln in table.splitlines() if ln.startswith("small   whole pipeline")][0]
    # ours 1 + 1 x 4 + 1 + 1 = 7 s, rhapso 7 x 10 s: 10.0x, marked as scaled.
    assert whole.split()[3] == "7.00" and whole.split()[4] == "70.00*" and whole.endswith("10.0x")


def test_saved_run_reprints_identically(rb, tmp_path):
    res = {"small": _fake(1_000_000, 1.0, 1.0, 500_000, 300.0)}
    flow = {1: {"wall_s": 30.0, "dataset": "small"}, 2: {"wall_s": 16.0, "dataset": "small"}}
    sp = rb.shared_params(100.0, 2000.0)
    args = type("A", (), {"rhapso_iterations": 200})()
    rb.save_results(tmp_path / "r.json", res, flow, sp, args)
    again = rb.load_results(tmp_path / "r.json")
    assert rb.report(*again) == rb.report(res, flow, sp, 200)
    assert math.isinf(again[2]["solver"]["max_allowed_error"])
    # 7 stages of 1 s each in-process (the fabricated figures) beside the flow's 30 s.
    assert "speed-up 1.88x (the same stages in-process, one after another: 7.0 s)" in rb.report(*again)


def test_throughputs_keep_what_a_run_did_not_measure(rb, tmp_path, monkeypatch):
    """A run without Rhapso (or without --flow) rewrites ours and keeps the earlier Rhapso figures
    and Ray speed-up, dated; content_based's tap rate is written beside them."""
    import bench_content_weights

    path = tmp_path / "throughputs.json"
    path.write_text(json.dumps({"date": "2026-01-02", "measured_on": "large", "fusion_voxels_per_s": 1.0,
                                "rhapso_045": {"fusion_voxels_per_s": 5.0}, "ray_speedup_1_to_2": 1.5}))
    monkeypatch.setattr(rb, "THROUGHPUTS", path)
    monkeypatch.setattr(bench_content_weights, "ours_taps_per_s", lambda: 3.0e9)
    res = _fake(10**6, 1.0, 2.0, 4 * 10**6, 100.0)
    res["ours"]["match_rigid"]["pairs"] = 4
    del res["rhapso"]
    rb.write_throughputs({"small": res}, None, {"detection": {"dsxy": 2, "dsz": 2}})
    got = json.loads(path.read_text())
    assert got["measured_on"] == "small" and got["fusion_voxels_per_s"] == 4 * 10**6  # ours: measured now
    assert got["rhapso_045"] == {"fusion_voxels_per_s": 5.0, "date": "2026-01-02", "measured_on": "large"}
    assert got["ray_speedup_1_to_2"] == 1.5 and got["ray_speedup_1_to_2_date"] == "2026-01-02"
    assert got["content_filter_taps_per_s"] == 3.0e9


@pytest.mark.slow
@pytest.mark.heavy
def test_one_real_run_without_rhapso(rb, tmp_path, monkeypatch, capsys):
    """The whole harness on a small generated dataset: every stage measured, alignment within
    half a voxel of the truth (nominal error about 2.5 voxels), the figures saved and reprinted."""
    monkeypatch.setitem(rb.SIZES, "small", {"grid": (2, 2, 1), "tile_size_xyz": (256, 256, 48), "overlap": 0.25})
    out = tmp_path / "results.json"
    assert rb.main(["--sizes", "small", "--no-rhapso", "--no-throughputs", "--work", str(tmp_path),
                    "--json", str(out), "--bounded-chunk-voxels", str(2**16)]) == 0
    results, _, _, _ = rb.load_results(out)
    ours = results["small"]["ours"]
    for stage in rb.STAGES:
        assert ours[stage]["wall_s"] > 0 and ours[stage]["peak_rss_mb"] > 0, (stage, ours[stage])
    assert ours["score"]["rms_voxels"] < 0.5 < ours["score"]["nominal_rms_voxels"]
    assert ours["fuse"]["output_voxels"] > 0 and ours["multiscale"]["levels"] == 4
    printed = capsys.readouterr().out
    assert "small   whole pipeline" in printed and "alignment error" in printed
    # Detection with chunks bounded to 64 Ki working voxels (a sixth of a tile) finds about the same points
    # (chunk seams may merge or split a few maxima: 5% tolerated).
    bounded = ours["detect_bounded"]
    assert bounded["tasks"] > ours["detect"]["tasks"]
    assert abs(bounded["total_points"] - ours["detect"]["total_points"]) <= 0.05 * ours["detect"]["total_points"]
    assert "chunks <= " not in printed  # one size: no memory-by-size rows

    # --resume runs only what the saved figures lack: here the pyramid, and nothing else.
    doc = json.loads(out.read_text())
    del doc["results"]["small"]["ours"]["multiscale"]
    out.write_text(json.dumps(doc))
    assert rb.main(["--sizes", "small", "--no-rhapso", "--no-throughputs", "--work", str(tmp_path),
                    "--json", str(out), "--resume"]) == 0
    again = rb.load_results(out)[0]["small"]["ours"]
    for stage in (*rb.STAGES[:-1], "detect_bounded"):
        assert again[stage] == ours[stage], stage
    assert again["multiscale"]["levels"] == 4 and again["multiscale"]["wall_s"] != ours["multiscale"]["wall_s"]
