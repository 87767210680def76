"""Fiji Grid/Collection TileConfiguration files: import into a BigStitcher XML and export back.

Tolerance: positions round-trip to 1e-9 pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from rhapso_core import transforms as tf
from rhapso_core.pipeline.dataset import load_dataset, open_view
from rhapso_core.spimdata import load_xml, save_xml
from rhapso_core.tileconfig import TileConfigError, export_tileconfig, import_tileconfig, read_tileconfig

CONFIG_2D = """# Define the number of dimensions we are working on
dim = 2

# Define the image coordinates
tile_1.tif; ; (0.0, 0.0)
tile_2.tif; ; (52.5, 0.0)
tile_3.tif; ; (0.0, 49.25)
tile_4.tif; ; (53.0, 48.0)
"""


@pytest.fixture
def mosaic_2d(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fiji"
    folder.mkdir()
    for i in range(1, 5):
        tifffile.imwrite(folder / f"tile_{i}.tif", rng.integers(0, 4000, (60, 64), dtype=np.uint16))
    (folder / "TileConfiguration.txt").write_text(CONFIG_2D)
    return folder


def test_2d_tileconfiguration_round_trips(mosaic_2d, tmp_path):
    xml = import_tileconfig(mosaic_2d / "TileConfiguration.txt", tmp_path / "ds" / "dataset.xml")
    sd = load_dataset(str(xml))
    assert len(sd.views()) == 4 and sd.setup_of((0, 1)).size == (64, 60, 1)
    assert open_view(sd, (0, 3)).level_shape(0) == (1, 60, 64)
    np.testing.assert_allclose(tf.apply(sd.view_to_world((0, 1)), np.zeros((1, 3)))[0], [52.5, 0, 0])

    out = tmp_path / "TileConfiguration.registered.txt"
    export_tileconfig(xml, out)
    back, orig = read_tileconfig(out), read_tileconfig(mosaic_2d / "TileConfiguration.txt")
    assert back.dim == 2
    assert [e.file.split("/")[-1] for e in back.entries] == [e.file for e in orig.entries]
    np.testing.assert_allclose([e.position for e in back.entries], [e.position for e in orig.entries], atol=1e-9)
    # The file names written point at the images from the new file's folder.
    assert all((out.parent / e.file).exists() for e in back.entries)


def test_registered_positions_are_written_back(mosaic_2d, tmp_path):
    xml = import_tileconfig(mosaic_2d / "TileConfiguration.txt", tmp_path / "dataset.xml")
    sd = load_xml(str(xml))
    sd = sd.with_prepended_transform((0, 2), "rhapso translation solve", tf.translation([1.5, -2.25, 0.0]))
    save_xml(sd, str(tmp_path / "aligned.xml"))
    config = export_tileconfig(tmp_path / "aligned.xml", tmp_path / "reg.txt")
    np.testing.assert_allclose(config.entries[2].position, (1.5, 49.25 - 2.25), atol=1e-9)
    np.testing.assert_allclose(config.entries[1].position, (52.5, 0.0), atol=1e-9)


def test_3d_tileconfiguration_with_anisotropic_voxels(tmp_path):
    folder = tmp_path / "fiji3"
    folder.mkdir()
    for i in (1, 2):
        tifffile.imwrite(folder / f"s{i}.tif", np.zeros((5, 32, 40), np.uint16))
    (folder / "TileConfiguration.txt").write_text("dim = 3\ns1.tif; ; (0, 0, 0)\ns2.tif; ; (30.0, 1.0, 2.0)\n")
    xml = import_tileconfig(folder / "TileConfiguration.txt", tmp_path / "d.xml", voxel_size_xyz=(0.5, 0.5, 2.0))
    sd = load_dataset(str(xml))
    # World units are pixels of the finest axis: 2 planes of 2 um are 8 x-pixels of 0.5 um.
    np.testing.assert_allclose(tf.apply(sd.view_to_world((0, 1)), np.zeros((1, 3)))[0], [30, 1, 8])
    config = export_tileconfig(xml, tmp_path / "back.txt")
    assert config.dim == 3
    np.testing.assert_allclose(config.entries[1].position, (30, 1, 2))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("tile.tif; ; (0, 0)\n", "before the 'dim"),
        ("dim = 2\ntile.tif; ; (0, 0, 0)\n", ":2: position"),
        ("dim = 4\n", "only 2 and 3"),
        ("dim = 2\ntile.tif (0, 0)\n", "expected 'file; series"),
        ("dim = 2\n", "no image lines"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, text, fragment):
    p = tmp_path / "TileConfiguration.txt"
    p.write_text(text)
    with pytest.raises(TileConfigError, match=fragment.replace("(", r"\(")):
        read_tileconfig(p)


def test_missing_image_is_named(tmp_path):
    (tmp_path / "TileConfiguration.txt").write_text("dim = 2\nnope.tif; ; (0, 0)\n")
    with pytest.raises(TileConfigError, match="nope.tif"):
        import_tileconfig(tmp_path / "TileConfiguration.txt", tmp_path / "x.xml")
    assert not (tmp_path / "x.xml").exists()


def test_cli_import_and_export(mosaic_2d, tmp_path, capsys):
    from rhapso_cli.main import main

    xml = tmp_path / "dataset.xml"
    assert main(["import", str(mosaic_2d / "TileConfiguration.txt"), "--out", str(xml)]) == 0
    out = tmp_path / "TileConfiguration.registered.txt"
    assert main(["export-tileconfig", str(xml), "--out", str(out)]) == 0
    assert read_tileconfig(out).dim == 2
    # Bad input: exit 2, one line naming the file and line, nothing written.
    bad = tmp_path / "bad.txt"
    bad.write_text("dim = 2\ntile_1.tif; ; (0)\n")
    capsys.readouterr()
    assert main(["import", str(bad), "--out", str(tmp_path / "b.xml")]) == 2
    assert "bad.txt:2" in capsys.readouterr().err and not (tmp_path / "b.xml").exists()
