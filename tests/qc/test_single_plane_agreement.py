"""Image agreement of single-plane views: measured in the plane, so a 2-D result is checked too.

Before, the overlap of two one-plane views had no depth, counted as empty, and the
after-solve check and QC compared nothing (on a 3 x 3 mosaic a phase round that ended at
3.2 pixels RMS from 2.3 went through as "0 overlaps checked").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from rhapso_core import transforms
from rhapso_core.image_source import ArraySource
from rhapso_core.qc.fusion import comparable_pairs, overlap_ncc


def _planes(z_b=0.0):
    rng = np.random.default_rng(0)
    world = ndi.gaussian_filter(rng.normal(size=(1, 200, 360)), (0, 3, 3)).astype(np.float32)
    a, b = world[:, :, :200], world[:, :, 150:]
    a2w = np.eye(4)
    b2w = transforms.translation([150.0, 0.0, z_b])
    return ArraySource([a]), a2w, (200, 200, 1), ArraySource([b]), b2w, (210, 200, 1)


def test_two_planes_agree_where_they_are_placed_right():
    sa, a2w, size_a, sb, b2w, size_b = _planes()
    right = overlap_ncc(sa, a2w, size_a, sb, b2w, size_b)
    wrong = overlap_ncc(sa, a2w, size_a, sb, transforms.translation([6.0, 3.0, 0.0]) @ b2w, size_b)
    assert right["ncc"] is not None and right["ncc"] > 0.99, right
    assert wrong["ncc"] is not None and wrong["ncc"] < 0.5, wrong
    # Every sample in the plane: one layer of the budget's grid, not spread over a depth it does not have.
    assert right["n_samples"] >= 10_000


def test_planes_a_fraction_of_a_voxel_apart_in_z_are_compared():
    sa, a2w, size_a, sb, b2w, size_b = _planes(z_b=0.3)
    assert overlap_ncc(sa, a2w, size_a, sb, b2w, size_b)["ncc"] > 0.99


def test_single_plane_pairs_are_comparable():
    class _Setup:
        channel = illumination = 0

    class _Sd:
        def setup_of(self, v):
            return _Setup()

    sa, a2w, size_a, sb, b2w, size_b = _planes()
    geometry = {(0, 0): (a2w, size_a), (0, 1): (b2w, size_b)}
    assert comparable_pairs(_Sd(), [(0, 0), (0, 1)], geometry) == [((0, 0), (0, 1))]
