"""Reads through BigStitcher's flat-field correction: ``clip((x - dark) * mean(bright - dark) /
(bright - dark))`` per voxel, in the source's type, at every pyramid level (values computed here
by hand from the formula of multiview-reconstruction's ``FlatFieldCorrectedRandomAccessibleInterval``)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from rhapso_core.image_source import ArraySource
from rhapso_core.io.errors import ImageIOError
from rhapso_core.io.flatfield_source import FlatFieldCorrectedSource, corrected, read_field_image


def _data(dtype=np.uint16):
    rng = np.random.default_rng(0)
    raw = rng.integers(100, 4000, size=(3, 8, 12)).astype(dtype)
    bright = 200.0 + 800.0 * (1.0 - 0.3 * np.linspace(-1, 1, 12)[None, :] ** 2) * np.ones((8, 1))
    dark = np.full((8, 12), 100.0)
    return raw, bright, dark


def test_level_0_is_the_formula_voxel_by_voxel():
    raw, bright, dark = _data()
    src = FlatFieldCorrectedSource(ArraySource([raw]), bright, dark)
    got = src.read(((0, 3), (0, 8), (0, 12)))
    mean = np.mean(bright - dark)
    want = np.floor(np.clip((raw - dark) * mean / (bright - dark), 0, 65535) + 0.5).astype(np.uint16)
    assert got.dtype == np.uint16 and np.array_equal(got, want)
    # A sub-box reads the same voxels.
    assert np.array_equal(src.read(((1, 2), (2, 6), (3, 11))), want[1:2, 2:6, 3:11])


def test_a_level_uses_block_means_of_the_images_and_their_own_mean():
    raw, bright, dark = _data(np.float32)
    lvl1 = raw.reshape(3, 4, 2, 6, 2).mean(axis=(2, 4)).astype(np.float32)
    src = FlatFieldCorrectedSource(ArraySource([raw, lvl1], [(1, 1, 1), (1, 2, 2)]), bright, dark)
    b1 = bright.reshape(4, 2, 6, 2).mean(axis=(1, 3))
    d1 = dark.reshape(4, 2, 6, 2).mean(axis=(1, 3))
    want = ((lvl1 - d1) * np.mean(b1 - d1) / (b1 - d1)).astype(np.float32)
    assert np.allclose(src.read(((0, 3), (0, 4), (0, 6)), 1), want, rtol=1e-6)


def test_a_flat_bright_image_changes_nothing_and_zero_contrast_gives_zero():
    raw, _, dark = _data()
    same = FlatFieldCorrectedSource(ArraySource([raw]), np.full((8, 12), 1000.0), None)
    assert np.array_equal(same.read(((0, 3), (0, 8), (0, 12))), raw)
    flat = np.full((8, 12), 500.0)
    flat[2, 3] = 100.0  # bright == dark there
    got = FlatFieldCorrectedSource(ArraySource([raw]), flat, dark).read(((0, 3), (0, 8), (0, 12)))
    assert (got[:, 2, 3] == 0).all()


def test_integers_are_clipped_to_their_type():
    raw = np.array([[[10, 60000]]], np.uint16)
    got = corrected(raw, np.array([[50.0, 10.0]]), np.array([[20.0, 5.0]]), 100.0, np.uint16)
    # (10 - 20) * 100 / 30 < 0 -> 0; (60000 - 5) * 100 / 5 > 65535 -> 65535
    assert got.tolist() == [[[0, 65535]]]


def test_images_of_another_size_are_refused_naming_the_view():
    raw, bright, _ = _data()
    with pytest.raises(ImageIOError, match=r"view \(timepoint 0, setup 3\): the bright image is 11 x 8"):
        FlatFieldCorrectedSource(ArraySource([raw]), bright[:, :11], None, name="view (timepoint 0, setup 3)")


def test_field_images_from_tiff_and_zarr(tmp_path):
    import zarr

    img = np.arange(48, dtype=np.float32).reshape(6, 8)
    tifffile.imwrite(tmp_path / "bright.tif", img)
    assert np.array_equal(read_field_image(str(tmp_path / "bright.tif")), img)
    tifffile.imwrite(tmp_path / "one_plane.tif", img[None])
    assert read_field_image(str(tmp_path / "one_plane.tif")).shape == (6, 8)
    z = zarr.open_array(str(tmp_path / "dark.zarr"), mode="w", shape=(6, 8), dtype="uint16")
    z[...] = 7
    assert np.array_equal(read_field_image(str(tmp_path / "dark.zarr")), np.full((6, 8), 7.0))
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, img]))
    with pytest.raises(ImageIOError, match=r"stack\.tif: a flat-field image must be 2-D"):
        read_field_image(str(tmp_path / "stack.tif"))
    with pytest.raises(ImageIOError, match="missing.tif"):
        read_field_image(str(tmp_path / "missing.tif"))


def test_an_odd_sized_level_extends_the_last_whole_block():
    # 3 x 7 in-plane at level 0, factor 2: the level is 2 x 4 (this project's pyramids round
    # up); BigStitcher's downsampled images are 1 x 3 and read beyond by their border values.
    raw = np.full((1, 2, 4), 500.0, np.float32)
    bright = np.arange(21, dtype=np.float64).reshape(3, 7) + 200.0
    src = FlatFieldCorrectedSource(ArraySource([np.zeros((1, 3, 7), np.float32), raw], [(1, 1, 1), (1, 2, 2)]),
                                   bright, None)
    b1 = bright[:2, :6].reshape(1, 2, 3, 2).mean(axis=(1, 3))
    b1_ext = np.pad(b1, ((0, 1), (0, 1)), mode="edge")
    want = (500.0 * np.mean(b1) / b1_ext).astype(np.float32)[None]
    assert np.allclose(src.read(((0, 1), (0, 2), (0, 4)), 1), want, rtol=1e-6)
