"""``alignment.flatfield: estimate``'s input step (:mod:`rhapso_core.pipeline.flatfield_input`):
refused without the camera offset, a recorded flat field left alone, the estimate written as
BigStitcher flat-field images and a wrapped copy of the XML. The accuracy it buys is measured in
``tests/accuracy/test_flatfield_alignment.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rhapso_core.intensity.params import IntensityParams
from rhapso_core.pipeline.flatfield_input import INPUT_NAME, FlatFieldInputError, flatfield_input
from rhapso_core.spimdata import FlatFieldImageLoader, load_xml, save_xml


def _dataset(tmp_path, vignetting=0.3):
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    sp = SyntheticParams(grid=(2, 2, 1), tile_size_xyz=(96, 80, 12), overlap=0.2, vignetting=vignetting,
                         blob_density=2000.0, n_levels=2, seed=3)
    return write_dataset(tmp_path / "data", sp)


def test_the_camera_offset_is_required(tmp_path):
    paths = _dataset(tmp_path)
    with pytest.raises(FlatFieldInputError, match="intensity.dark_level"):
        flatfield_input(str(paths.xml), IntensityParams(), str(tmp_path / "ff"))


def test_the_estimate_is_written_as_a_flat_field_loader(tmp_path):
    import tifffile

    paths = _dataset(tmp_path)
    out = flatfield_input(str(paths.xml), IntensityParams(dark_level=100.0), str(tmp_path / "ff"))
    assert out == str(tmp_path / "ff" / INPUT_NAME)
    sd = load_xml(out)
    assert isinstance(sd.image_loader, FlatFieldImageLoader)
    assert sd.image_loader.inner == load_xml(paths.xml).image_loader
    loc = sd.image_location(sd.views()[0])
    bright, dark = tifffile.imread(loc.flatfield.bright), tifffile.imread(loc.flatfield.dark)
    assert bright.shape == dark.shape == (80, 96) and (dark == 100.0).all()
    # Dimmer toward the edges, as the tiles are (within the estimate's noise on four small tiles).
    assert bright[40, 0] < bright[40, 48] and bright[0, 48] < bright[40, 48]


def test_recorded_flat_fields_are_used_as_they_are(tmp_path):
    from rhapso_core.spimdata import FlatFieldFiles

    paths = _dataset(tmp_path)
    sd = load_xml(paths.xml)
    own = tmp_path / "data" / "own.xml"
    save_xml(sd.replace(image_loader=FlatFieldImageLoader(
        inner=sd.image_loader, flatfields=(FlatFieldFiles(0, 0, dark="dark.tif"),))), own)
    assert flatfield_input(str(own), IntensityParams(), str(tmp_path / "ff")) == str(own)
    assert not (tmp_path / "ff").exists()


def test_another_estimate_gets_other_names_and_replaces_the_first(tmp_path):
    # Task results are cached by the XML's content: images rewritten under the same names would
    # let a run with another offset reuse detections made through the first estimate.
    paths = _dataset(tmp_path)
    first = load_xml(flatfield_input(str(paths.xml), IntensityParams(dark_level=100.0), str(tmp_path / "ff")))
    second = load_xml(flatfield_input(str(paths.xml), IntensityParams(dark_level=95.0), str(tmp_path / "ff")))
    a = first.image_location(first.views()[0]).flatfield.bright
    b = second.image_location(second.views()[0]).flatfield.bright
    assert a != b
    assert sorted(p.name for p in (tmp_path / "ff").glob("*.tif")) == sorted(
        {Path(b).name, Path(second.image_location(second.views()[0]).flatfield.dark).name})
