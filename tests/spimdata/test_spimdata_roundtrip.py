"""Every real BigStitcher fixture: load -> save -> load gives an equal model and the same
canonical XML (C14N, indentation ignored). Exact equality: no tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rhapso_core.spimdata import SpimDataError, load_xml, save_xml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xml"  # copied from ../shared (SOURCES.txt)
DATA = Path(__file__).resolve().parent / "data"


def _fixture_xmls() -> list[Path]:
    """Every XML under tests/fixtures/xml (recursively) plus this folder's hand-written ones."""
    return sorted(FIXTURES.rglob("*.xml")) + sorted(DATA.glob("*.xml"))

# Fixtures that are deliberately partial (pydantic-bigstitcher's test files): a strict
# load must refuse them with this message fragment; a non-strict load must round-trip.
KNOWN_PARTIAL = {
    "bigstitcher_0.xml": "<ViewRegistrations>: no <ViewRegistration> for timepoint=0 setup=1 (14 views lack one)",
    "bigstitcher_3.xml": "<SequenceDescription>: missing <ImageLoader>",
}


def _id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


@pytest.mark.parametrize("path", _fixture_xmls(), ids=_id)
def test_roundtrip_model_and_canonical_xml(path: Path, tmp_path: Path, canon) -> None:
    strict = path.name not in KNOWN_PARTIAL
    sd = load_xml(path, strict=strict)
    out = tmp_path / path.name
    save_xml(sd, out, rebase_base_path=False)
    again = load_xml(out, strict=strict)
    assert again == sd, f"{path.name}: re-parsed model differs"
    assert canon(out.read_bytes()) == canon(path.read_bytes()), f"{path.name}: canonical XML changed"
    # Saving twice is byte-identical (the writer is deterministic).
    out2 = tmp_path / ("again_" + path.name)
    save_xml(again, out2, rebase_base_path=False)
    assert out2.read_bytes() == out.read_bytes()


def test_fixture_folder_present(shared_xml: Path) -> None:
    names = {p.name for p in shared_xml.rglob("*.xml")}
    assert {"bigstitcher_0.xml", "dataset.xml", "test_data_bdv.xml"} <= names


@pytest.mark.parametrize("name,fragment", sorted(KNOWN_PARTIAL.items()))
def test_partial_fixtures_refused_when_strict(shared_xml: Path, name: str, fragment: str) -> None:
    path = next(shared_xml.rglob(name))
    with pytest.raises(SpimDataError) as e:
        load_xml(path)
    msg = str(e.value)
    assert name in msg and fragment in msg and "\n" not in msg, msg
    lenient = load_xml(path, strict=False)
    assert any(fragment in i for i in lenient.issues)


def test_partial_fixture_keeps_unparsable_registration_in_place(shared_xml: Path, tmp_path: Path) -> None:
    # bigstitcher_3: setup 13's <affine> is empty; the lenient load keeps it verbatim between 12 and 14.
    path = next(shared_xml.rglob("bigstitcher_3.xml"))
    sd = load_xml(path, strict=False)
    assert (0, 13) not in sd.registrations and len(sd.registrations) == 14
    assert any("setup=13>: affine has 0 numbers, expected 12" in i for i in sd.issues), sd.issues
    out = save_xml(sd, tmp_path / "b3.xml", rebase_base_path=False)
    setups = [int(s) for s in _registration_setups(Path(out.source_uri).read_bytes())]
    assert setups == list(range(15))


def _registration_setups(xml: bytes) -> list[str]:
    from lxml import etree

    return [e.get("setup") for e in etree.fromstring(xml).iter("ViewRegistration")]


def test_parsed_values_match_the_files(shared_xml: Path) -> None:
    """Counts and values read by eye from the fixture files."""
    bg = load_xml(next(shared_xml.rglob("test_data_bdv.xml")))
    assert len(bg.setups) == 8 and len(bg.registrations) == 8
    assert all(len(ts) == 3 for ts in bg.registrations.values())
    assert bg.setups[1].size == (128, 128, 107) and bg.setups[1].voxel_size == (4.08, 4.08, 5.0)
    assert bg.setups[1].voxel_unit == "um" and bg.setups[4].illumination == 1 and bg.setups[7].tile == 3
    assert bg.attribute_defs["channel"][1].name == "647 nm"
    assert [t.name for t in bg.registrations[(0, 1)]] == [
        "Stitching Transform",
        "Translation from Tile Configuration",
        "calibration",
    ]
    # view_to_world = Stitching @ TileConfig @ calibration (hand-multiplied: translations add, z scaled).
    expected = np.array(
        [
            [1.0, 0.0, 0.0, -2.331994564],
            [0.0, 1.0, 0.0, 115.0 + 1.124787364],
            [0.0, 0.0, 1.2254901960784315, -1.024911391],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(bg.view_to_world((0, 1)), expected, rtol=0, atol=1e-12)  # float rounding only

    b4 = load_xml(next(shared_xml.rglob("bigstitcher_4.xml")))
    assert len(b4.setups) == 147 and len(b4.views()) == 147 and b4.timepoints.ids == [0]
    assert b4.setups[100].voxel_size == (168.0, 168.0, 400.0) and b4.setups[100].voxel_unit == "nm"

    rh = load_xml(next(shared_xml.rglob("dataset.xml")))
    assert rh.timepoints.type == "list" and list(rh.timepoints) == [18, 30]
    assert len(rh.views()) == 14 and rh.missing_views == frozenset()
    angle = rh.attribute_defs["angle"][45]
    assert angle.name == "45" and b"<axis>1.0 0.0 0.0</axis>" in angle.raw.children[0][1].xml

    b1 = load_xml(next(shared_xml.rglob("bigstitcher_1.xml")))
    assert b1.interest_points[0].label == "beads" and b1.interest_points[0].path == "tpId_0_viewSetupId_0/beads"
    assert b1.interest_points[0].params.startswith("DOG s=4.0")


def test_repaired_registration_replaces_the_verbatim_copy(shared_xml: Path, tmp_path: Path) -> None:
    from rhapso_core.spimdata import ViewTransform

    sd = load_xml(next(shared_xml.rglob("bigstitcher_3.xml")), strict=False)
    fixed = sd.with_registrations({(0, 13): [ViewTransform("Translation to Nominal Grid", np.eye(4))]})
    out = save_xml(fixed, tmp_path / "fixed.xml", rebase_base_path=False)
    setups = [int(s) for s in _registration_setups(Path(out.source_uri).read_bytes())]
    assert sorted(setups) == list(range(15)), "setup 13 must be written once, from the model"


def test_the_fixture_xmls_are_in_the_repository():
    # A moved folder would otherwise shrink the parametrised round trips above to nothing.
    assert len(list(FIXTURES.rglob("*.xml"))) >= 7, FIXTURES
