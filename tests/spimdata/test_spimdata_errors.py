"""Bad input: each case raises SpimDataError with one line naming the file and the element."""

from __future__ import annotations

from pathlib import Path

import pytest

from rhapso_core.spimdata import SpimDataError, UnknownImageLoader, load_xml

GOOD = """<?xml version="1.0" encoding="UTF-8"?>
<SpimData version="0.2">
  <BasePath type="relative">.</BasePath>
  <SequenceDescription>
    <ImageLoader format="bdv.n5" version="1.0">
      <n5 type="relative">dataset.n5</n5>
    </ImageLoader>
    <ViewSetups>
      <ViewSetup>
        <id>0</id>
        <name>a</name>
        <size>64 64 32</size>
        <voxelSize><unit>um</unit><size>1.0 1.0 2.0</size></voxelSize>
        <attributes><illumination>0</illumination><channel>0</channel><tile>0</tile><angle>0</angle></attributes>
      </ViewSetup>
      <ViewSetup>
        <id>3</id>
        <name>b</name>
        <size>64 64 32</size>
        <voxelSize><unit>um</unit><size>1.0 1.0 2.0</size></voxelSize>
        <attributes><illumination>0</illumination><channel>0</channel><tile>1</tile><angle>0</angle></attributes>
      </ViewSetup>
    </ViewSetups>
    <Timepoints type="range"><first>0</first><last>0</last></Timepoints>
    <MissingViews />
  </SequenceDescription>
  <ViewRegistrations>
    <ViewRegistration timepoint="0" setup="0">
      <ViewTransform type="affine"><Name>t</Name><affine>1.0 0.0 0.0 0.0 0.0 1.0 0.0 0.0 0.0 0.0 1.0 0.0</affine></ViewTransform>
    </ViewRegistration>
    <ViewRegistration timepoint="0" setup="3">
      <ViewTransform type="affine"><Name>t</Name><affine>1.0 0.0 0.0 50.0 0.0 1.0 0.0 0.0 0.0 0.0 1.0 0.0</affine></ViewTransform>
    </ViewRegistration>
  </ViewRegistrations>
</SpimData>
"""

REG3 = GOOD[GOOD.index('    <ViewRegistration timepoint="0" setup="3">') : GOOD.index("  </ViewRegistrations>")]


def _write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "data.xml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def _error(tmp_path: Path, text: str | bytes) -> str:
    with pytest.raises(SpimDataError) as e:
        load_xml(_write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg, "error message must be one line"
    assert "data.xml" in msg, f"error must name the file: {msg}"
    return msg


def test_good_document_loads(tmp_path: Path) -> None:
    sd = load_xml(_write(tmp_path, GOOD))
    assert sd.views() == [(0, 0), (0, 3)]


CASES = {
    "malformed": (GOOD.replace("</BasePath>", "</Base>"), ["malformed or truncated XML"]),
    "truncated": (GOOD[: len(GOOD) // 2], ["malformed or truncated XML"]),
    "empty": ("", ["malformed or truncated XML"]),
    "not_spimdata": ("<Foo/>", ["<Foo>", "root element is not <SpimData>"]),
    "no_sequence": (
        GOOD[: GOOD.index("  <SequenceDescription>")] + GOOD[GOOD.index("  <ViewRegistrations>") :],
        ["<SpimData version=0.2>", "missing <SequenceDescription>"],
    ),
    "no_viewsetups": (
        GOOD[: GOOD.index("    <ViewSetups>")] + GOOD[GOOD.index("    <Timepoints") :],
        ["<SequenceDescription>", "missing <ViewSetups>"],
    ),
    "no_timepoints": (
        GOOD.replace('<Timepoints type="range"><first>0</first><last>0</last></Timepoints>', ""),
        ["<SequenceDescription>", "missing <Timepoints>"],
    ),
    "no_registrations": (
        GOOD[: GOOD.index("  <ViewRegistrations>")] + "</SpimData>\n",
        ["<SpimData version=0.2>", "missing <ViewRegistrations>"],
    ),
    "no_setup_id": (GOOD.replace("<id>3</id>", "", 1), ["<ViewSetup>", "missing <id>"]),
    "no_setup_size": (GOOD.replace("<name>b</name>\n        <size>64 64 32</size>", "<name>b</name>"), ["<ViewSetup id=3>", "missing <size>"]),
    "bad_size": (GOOD.replace("<size>64 64 32</size>", "<size>64 64</size>", 1), ["<ViewSetup id=0>", "<size> has 2 numbers, expected 3"]),
    "duplicate_setup": (GOOD.replace("<id>3</id>", "<id>0</id>"), ["<ViewSetup>", "duplicate ViewSetup id 0"]),
    "no_n5_path": (GOOD.replace('<n5 type="relative">dataset.n5</n5>', ""), ['<ImageLoader format=bdv.n5 version=1.0>', "missing <n5>"]),
    "unknown_loader": (
        GOOD.replace('format="bdv.n5"', 'format="bdv.imaginary"'),
        ["<ImageLoader format=bdv.imaginary", "unknown image loader format 'bdv.imaginary'"],
    ),
    "bad_timepoints_type": (GOOD.replace('type="range"', 'type="weird"'), ["<Timepoints type=weird>", "unknown Timepoints type"]),
    "view_without_registration": (
        GOOD.replace(REG3, ""),
        ["<ViewRegistrations>", "no <ViewRegistration> for timepoint=0 setup=3"],
    ),
    "non_numeric_affine": (
        GOOD.replace("1.0 0.0 0.0 50.0", "1.0 0.0 abc 50.0"),
        ["<ViewRegistration timepoint=0 setup=3>", "affine has a non-numeric value 'abc'"],
    ),
    "affine_11_numbers": (
        GOOD.replace("1.0 0.0 0.0 50.0 ", "1.0 0.0 50.0 "),
        ["<ViewRegistration timepoint=0 setup=3>: affine has 11 numbers, expected 12"],
    ),
    "affine_missing": (
        GOOD.replace("<Name>t</Name><affine>1.0 0.0 0.0 50.0 0.0 1.0 0.0 0.0 0.0 0.0 1.0 0.0</affine>", "<Name>t</Name>"),
        ["<ViewRegistration timepoint=0 setup=3>", "has no <affine>"],
    ),
    "affine_nan": (
        GOOD.replace("1.0 0.0 0.0 50.0", "1.0 0.0 0.0 NaN"),
        ["<ViewRegistration timepoint=0 setup=3>", "non-finite"],
    ),
    "registration_bad_setup_attr": (
        GOOD.replace('setup="3">', 'setup="x">'),
        ["<ViewRegistration timepoint=0 setup=x>", "attribute 'setup' is not an integer"],
    ),
    "missing_view_without_attr": (
        GOOD.replace("<MissingViews />", '<MissingViews><MissingView timepoint="0"/></MissingViews>'),
        ["<MissingView timepoint=0>", "missing attribute 'setup'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_and_element(tmp_path: Path, case: str) -> None:
    text, fragments = CASES[case]
    msg = _error(tmp_path, text)
    for f in fragments:
        assert f in msg, f"{case}: expected {f!r} in {msg!r}"


def test_affine_error_carries_line_number(tmp_path: Path) -> None:
    text = GOOD.replace("1.0 0.0 0.0 50.0 ", "1.0 0.0 50.0 ")
    line = 1 + text[: text.index("1.0 0.0 50.0 ")].count("\n")
    assert f"(line {line})" in _error(tmp_path, text)


def test_missing_view_needs_no_registration(tmp_path: Path) -> None:
    text = GOOD.replace(REG3, "").replace("<MissingViews />", '<MissingViews><MissingView timepoint="0" setup="3"/></MissingViews>')
    sd = load_xml(_write(tmp_path, text))
    assert sd.views() == [(0, 0)] and sd.missing_views == {(0, 3)}


def test_unknown_loader_tolerated_when_not_strict(tmp_path: Path) -> None:
    sd = load_xml(_write(tmp_path, GOOD.replace('format="bdv.n5"', 'format="bdv.imaginary"')), strict=False)
    assert isinstance(sd.image_loader, UnknownImageLoader) and sd.image_loader.format == "bdv.imaginary"
    with pytest.raises(SpimDataError, match=r"data\.xml: <ImageLoader format=\"bdv\.imaginary\">: unsupported"):
        sd.image_location((0, 0))


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_xml(tmp_path / "nope.xml")
