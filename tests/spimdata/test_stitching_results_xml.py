"""BigStitcher <StitchingResults>: read real files, write, replace, round-trip, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rhapso_core.spimdata import SpimDataError, from_xml_bytes, load_xml, save_xml, to_xml_bytes
from rhapso_core.spimdata.stitching_results import PairwiseShift, read_stitching_results, with_stitching_results

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "xml" / "brainglobe-stitch-mesospim" / "test_data_bdv.xml"


def _fixture():
    return load_xml(str(FIXTURE))


def test_reads_bigstitcher_results_with_grouped_views():
    rs = read_stitching_results(_fixture())
    assert len(rs) == 6
    r = rs[0]
    assert r.views_a == ((0, 5), (0, 7)) and r.views_b == ((0, 0), (0, 2))
    assert r.translation_xyz == pytest.approx((18.94881502266495, -61.54768485207211, -44.91158953510115))
    assert r.correlation == pytest.approx(0.952218183283706)
    assert r.hash == pytest.approx(3731.156862745098)
    assert r.box_min_xyz == (1843.0, 1843.0, 0.0) and r.box_max_xyz == (2047.0, 2047.0, 2083.0)
    np.testing.assert_allclose(r.affine[:3, :3], np.eye(3))


def test_unchanged_results_round_trip_byte_identical(tmp_path):
    sd = _fixture()
    same = with_stitching_results(sd, read_stitching_results(sd), keep_existing=False)
    assert to_xml_bytes(same) == to_xml_bytes(sd)


def test_new_result_replaces_same_pair_and_keeps_others(tmp_path):
    sd = _fixture()
    old = read_stitching_results(sd)
    new = PairwiseShift.translation(old[0].views_b, old[0].views_a, (1.5, -2.0, 0.25), 0.8, 12.5, (0, 0, 0), (9, 9, 9))
    out = tmp_path / "out.xml"
    save_xml(with_stitching_results(sd, [new]), str(out))
    back = read_stitching_results(load_xml(str(out)))
    assert len(back) == 6
    assert back[-1] == new
    assert back[:-1] == old[1:]


def test_fresh_dataset_gets_the_section_where_bigstitcher_puts_it(tmp_path):
    from rhapso_core.spimdata import ViewSetup, make_spimdata

    sd = make_spimdata(setups=[ViewSetup(id=i, size=(8, 8, 1)) for i in range(2)],
                       registrations={(0, i): [("t", np.eye(4))] for i in range(2)}, image_loader=None)
    assert read_stitching_results(sd) == []
    r = PairwiseShift.translation([(0, 0)], [(0, 1)], (3, 4, 0), 0.9, 1.0)
    data = to_xml_bytes(with_stitching_results(sd, [r]))
    assert data.index(b"<StitchingResults>") < data.index(b"<IntensityAdjustments")
    assert b'<PairwiseResult view_setup_a="0" view_setup_b="1" tp_a="0" tp_b="0">' in data
    assert read_stitching_results(from_xml_bytes(data, "mem.xml", strict=False)) == [r]


def test_old_three_value_shift_and_bad_values():
    base = _fixture()
    data = to_xml_bytes(base)
    start = data.index(b"<shift>")
    end = data.index(b"</shift>")
    old = data[:start] + b"<shift>1.0 2.0 3.0" + data[end:]
    assert read_stitching_results(from_xml_bytes(old, "old.xml"))[0].translation_xyz == (1.0, 2.0, 3.0)
    bad = data[:start] + b"<shift>1.0 x" + data[end:]
    with pytest.raises(SpimDataError, match=r"bad.xml: <StitchingResults>/<PairwiseResult> #1: <shift>"):
        read_stitching_results(from_xml_bytes(bad, "bad.xml"))
