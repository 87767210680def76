"""NGFF multiscales metadata: build/parse round trip and geometry rules."""

from __future__ import annotations

import pytest

from rhapso_core.io import ImageIOError
from rhapso_core.io.multiscale import factors_from_scales, factors_from_shapes
from rhapso_core.io.ngff import build_multiscales_attrs, level_scale_translation, parse_multiscales


def test_level_translation_is_half_voxel_shift_of_mean_downsampling():
    # Level voxel i has its centre at level-0 voxel f*i + (f-1)/2 (image_source.py rule).
    scale, trans = level_scale_translation((2.0, 0.5, 0.25), (10.0, -3.0, 0.0), (4, 2, 1))
    assert scale == [8.0, 1.0, 0.25]
    assert trans == [10.0 + 1.5 * 2.0, -3.0 + 0.5 * 0.5, 0.0]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_build_parse_round_trip(version):
    attrs = build_multiscales_attrs(
        version=version, paths=["0", "1"], voxel_size_zyx=(3, 1, 1), origin_zyx=(1, 2, 3),
        factors_zyx=[(1, 1, 1), (1, 2, 2)], unit="micrometer", name="img",
    )
    ms = parse_multiscales(attrs)
    assert ms.version == version and ms.paths == ["0", "1"] and ms.name == "img"
    assert ms.scales == [(3.0, 1.0, 1.0), (3.0, 2.0, 2.0)]
    assert ms.translations == [(1.0, 2.0, 3.0), (1.0, 2.5, 3.5)]
    assert ms.spatial_indices() == (0, 1, 2) and ms.unit() == "micrometer"
    assert factors_from_scales(ms.scales) == [(1, 1, 1), (1, 2, 2)]


def test_global_transform_folded_in_and_5d_axes():
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, "z", "y", "x"],
                "datasets": [{"path": "0", "coordinateTransformations": [
                    {"type": "scale", "scale": [1, 1, 2, 2, 2]}, {"type": "translation", "translation": [0, 0, 1, 1, 1]}]}],
                "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.5, 0.5, 0.5]},
                                              {"type": "translation", "translation": [0, 0, 10, 20, 30]}],
            }
        ]
    }
    ms = parse_multiscales(attrs)
    assert ms.spatial_indices() == (2, 3, 4)
    assert ms.axis_index("channel") == 1 and ms.axis_index("time") == 0
    # world = 0.5 * (2 i + 1) + (10, 20, 30)
    assert ms.scales[0][2:] == (1.0, 1.0, 1.0)
    assert ms.translations[0][2:] == (10.5, 20.5, 30.5)


def test_non_integer_factor_and_missing_metadata_are_reported():
    with pytest.raises(ImageIOError, match="not an integer multiple"):
        factors_from_scales([(1, 1, 1), (1, 1.5, 1.5)], uri="s3://b/img.zarr")
    with pytest.raises(ImageIOError, match="no OME-NGFF"):
        parse_multiscales({}, uri="x")


def test_factors_from_shapes_handles_ceil_and_floor_writers():
    # ceil: 101 -> 51 -> 26 ; floor: 101 -> 50 -> 25 ; odd tiny sizes prefer powers of two.
    assert factors_from_shapes([(101, 7, 5), (51, 4, 3), (26, 2, 2)]) == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    assert factors_from_shapes([(101, 8, 5), (50, 4, 2), (25, 2, 1)]) == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
