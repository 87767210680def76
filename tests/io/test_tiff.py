"""TIFF readers: single multi-page stacks and one-file-per-plane series (real data)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rhapso_core.io import ImageIOError, open_image
from rhapso_core.io import tiff_source



def _stack(shape=(6, 40, 50)) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 60000, shape).astype(np.uint16)


def test_single_multipage_tiff_lazy_read(tmp_path):
    vol = _stack()
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, vol, rowsperstrip=8)
    img = open_image(str(path))
    assert img.kind == "tiff" and img.shape == vol.shape and img.dtype == np.uint16 and img.n_levels == 1
    box = ((2, 5), (9, 33), (4, 47))
    np.testing.assert_array_equal(img.read(box), vol[2:5, 9:33, 4:47])
    # Picklable for process pools: the file handle is reopened on demand.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(img)).read(box), vol[2:5, 9:33, 4:47])
    img.close()


def test_imagej_and_ome_voxel_size(tmp_path):
    vol = _stack((4, 8, 9))
    tifffile.imwrite(tmp_path / "ij.tif", vol, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})
    ij = open_image(str(tmp_path / "ij.tif"))
    assert ij.voxel_size_zyx == pytest.approx((3.0, 0.5, 0.25), rel=1e-6) and ij.unit == "micrometer"
    tifffile.imwrite(tmp_path / "o.ome.tif", vol, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 3.0})
    ome = open_image(str(tmp_path / "o.ome.tif"))
    assert ome.voxel_size_zyx == (3.0, 0.5, 0.25) and ome.unit == "micrometer"
    np.testing.assert_array_equal(ome.read(((1, 2), (0, 8), (0, 9))), vol[1:2])


def test_hyperstack_channel_selection(tmp_path):
    data = _stack((3, 2, 10, 12))  # Z, C, Y, X (ImageJ order)
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "ZCYX"})
    img = open_image(str(tmp_path / "h.tif"), channel=1)
    assert img.shape == (3, 10, 12)
    np.testing.assert_array_equal(img.read(((0, 3), (2, 7), (0, 12))), data[:, 1, 2:7, :])


def test_missing_tiff_is_one_line_error(tmp_path):
    missing = str(tmp_path / "none.tif")
    with pytest.raises(ImageIOError, match="no such TIFF") as e:
        open_image(missing)
    assert missing in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageIOError, match="no .tif"):
        open_image(str(tmp_path / "empty"), kind="tiff")


def test_plane_series_synthetic_order_and_explicit_files(tmp_path):
    vol = _stack((12, 16, 20))
    for z in range(12):  # unpadded names: natural order must put p2 before p10
        tifffile.imwrite(tmp_path / f"p{z}.tif", vol[z])
    img = open_image(str(tmp_path))
    np.testing.assert_array_equal(img.read(((0, 12), (0, 16), (0, 20))), vol)
    img2 = open_image(str(tmp_path), files=["p3.tif", "p1.tif"])  # explicit order kept
    np.testing.assert_array_equal(img2.read(((0, 2), (0, 16), (0, 20))), vol[[3, 1]])


def test_real_plane_series_reads_only_needed_planes(cellfinder_ch0, monkeypatch):
    """The repository's real crop: one deflate-compressed TIFF per plane."""
    files = sorted(cellfinder_ch0.glob("*.tif"))
    assert len(files) == 24
    img = open_image(str(cellfinder_ch0))
    assert img.kind == "tiff" and img.shape == (24, 256, 384) and img.dtype == np.uint16
    opened: list[str] = []
    real_open = tiff_source._open_tiff

    def counting(uri, storage_options):
        opened.append(Path(uri).name)
        return real_open(uri, storage_options)

    monkeypatch.setattr(tiff_source, "_open_tiff", counting)
    box = ((10, 14), (40, 240), (120, 370))
    out = img.read(box)
    # Exactly the four planes z = 10..13, each once.
    assert opened == [f.name for f in files[10:14]]
    ref = np.stack([tifffile.imread(f) for f in files[10:14]])[:, 40:240, 120:370]
    np.testing.assert_array_equal(out, ref)  # exact: same decoder, no resampling
    assert out.std() > 0  # real texture, not a blank read
