"""BigStitcher's flat-field loader (``spimreconstruction.wrapped.flatfield.*``) in the XML model:
read, located per view, written back unchanged. The element layout is BigStitcher's
``XmlIoFlatfieldCorrectedWrappedImgLoader`` (attribute names from mpicbg's ``XmlKeys``:
``Timepoint``, ``ViewSetup``)."""

from __future__ import annotations

import pytest

from rhapso_core.spimdata import FlatFieldImageLoader, SpimDataError, SplitImageLoader, from_xml_bytes, to_xml_bytes

_XML = """<?xml version="1.0" encoding="UTF-8"?>
<SpimData version="0.2">
  <BasePath type="relative">.</BasePath>
  <SequenceDescription>
    <ImageLoader format="{fmt}" Active="{active}" Cached="true">
      <WrappedImgLoader>
        <ImageLoader format="bdv.n5" version="1.0">
          <n5 type="relative">dataset.n5</n5>
        </ImageLoader>
      </WrappedImgLoader>
      <FlatFields>
        <FlatField Timepoint="0" ViewSetup="0">
          <BrightImg type="relative">ff/bright.tif</BrightImg>
          <DarkImg type="absolute">/calib/dark.tif</DarkImg>
        </FlatField>
        <FlatField Timepoint="0" ViewSetup="1">
          <DarkImg type="relative">ff/dark1.tif</DarkImg>
        </FlatField>
      </FlatFields>
    </ImageLoader>
    <ViewSetups>
      <ViewSetup><id>0</id><name>0</name><size>64 48 10</size>
        <voxelSize><unit>um</unit><size>1.0 1.0 1.0</size></voxelSize></ViewSetup>
      <ViewSetup><id>1</id><name>1</name><size>64 48 10</size>
        <voxelSize><unit>um</unit><size>1.0 1.0 1.0</size></voxelSize></ViewSetup>
      <ViewSetup><id>2</id><name>2</name><size>64 48 10</size>
        <voxelSize><unit>um</unit><size>1.0 1.0 1.0</size></voxelSize></ViewSetup>
    </ViewSetups>
    <Timepoints type="pattern"><integerpattern>0</integerpattern></Timepoints>
  </SequenceDescription>
  <ViewRegistrations>
    <ViewRegistration timepoint="0" setup="0"><ViewTransform type="affine"><affine>1 0 0 0 0 1 0 0 0 0 1 0</affine></ViewTransform></ViewRegistration>
    <ViewRegistration timepoint="0" setup="1"><ViewTransform type="affine"><affine>1 0 0 50 0 1 0 0 0 0 1 0</affine></ViewTransform></ViewRegistration>
    <ViewRegistration timepoint="0" setup="2"><ViewTransform type="affine"><affine>1 0 0 100 0 1 0 0 0 0 1 0</affine></ViewTransform></ViewRegistration>
  </ViewRegistrations>
</SpimData>
"""

_FORMATS = ("spimreconstruction.wrapped.flatfield.default", "spimreconstruction.wrapped.flatfield.multiresolution")


def _load(fmt: str = _FORMATS[1], active: str = "true", folder: str = "/data/run"):
    return from_xml_bytes(_XML.format(fmt=fmt, active=active).encode(), source=f"{folder}/dataset.xml")


@pytest.mark.parametrize("fmt", _FORMATS)
def test_both_formats_read_and_write_back_unchanged(fmt):
    sd = _load(fmt)
    loader = sd.image_loader
    assert isinstance(loader, FlatFieldImageLoader) and loader.format == fmt and loader.active
    assert [(f.timepoint, f.setup, f.bright, f.dark) for f in loader.flatfields] == [
        (0, 0, "ff/bright.tif", "/calib/dark.tif"), (0, 1, None, "ff/dark1.tif")]
    again = from_xml_bytes(to_xml_bytes(sd), source="/data/run/dataset.xml")
    assert again.image_loader == loader
    assert to_xml_bytes(again) == to_xml_bytes(sd)


def test_views_locate_through_the_wrapped_loader_with_their_images():
    sd = _load()
    loc = sd.image_location((0, 0))
    assert (loc.kind, loc.uri, loc.dataset) == ("n5", "/data/run/dataset.n5", "setup0/timepoint0")
    assert (loc.flatfield.bright, loc.flatfield.dark) == ("/data/run/ff/bright.tif", "/calib/dark.tif")
    one = sd.image_location((0, 1)).flatfield
    assert (one.bright, one.dark) == (None, "/data/run/ff/dark1.tif")
    # No <FlatField> for setup 2: read as the wrapped loader gives it.
    assert sd.image_location((0, 2)).flatfield is None


def test_an_inactive_loader_reads_the_raw_pixels():
    sd = _load(active="false")
    assert not sd.image_loader.active
    assert sd.image_location((0, 0)).flatfield is None
    assert b'Active="false"' in to_xml_bytes(sd)


def test_a_split_of_a_flat_field_dataset_corrects_the_parent_before_the_crop():
    from rhapso_core.spimdata import SetupIdDefinition

    sd = _load()
    split = SplitImageLoader(inner=sd.image_loader,
                             setup_ids=(SetupIdDefinition(new_id=7, old_id=0, min=(0, 0, 0), max=(31, 47, 9)),))
    loc = sd.replace(image_loader=split).image_location((0, 7))
    assert loc.parent == (0, 0) and loc.flatfield is None
    assert loc.inner.flatfield.bright == "/data/run/ff/bright.tif"


def test_missing_wrapped_loader_is_named():
    bad = _XML.format(fmt=_FORMATS[0], active="true").replace("<WrappedImgLoader>", "<Other>").replace(
        "</WrappedImgLoader>", "</Other>")
    with pytest.raises(SpimDataError, match="missing <WrappedImgLoader>"):
        from_xml_bytes(bad.encode(), source="/data/run/dataset.xml")


def test_a_bad_active_attribute_is_named():
    with pytest.raises(SpimDataError, match="attribute 'Active' must be true or false"):
        from_xml_bytes(_XML.format(fmt=_FORMATS[0], active="yes").encode(), source="/d/x.xml")


def test_the_bright_and_dark_images_are_inputs_no_output_may_replace(tmp_path):
    from rhapso_core.pipeline.input_guard import dataset_inputs

    sd = _load(folder=str(tmp_path))
    found = {p.path: p.what for p in dataset_inputs(str(tmp_path / "dataset.xml"), sd=sd)}
    assert found[str(tmp_path / "ff" / "bright.tif")] == "the flat-field bright image of view (timepoint 0, setup 0)"
    assert found["/calib/dark.tif"] == "the flat-field dark image of view (timepoint 0, setup 0)"
    assert str(tmp_path / "ff" / "dark1.tif") in found


def test_lower_case_attributes_of_hand_made_files_are_read_and_kept():
    text = _XML.format(fmt=_FORMATS[0], active="true").replace(
        '<FlatField Timepoint="0" ViewSetup="1">', '<FlatField timepoint="0" setup="1">')
    sd = from_xml_bytes(text.encode(), source="/data/run/dataset.xml")
    assert sd.image_location((0, 1)).flatfield.dark == "/data/run/ff/dark1.tif"
    out = to_xml_bytes(sd)
    assert b'<FlatField timepoint="0" setup="1">' in out and b'<FlatField Timepoint="0" ViewSetup="0">' in out
