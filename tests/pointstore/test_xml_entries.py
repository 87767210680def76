"""``view_interest_points_entries``: what the XML's ViewInterestPoints section holds.

Ground truth: the entries BigStitcher / Rhapso wrote into a real dataset.xml
(``tests/fixtures/xml/*``, copied from ../shared), whose element text for a view and
label must equal our path for the same view and label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lxml import etree

from rhapso_core.pointstore import PointStore, ViewInterestPointsEntry, view_interest_points_entries

XML_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xml"


def test_entries_list_every_complete_view_and_label(tmp_path):
    store = PointStore(tmp_path / "interestpoints.zarr", mode="a")
    params = "DOG s=1.8 t=0.008 min=false max=true downsampleXY=2 downsampleZ=1"
    for v in [(1, 0), (0, 2), (0, 0)]:
        store.write_points(v, "beads", np.arange(3), np.zeros((3, 3)), params=params)
    store.write_points((0, 0), "nuclei", np.arange(1), np.zeros((1, 3)), params="other")
    entries = view_interest_points_entries(store)
    assert entries == [
        ViewInterestPointsEntry(0, 0, "beads", params, "tpId_0_viewSetupId_0/beads"),
        ViewInterestPointsEntry(0, 2, "beads", params, "tpId_0_viewSetupId_2/beads"),
        ViewInterestPointsEntry(1, 0, "beads", params, "tpId_1_viewSetupId_0/beads"),
        ViewInterestPointsEntry(0, 0, "nuclei", "other", "tpId_0_viewSetupId_0/nuclei"),
    ]
    assert view_interest_points_entries(store, "nuclei") == entries[3:]
    t, s, label, p, path = entries[0]  # plain 5-tuple for the XML writer
    assert (t, s, label, path) == (0, 0, "beads", "tpId_0_viewSetupId_0/beads")


def test_entry_paths_match_real_bigstitcher_xml(tmp_path):
    xml_dir = XML_FIXTURES
    checked = 0
    for n, xml in enumerate(sorted(xml_dir.rglob("*.xml"))):
        files = etree.parse(str(xml)).findall(".//ViewInterestPoints/ViewInterestPointsFile")
        if not files:
            continue
        store = PointStore(tmp_path / f"ip{n}.zarr", mode="a")
        for f in files:
            store.write_points(
                (int(f.get("timepoint")), int(f.get("setup"))), f.get("label"),
                np.arange(2), np.zeros((2, 3)), params=f.get("params"),
            )  # fmt: skip
        want = sorted(
            (int(f.get("timepoint")), int(f.get("setup")), f.get("label"), f.get("params"), f.text.strip())
            for f in files
        )
        got = sorted(tuple(e) for e in view_interest_points_entries(store))
        assert got == want, xml.name
        checked += len(files)
    assert checked, "some fixture XMLs have ViewInterestPointsFile entries"
