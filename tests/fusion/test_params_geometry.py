"""FusionParams validation and output-grid geometry."""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core import transforms as tf
from rhapso_core.fusion import (
    FusionGeometryError,
    FusionParams,
    FusionView,
    choose_level,
    make_output_grid,
    source_box,
)
from rhapso_core.image_source import ArraySource


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"overlap_strategy": "median"}, "overlap_strategy"),
        ({"block_size": (0, 256, 256)}, "block_size"),
        ({"intensity_range": (10, 5)}, "intensity_range"),
        ({"blending_range": -1}, "blending_range"),
        ({"output_dtype": "int8"}, "output_dtype"),
        ({"voxel_size": (1, 0, 1)}, "voxel_size"),
        ({"chunks": (64, 64, 64), "shards": (100, 64, 64)}, "shards"),
        ({"blockSize": (1, 1, 1)}, "blockSize"),
    ],
)
def test_bad_params_name_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        FusionParams(**kw)


def test_scalar_blending_broadcasts():
    p = FusionParams(blending_range=20, blending_border=2)
    assert p.blending_range == (20.0, 20.0, 20.0) and p.blending_border == (2.0, 2.0, 2.0)


def _view(pose, size_xyz=(40, 30, 20), vid=0, levels=1):
    lv = [np.zeros(size_xyz[::-1], np.uint16)]
    for i in range(1, levels):
        lv.append(np.zeros(tuple(-(-n // 2**i) for n in size_xyz[::-1]), np.uint16))
    return FusionView(ArraySource(lv, [(2**i,) * 3 for i in range(levels)]), pose, size_xyz, vid)


def test_output_grid_covers_views_and_keeps_anisotropy():
    a = _view(tf.scaling([0.5, 0.5, 2.0]))
    b = _view(tf.translation([15.0, 0, 0]) @ tf.scaling([0.5, 0.5, 2.0]), vid=1)
    g = make_output_grid([a, b])
    np.testing.assert_allclose(g.voxel_size_xyz, [0.5, 0.5, 2.0])
    np.testing.assert_allclose(g.origin_xyz, [0, 0, 0])
    # x: world 0 .. 15 + 39 * 0.5 = 34.5 -> 70 voxels; y: 30; z: 20
    assert g.shape_zyx == (20, 30, 70)
    iso = make_output_grid([a, b], isotropic=True)
    np.testing.assert_allclose(iso.voxel_size_xyz, [0.5, 0.5, 0.5])
    assert iso.shape_zyx == (77, 30, 70)
    box = make_output_grid([a, b], bounding_box=((1.0, 2.0, 4.0), (3.0, 5.0, 8.0)))
    np.testing.assert_allclose(box.origin_xyz, [1, 2, 4])
    assert box.shape_zyx == (3, 7, 5)


def test_level_choice_and_source_box():
    v = _view(tf.identity(), levels=3)
    g1 = make_output_grid([v])
    assert choose_level(v, g1) == 0
    assert choose_level(v, make_output_grid([v], voxel_size_xyz=(2, 2, 2))) == 1
    assert choose_level(v, make_output_grid([v], voxel_size_xyz=(3.9, 5, 5))) == 1
    assert choose_level(v, make_output_grid([v], voxel_size_xyz=(4, 4, 4))) == 2
    # A block in the middle reads only its neighbourhood (+1 voxel padding for trilinear).
    assert source_box(((5, 10), (10, 20), (20, 30)), g1, v, 0) == ((4, 11), (9, 21), (19, 31))
    far = tf.translation([1000.0, 0, 0])
    assert source_box(((0, 5), (0, 5), (0, 5)), g1, _view(far), 0) is None


def test_bad_view_is_named():
    with pytest.raises(FusionGeometryError, match="view 7"):
        _view(tf.scaling([1, 0, 1]), vid=7)
    with pytest.raises(FusionGeometryError, match="size_xyz"):
        FusionView(ArraySource([np.zeros((3, 4, 5))]), tf.identity(), (3, 4, 5), 0)
