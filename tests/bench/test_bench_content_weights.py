"""The content weights benchmark on small boxes: it runs, and ours equals scipy's bit for bit."""

from __future__ import annotations


def test_small_boxes_report_identical_weights(capsys, bench_module):
    bench_content_weights = bench_module("bench_content_weights")
    rows = bench_content_weights.main(["--box", "12", "20", "24", "--box", "5", "9", "300",
                                       "--sigma1", "2", "--sigma2", "4", "--z-step", "2", "--repeat", "1"])
    assert [r["box"] for r in rows] == [(12, 20, 24), (5, 9, 300)]
    for r in rows:
        assert r["identical"] and r["scipy_s"] > 0 and r["ours_s"] > 0
    out = capsys.readouterr().out
    assert "radii (3, 6, 6) / (6, 12, 12)" in out and out.count("True") == 2
