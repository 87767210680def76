"""Model semantics: transform order, immutability, views, builder, saving, number text."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from rhapso_core import transforms
from rhapso_core.spimdata import (
    SpimData,
    SpimDataError,
    Timepoints,
    ViewSetup,
    ViewTransform,
    ZarrImageLoader,
    format_double,
    from_xml_bytes,
    load_xml,
    make_spimdata,
    parse_integer_pattern,
    save_xml,
    to_xml_bytes,
)

# 90 degrees about z, and a translation by +10 in x: they do not commute.
ROT_Z90 = np.array([[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
SHIFT_X10 = transforms.translation([10.0, 0.0, 0.0])


def _dataset(tmp_path: Path | None = None, n_setups: int = 3, timepoints=(0,), missing=()) -> SpimData:
    setups = [
        ViewSetup(id=i, name=f"tile{i}", size=(64, 48, 32), voxel_size=(0.5, 0.5, 2.0), voxel_unit="um", attributes={"tile": i})
        for i in range(n_setups)
    ]
    views = [(t, s) for t in timepoints for s in range(n_setups) if (t, s) not in set(missing)]
    regs = {v: [("Translation to Nominal Grid", transforms.translation([50.0 * v[1], 0.0, 0.0]))] for v in views}
    loader = ZarrImageLoader.from_paths("tiles.ome.zarr", {v: f"tile_{v[1]:03d}.zarr" for v in views}, root_type="relative")
    return make_spimdata(
        setups=setups,
        registrations=regs,
        image_loader=loader,
        timepoints=timepoints,
        missing_views=missing,
        source_uri=None if tmp_path is None else tmp_path / "dataset.xml",
    )


def test_view_to_world_is_first_listed_applied_last() -> None:
    sd = _dataset().with_registrations({(0, 0): [ViewTransform("rot", ROT_Z90), ViewTransform("shift", SHIFT_X10)]})
    # Hand-computed ROT_Z90 @ SHIFT_X10: shift first (x + 10), then rotate (x, y) -> (-y, x).
    expected = np.array([[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 10.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    m = sd.view_to_world((0, 0))
    assert np.array_equal(m, expected)  # exact: only 0/1/10 involved
    # Voxel (1, 0, 0): shifted to (11, 0, 0), rotated to (0, 11, 0). The other order would give (10, 1, 0).
    assert np.array_equal(transforms.apply(m, [[1.0, 0.0, 0.0]]), [[0.0, 11.0, 0.0]])


def test_with_prepended_transform_returns_new_object_and_leaves_input_alone() -> None:
    sd = _dataset()
    before_xml = to_xml_bytes(sd)
    before = {v: sd.view_to_world(v).copy() for v in sd.views()}
    out = sd.with_prepended_transform([(0, 0), (0, 2)], "solve", ROT_Z90)
    assert out is not sd
    assert to_xml_bytes(sd) == before_xml, "input document changed"
    for v in sd.views():
        assert np.array_equal(sd.view_to_world(v), before[v])
    assert [t.name for t in out.registrations[(0, 0)]] == ["solve", "Translation to Nominal Grid"]
    assert np.array_equal(out.view_to_world((0, 2)), ROT_Z90 @ before[(0, 2)])  # prepended = applied last
    assert np.array_equal(out.view_to_world((0, 1)), before[(0, 1)])
    # One affine per view via a mapping; a single view id works too.
    per_view = out.with_prepended_transform((0, 1), "fine", {(0, 1): SHIFT_X10})
    assert np.array_equal(per_view.view_to_world((0, 1)), SHIFT_X10 @ before[(0, 1)])


def test_affines_are_read_only() -> None:
    sd = _dataset()
    with pytest.raises(ValueError):
        sd.registrations[(0, 0)][0].affine[0, 3] = 5.0
    with pytest.raises(SpimDataError, match="not a view of this dataset"):
        sd.with_prepended_transform((0, 9), "x", np.eye(4))


def test_views_exclude_missing_and_are_sorted() -> None:
    sd = _dataset(n_setups=3, timepoints=(2, 0), missing=[(2, 1)])
    assert sd.views() == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 2)]
    assert sd.missing_views == {(2, 1)}
    assert sd.timepoints.type == "list" and sd.timepoints.ids == [0, 2]


def test_integer_patterns() -> None:
    assert parse_integer_pattern("0") == [0]
    assert parse_integer_pattern("0-3") == [0, 1, 2, 3]
    assert parse_integer_pattern("0-9:4") == [0, 4, 8]
    assert parse_integer_pattern("1, 4,7-8") == [1, 4, 7, 8]
    assert Timepoints.from_ids([3, 4, 5]) == Timepoints("range", first=3, last=5)


def test_builder_save_load_roundtrip(tmp_path: Path, canon) -> None:
    sd = _dataset(tmp_path)
    path = tmp_path / "dataset.xml"
    written = save_xml(sd, path)
    back = load_xml(path)
    assert back == sd and written.source_uri == str(path)
    assert back.base_path == str(tmp_path)
    assert back.image_location((0, 1)).uri == str(tmp_path / "tiles.ome.zarr")
    assert [g.name for g in back.attribute_groups] == ["illumination", "channel", "tile", "angle"]
    root = etree.fromstring(path.read_bytes())
    # BigStitcher's full layout, with the unmodelled sections present and empty.
    assert [c.tag for c in root] == [
        "BasePath",
        "SequenceDescription",
        "ViewRegistrations",
        "ViewInterestPoints",
        "BoundingBoxes",
        "PointSpreadFunctions",
        "StitchingResults",
        "IntensityAdjustments",
    ]
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<SpimData version="0.2">\n  <BasePath')


def test_builder_refuses_view_without_registration() -> None:
    setups = [ViewSetup(id=0, size=(8, 8, 8)), ViewSetup(id=1, size=(8, 8, 8))]
    with pytest.raises(SpimDataError, match=r"<new SpimData>: <ViewRegistrations>: no <ViewRegistration> for timepoint=0 setup=1"):
        make_spimdata(setups=setups, registrations={(0, 0): [("a", np.eye(4))]}, image_loader=None)
    with pytest.raises(SpimDataError, match="missing <size>"):
        make_spimdata(setups=[ViewSetup(id=0)], registrations={}, image_loader=None)


def test_new_numbers_are_written_like_java_and_old_text_is_kept(tmp_path: Path) -> None:
    xml = to_xml_bytes(_dataset())
    sd = from_xml_bytes(xml.replace(b"50.0 0.0 1.0", b"50 0 1"), str(tmp_path / "d.xml"))
    a = np.eye(4)
    a[0, 3] = 3.5e-4
    out = to_xml_bytes(sd.with_prepended_transform((0, 1), "solve", a))
    assert b"<affine>1.0 0.0 0.0 3.5E-4 0.0 1.0 0.0 0.0 0.0 0.0 1.0 0.0</affine>" in out
    assert b">1.0 0.0 0.0 50 0 1 0.0 0.0 0.0 0.0 1.0 0.0<" in out, "unchanged affine text must be kept verbatim"


@pytest.mark.parametrize(
    "x,text",
    [
        (1.0, "1.0"),
        (-7096.0, "-7096.0"),
        (0.001, "0.001"),
        (3.685859256398284e-4, "3.685859256398284E-4"),
        (1.2246467991473532e-16, "1.2246467991473532E-16"),
        (1e7, "1.0E7"),
        (-2.5e-5, "-2.5E-5"),
        (0.0, "0.0"),
        (1.2254901960784315, "1.2254901960784315"),
    ],
)
def test_format_double_matches_java(x: float, text: str) -> None:
    assert format_double(x) == text and float(text) == x


def test_save_elsewhere_keeps_base_path(tmp_path: Path, shared_xml: Path) -> None:
    src = next(shared_xml.rglob("test_data_bdv.xml"))
    sd = load_xml(src)
    (tmp_path / "sub").mkdir()
    out = tmp_path / "sub" / "moved.xml"
    save_xml(sd, out)
    moved = load_xml(out)
    assert moved.base_path == sd.base_path == str(src.parent)
    assert moved.image_location((0, 2)) == sd.image_location((0, 2))
    assert moved.base_path_type == "relative" and moved.base_path_text == os.path.relpath(src.parent, out.parent)
    # Without rebasing the relative BasePath now points next to the new file.
    save_xml(sd, out, rebase_base_path=False)
    assert load_xml(out).base_path == str(out.parent)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = _dataset(tmp_path)
    path = tmp_path / "dataset.xml"
    save_xml(sd, path)
    original = path.read_bytes()
    changed = sd.with_prepended_transform((0, 0), "solve", SHIFT_X10)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_xml(changed, path)
    assert path.read_bytes() == original, "a failed save must leave the old file intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.xml"], "temporary file left behind"
    monkeypatch.undo()
    save_xml(changed, path)
    assert load_xml(path) == changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.xml"]


def test_fsspec_uri_load_and_save() -> None:
    """Non-local URIs go through fsspec (memory:// stands in for s3:// here)."""
    sd = _dataset()
    uri = "memory://bucket/project/dataset.xml"
    save_xml(sd, uri)
    back = load_xml(uri)
    assert back == sd and back.source_uri == uri
    assert back.base_path == "memory://bucket/project"
    assert back.image_location((0, 2)).dataset_uri == "memory://bucket/project/tiles.ome.zarr/tile_002.zarr"


def test_relative_base_path_needs_a_location() -> None:
    with pytest.raises(SpimDataError, match="cannot resolve"):
        _ = _dataset().base_path
    assert _dataset().with_source_uri("s3://b/p/d.xml").base_path == "s3://b/p"


def test_unknown_content_survives_in_place(tmp_path: Path, canon) -> None:
    xml = to_xml_bytes(_dataset())
    xml = xml.replace(b"  <ViewRegistrations>", b"  <Custom a=\"1\"><x>keep</x></Custom>\n  <ViewRegistrations>")
    xml = xml.replace(b"<name>tile1</name>", b"<name>tile1</name><!-- note --><extra k=\"v\">7</extra>")
    xml = xml.replace(b'<ViewRegistration timepoint="0" setup="2">', b'<ViewRegistration timepoint="0" setup="2" quality="0.9">')
    xml = xml.replace(b"<Tile>", b'<Tile flag="y">', 1)
    p = tmp_path / "custom.xml"
    p.write_bytes(xml)
    sd = load_xml(p)
    changed = sd.with_prepended_transform(sd.views(), "solve", SHIFT_X10)
    out = tmp_path / "out.xml"
    save_xml(changed, out)
    root = etree.fromstring(out.read_bytes())
    assert [c.tag for c in root][:4] == ["BasePath", "SequenceDescription", "Custom", "ViewRegistrations"]
    setup1 = root.find("SequenceDescription/ViewSetups/ViewSetup[id='1']")
    assert [c.tag if isinstance(c.tag, str) else "comment" for c in setup1] == [
        "id", "name", "comment", "extra", "size", "voxelSize", "attributes"
    ]
    assert root.find("ViewRegistrations/ViewRegistration[@setup='2']").get("quality") == "0.9"
    assert root.find("SequenceDescription/ViewSetups/Attributes/Tile").get("flag") == "y"
    # Unchanged save is canonical-identical.
    save_xml(sd, out)
    assert canon(out.read_bytes()) == canon(xml)
