"""The alignment filters' benchmark on small shapes: it runs, and every value has the reference's bits
(the NCC's r: within rounding, 1e-12 relative)."""

from __future__ import annotations


def test_small_shapes_report_identical_values(capsys, bench_module):
    bench = bench_module("bench_alignment_filters")
    rows = bench.main(["--crop", "6", "20", "9", "--feature-crop", "9", "8", "7", "--map-box", "7", "12", "10",
                       "--cells", "2", "3", "1", "--repeat", "1"])
    assert [r["what"] for r in rows] == ["overlap fit smoothing (sigma 1)", "peak verification NCC",
                                         "feature scale blurs (8 scales)", "intensity map, cells (2, 3, 1)"]
    for r in rows:
        assert r["reference_s"] > 0 and r["ours_s"] > 0, r
        if r["what"] == "peak verification NCC":
            assert r["differing_relative"] < 1e-12, r
        else:
            assert r["differing"] == 0, r
    assert rows[-1]["peak_ours"] < rows[-1]["peak_reference"]
    assert "bytes per voxel" in capsys.readouterr().out
