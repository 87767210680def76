"""Pair selection from bounding boxes under the current registrations, and overlap filtering."""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.matching import Pair, points_in_box, select_pairs


def grid_views(timepoints=(0,), channels=(0,)):
    """A 2 x 2 tile grid of 100 x 80 x 50 voxel tiles with 10 voxels of x / y overlap."""
    views, attrs = {}, {}
    setup = 0
    for ch in channels:
        for ty in range(2):
            for tx in range(2):
                for tp in timepoints:
                    v = (tp, setup)
                    views[v] = (transforms.translation([90.0 * tx, 70.0 * ty, 0.0]), (100, 80, 50))
                    attrs[v] = {"channel": ch, "tile": (tx, ty)}
                setup += 1
    return views, attrs


def test_overlapping_pairs_and_their_boxes():
    views, _ = grid_views()
    pairs = select_pairs(views)
    got = {(p.a, p.b) for p in pairs}
    # Side neighbours overlap by 10 voxels, diagonal ones by a 10 x 10 column: all 6 pairs.
    assert got == {((0, 0), (0, 1)), ((0, 0), (0, 2)), ((0, 0), (0, 3)), ((0, 1), (0, 2)), ((0, 1), (0, 3)), ((0, 2), (0, 3))}
    box = {(p.a, p.b): p.overlap_box_world for p in pairs}
    # Voxel centres span [0, size - 1]: tile 0 x in [0, 99], tile 1 x in [90, 189].
    np.testing.assert_array_equal(box[((0, 0), (0, 1))], [[90, 0, 0], [99, 79, 49]])
    np.testing.assert_array_equal(box[((0, 0), (0, 3))], [[90, 70, 0], [99, 79, 49]])


def test_separated_tiles_are_not_paired_unless_all_requested():
    views = {
        (0, 0): (transforms.identity(), (50, 50, 50)),
        (0, 1): (transforms.translation([200.0, 0, 0]), (50, 50, 50)),
    }
    assert select_pairs(views) == []
    allp = select_pairs(views, mode="all")
    assert len(allp) == 1 and not allp[0].overlaps
    # A margin large enough to bridge the 151-voxel gap pairs them.
    assert len(select_pairs(views, margin=76.0)) == 1
    assert len(select_pairs(views, margin=75.0)) == 0


def test_rotated_registration_moves_the_box():
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    views = {
        (0, 0): (transforms.identity(), (100, 20, 20)),
        (0, 1): (transforms.translation([-10.0, 0, 0]) @ rot, (100, 20, 20)),
    }
    # View 1's voxel y in [0, 19] lands on world x = -y - 10 in [-29, -10]: no overlap,
    # although its unrotated box would overlap view 0.
    assert select_pairs(views) == []
    views[(0, 1)] = (transforms.translation([10.0, 0, 0]) @ rot, (100, 20, 20))
    (pair,) = select_pairs(views)
    np.testing.assert_allclose(pair.overlap_box_world, [[0, 0, 0], [10, 19, 19]])


def test_same_timepoint_and_grouping():
    views, attrs = grid_views(timepoints=(0, 1), channels=(0, 1))
    pairs = select_pairs(views)
    assert all(p.a[0] == p.b[0] for p in pairs), "views of different timepoints must not be paired"
    cross = select_pairs(views, same_timepoint=False)
    assert any(p.a[0] != p.b[0] for p in cross)
    grouped = select_pairs(views, group_by=("channel",), attributes=attrs)
    assert grouped and all(attrs[p.a]["channel"] == attrs[p.b]["channel"] for p in grouped)
    # 2 timepoints x 2 channels x 6 tile pairs.
    assert len(grouped) == 24
    # Without grouping the same tile in two channels is a pair too (identical boxes).
    assert len(pairs) == 2 * (8 * 7 // 2)
    with pytest.raises(ValueError, match="attributes"):
        select_pairs(views, group_by=("channel",))
    with pytest.raises(ValueError, match="illumination"):
        select_pairs(views, group_by=("illumination",), attributes=attrs)


def test_points_in_box_is_inclusive_and_checks_shapes():
    box = np.array([[0.0, 0.0, 0.0], [10.0, 5.0, 2.0]])
    pts = np.array([[0, 0, 0], [10, 5, 2], [10.0001, 1, 1], [5, -0.1, 1], [5, 2.5, 1]])
    np.testing.assert_array_equal(points_in_box(pts, box), [True, True, False, False, True])
    np.testing.assert_array_equal(points_in_box(pts, box, margin=0.2), [True, True, True, True, True])
    with pytest.raises(ValueError, match="points must be"):
        points_in_box(np.zeros((3, 2)), box)
    with pytest.raises(ValueError, match="box must be"):
        points_in_box(pts, np.zeros(6))


def test_pair_is_a_record():
    p = Pair((0, 0), (0, 1), np.array([[0.0, 0, 0], [1, 1, 1]]))
    assert p.overlaps
