"""The kernel replay benchmark on small tiles: it runs, and both kernels agree bit for bit."""

from __future__ import annotations


def test_replay_on_small_tiles_reports_identical_accumulators(capsys, bench_module):
    bench_fusion_kernel = bench_module("bench_fusion_kernel")
    rows = bench_fusion_kernel.main(["--rotate", "0", "1", "--repeat", "1", "--tile", "48", "40", "16"])
    assert [r["rotation"] for r in rows] == [0.0, 1.0]
    for r in rows:
        assert r["identical"] and r["sampled"] > 10_000
        assert r["reference_s"] > 0 and r["current_s"] > 0
    out = capsys.readouterr().out
    assert "identical" in out and out.count("True") == 2
