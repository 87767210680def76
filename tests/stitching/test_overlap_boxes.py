"""rhapso_core.overlap: the one world-box intersection, checked against boxes computed by hand."""

from __future__ import annotations

import numpy as np

from rhapso_core import overlap


def _shift(x, y, z, scale=(1.0, 1.0, 1.0)):
    a = np.diag([*scale, 1.0])
    a[:3, 3] = (x, y, z)
    return a


def test_intersection_of_two_shifted_tiles_and_its_voxels_in_each_view():
    a, b = _shift(0, 0, 0), _shift(80, 10, 0, scale=(1.0, 1.0, 2.0))
    lo, hi = overlap.world_overlap(a, (100, 60, 20), b, (100, 60, 20))
    # a covers x 0..99, y 0..59, z 0..19; b covers x 80..179, y 10..69, z 0..38 (z voxel 2 world units)
    np.testing.assert_array_equal(lo, [80, 10, 0])
    np.testing.assert_array_equal(hi, [99, 59, 19])
    np.testing.assert_array_equal(overlap.world_box_in_view(b, (100, 60, 20), lo, hi), [[0, 0, 0], [19, 49, 9.5]])
    np.testing.assert_array_equal(overlap.world_box_in_view(b, (100, 60, 20), lo, hi, whole_voxels=True),
                                  [[0, 0, 0], [19, 49, 10]])
    assert overlap.boxes_overlap(overlap.world_box(a, (100, 60, 20)), overlap.world_box(b, (100, 60, 20)))


def test_touching_tiles_meet_but_share_no_volume_and_single_planes_get_half_a_voxel():
    a, b = _shift(0, 0, 0), _shift(99, 0, 0)
    assert overlap.overlap_box(a, (100, 10, 5), b, (100, 10, 5)) is not None  # x = 99 in both
    assert overlap.overlap_box(a, (100, 10, 5), b, (100, 10, 5), strict=True) is None
    assert overlap.overlap_box(a, (100, 10, 5), _shift(100, 0, 0), (100, 10, 5)) is None
    # two single planes 0.3 voxel apart in z: no overlap of the centres, an overlap of the planes
    p, q = _shift(0, 0, 0), _shift(50, 0, 0.3)
    assert overlap.overlap_box(p, (100, 10, 1), q, (100, 10, 1)) is None
    lo, hi = overlap.overlap_box(p, (100, 10, 1), q, (100, 10, 1), flat_half_voxel=True)
    np.testing.assert_allclose([lo[2], hi[2]], [-0.2, 0.5])
    assert overlap.world_box_in_view(p, (100, 10, 5), np.array([200.0, 0, 0]), np.array([300.0, 9, 4])) is None
