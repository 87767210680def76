"""BigStitcher 2.x writes absolute local paths as Java URIs (``file:/data/x.zarr/``); they locate
local data, and the ``indicies`` of each zgroup reach the image location. Exact equality."""

from __future__ import annotations

import os

from rhapso_core.spimdata import from_xml_bytes, to_xml_bytes, uris


def test_java_file_uri_is_a_local_path():
    assert uris.normalize("file:/data/x.zarr/") == os.path.normpath("/data/x.zarr")
    assert uris.normalize("file:///data/x.zarr") == os.path.normpath("/data/x.zarr")


XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<SpimData version="0.2">
  <BasePath type="absolute">/base</BasePath>
  <SequenceDescription>
    <ImageLoader format="bdv.multimg.zarr" version="3.0">
      <zarr type="absolute">file:/data/fused.zarr/</zarr>
      <zgroups>
        <zgroup setup="0" tp="0" path="" indicies="0 0"/>
        <zgroup setup="1" tp="0" path="s1-t0.zarr" indicies="[]"/>
      </zgroups>
    </ImageLoader>
    <ViewSetups>
      <ViewSetup><id>0</id><size>4 4 4</size></ViewSetup>
      <ViewSetup><id>1</id><size>4 4 4</size></ViewSetup>
    </ViewSetups>
    <Timepoints type="range"><first>0</first><last>0</last></Timepoints>
  </SequenceDescription>
  <ViewRegistrations>
    <ViewRegistration timepoint="0" setup="0"><ViewTransform type="affine"><affine>1 0 0 0 0 1 0 0 0 0 1 0</affine></ViewTransform></ViewRegistration>
    <ViewRegistration timepoint="0" setup="1"><ViewTransform type="affine"><affine>1 0 0 0 0 1 0 0 0 0 1 0</affine></ViewTransform></ViewRegistration>
  </ViewRegistrations>
</SpimData>
"""


def test_zgroup_attributes_locate_and_write_back():
    sd = from_xml_bytes(XML, source="/base/dataset.xml")
    a, b = sd.image_location((0, 0)), sd.image_location((0, 1))
    assert (a.uri, a.dataset, a.indices) == (os.path.normpath("/data/fused.zarr"), "", (0, 0))
    assert (b.dataset, b.indices) == ("s1-t0.zarr", ())
    out = to_xml_bytes(sd)
    assert b'path="" indicies="0 0"' in out and b'path="s1-t0.zarr" indicies="[]"' in out and b"<path>" not in out
    assert from_xml_bytes(out, source="/base/dataset.xml") == sd
