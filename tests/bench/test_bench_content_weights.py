"""The content weights benchmark on small boxes: it runs, and ours equals scipy's bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import numba

ROOT = Path(__file__).resolve().parents[2]


def test_small_boxes_report_identical_weights(capsys, monkeypatch):
    # The benchmark's helpers ask for one numba thread when nothing else did; in a test
    # process numba may have started its threads already, and a compile after the count
    # changed raises (as in tests/bench/test_bench_fusion_kernel.py).
    monkeypatch.setenv("NUMBA_NUM_THREADS", str(numba.config.NUMBA_NUM_THREADS))
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_content_weights
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = bench_content_weights.main(["--box", "12", "20", "24", "--box", "5", "9", "300",
                                       "--sigma1", "2", "--sigma2", "4", "--z-step", "2", "--repeat", "1"])
    assert [r["box"] for r in rows] == [(12, 20, 24), (5, 9, 300)]
    for r in rows:
        assert r["identical"] and r["scipy_s"] > 0 and r["ours_s"] > 0
    out = capsys.readouterr().out
    assert "radii (3, 6, 6) / (6, 12, 12)" in out and out.count("True") == 2
