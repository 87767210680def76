"""The kernel replay benchmark on small tiles: it runs, and both kernels agree bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import numba

ROOT = Path(__file__).resolve().parents[2]


def test_replay_on_small_tiles_reports_identical_accumulators(capsys, monkeypatch):
    # The benchmark asks for one numba thread when nothing else did; in a test process
    # numba may have started its threads already, and changing the count then raises.
    monkeypatch.setenv("NUMBA_NUM_THREADS", str(numba.config.NUMBA_NUM_THREADS))
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_fusion_kernel
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = bench_fusion_kernel.main(["--rotate", "0", "1", "--repeat", "1", "--tile", "48", "40", "16"])
    assert [r["rotation"] for r in rows] == [0.0, 1.0]
    for r in rows:
        assert r["identical"] and r["sampled"] > 10_000
        assert r["reference_s"] > 0 and r["current_s"] > 0
    out = capsys.readouterr().out
    assert "identical" in out and out.count("True") == 2
