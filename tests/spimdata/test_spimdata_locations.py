"""image_location for every loader type in the fixtures; expected paths read by eye from the XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from rhapso_core.spimdata import ImageLocation, SpimDataError, SplitImageLoader, from_xml_bytes, load_xml


def _fixture(shared_xml: Path, name: str, strict: bool = True):
    path = next(shared_xml.rglob(name))
    return path.parent, load_xml(path, strict=strict)


def test_zarr_absolute_root(shared_xml: Path) -> None:
    _, sd = _fixture(shared_xml, "bigstitcher_1.xml")
    loc = sd.image_location((0, 3))
    assert loc == ImageLocation("ome-zarr", "/data/foo_dataset/SPIM.ome.zarr", "tile_x_0001_y_0000_z_0000_ch_488.zarr")
    assert loc.dataset_uri == "/data/foo_dataset/SPIM.ome.zarr/tile_x_0001_y_0000_z_0000_ch_488.zarr"


def test_zarr_in_s3_bucket(shared_xml: Path) -> None:
    _, sd = _fixture(shared_xml, "bigstitcher_2.xml")
    loc = sd.image_location((0, 14))
    assert loc.kind == "ome-zarr"
    assert loc.uri == "s3://aind-open-data/exaSPIM_719654_2024-06-14_12-48-10/SPIM.ome.zarr"
    assert loc.dataset == "tile_x_0004_y_0002_z_0000_ch_488.zarr"


def test_zarr_view_without_zgroup(shared_xml: Path) -> None:
    _, sd = _fixture(shared_xml, "bigstitcher_2.xml")
    with pytest.raises(SpimDataError, match=r"bigstitcher_2\.xml: <ImageLoader format=\"bdv\.multimg\.zarr\">: no <zgroup> for view timepoint=1 setup=0"):
        sd.image_location((1, 0))


def test_n5_relative(shared_xml: Path) -> None:
    folder, sd = _fixture(shared_xml, "bigstitcher_4.xml")
    assert sd.image_location((0, 100)) == ImageLocation("n5", str(folder / "dataset.n5"), "setup100/timepoint0")
    # bigstitcher_0 writes the n5 path over several lines; whitespace is not part of the path.
    folder0, sd0 = _fixture(shared_xml, "bigstitcher_0.xml", strict=False)
    assert sd0.image_location((0, 7)) == ImageLocation("n5", str(folder0 / "dataset.n5"), "setup7/timepoint0")


def test_hdf5(shared_xml: Path) -> None:
    folder, sd = _fixture(shared_xml, "test_data_bdv.xml")
    assert sd.image_location((0, 5)) == ImageLocation("hdf5", str(folder / "test_data_bdv.h5"), "t00000/s05")


def test_tiff_filemap(shared_xml: Path) -> None:
    folder, sd = _fixture(shared_xml, "dataset.xml")
    loc = sd.image_location((18, 4))
    f = str(folder / "spim_TL18_Angle180.tif")
    assert loc == ImageLocation("tiff", f, "", files=(f,), series=0, channel=0)
    assert sd.image_location((30, 6)).files == (str(folder / "spim_TL30_Angle270.tif"),)


def test_split_loader(split_xml: Path) -> None:
    sd = load_xml(split_xml)
    assert isinstance(sd.image_loader, SplitImageLoader)
    loc = sd.image_location((0, 1))
    inner = ImageLocation("n5", str(split_xml.parent / "dataset.n5"), "setup0/timepoint0")
    assert loc.inner == inner
    assert (loc.kind, loc.uri, loc.dataset) == (inner.kind, inner.uri, inner.dataset)
    assert loc.parent == (0, 0) and loc.offset_xyz == (960, 0, 0) and loc.size_xyz == (1088, 2048, 1024)
    assert sd.image_location((0, 0)).offset_xyz == (0, 0, 0)
    # The split tile's size in <ViewSetup> agrees with its SetupIdDefinition box.
    assert sd.setups[1].size == loc.size_xyz
    assert sd.attribute_defs["tile"][1].raw.children[0][1].xml == b"<location>960.0 0.0 0.0</location>"


def test_relative_paths_under_s3_base(split_xml: Path) -> None:
    sd = from_xml_bytes(split_xml.read_bytes(), "s3://bucket/run1/dataset.xml")
    assert sd.base_path == "s3://bucket/run1"
    assert sd.image_location((0, 1)).uri == "s3://bucket/run1/dataset.n5"
    up = sd.replace(base_path_text="../raw")
    assert up.image_location((0, 1)).uri == "s3://bucket/raw/dataset.n5"
