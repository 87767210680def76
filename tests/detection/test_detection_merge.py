"""combine_distance and the spatially balanced max_spots cap."""

from __future__ import annotations

import numpy as np

from detection_blobs import random_centres, render
from rhapso_core.detection import (DetectionParams, InterestPoints, cap_spatially, combine_close,
                                   detect_dog, merge_points)


def _pts(loc, dog):
    loc = np.asarray(loc, float)
    return InterestPoints(np.arange(len(loc)), loc, np.ones(len(loc)), dog)


def test_combine_keeps_strongest_within_distance():
    loc = [[10, 10, 10], [10.3, 10, 10], [20, 20, 20], [20.7, 20, 20], [30, 30, 30],
           [30.2, 30.2, 30], [30.4, 30.4, 30]]
    dog = [0.5, 0.9, 0.4, 0.8, 0.1, 0.3, -0.6]
    out = combine_close(_pts(loc, dog), 0.5)
    got = {tuple(np.round(p, 1)) for p in out.loc_xyz}
    # 0.3 apart: merged, stronger (0.9) kept; 0.7 apart: both kept; a chain 30.0-30.2-30.4:
    # the strongest |DoG| (-0.6, a minimum) suppresses 30.2 (0.28 away) but not 30.0 (0.57)
    assert got == {(10.3, 10, 10), (20, 20, 20), (20.7, 20, 20), (30.4, 30.4, 30), (30, 30, 30)}


def test_combine_distance_end_to_end():
    rng = np.random.default_rng(40)
    shape = (32, 80, 80)
    c = random_centres(rng, shape, 60, margin=5, min_dist=3.5)
    img = render(shape, c, rng.uniform(300, 1000, len(c)), 1.2).astype(np.float32)
    p = DetectionParams(dsxy=1, threshold=0.01, min_intensity=0, max_intensity=1000,
                        combine_distance=0.0)
    raw = detect_dog(img, p)
    merged = detect_dog(img, p.model_copy(update={"combine_distance": 6.0}))
    assert len(merged) < len(raw)
    d = np.linalg.norm(merged.loc_xyz[:, None] - merged.loc_xyz[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 6.0, "two kept points are closer than combine_distance"
    # every dropped point has a kept point at least as strong within 6 voxels
    for loc, v in zip(raw.loc_xyz, raw.dog):
        near = np.linalg.norm(merged.loc_xyz - loc, axis=1) <= 6.0
        assert near.any() and np.abs(merged.dog[near]).max() >= abs(v) - 1e-7


def test_cap_is_spatially_balanced():
    rng = np.random.default_rng(41)
    left = np.c_[rng.uniform(0, 50, 300), rng.uniform(0, 100, 300), rng.uniform(0, 5, 300)]
    right = np.c_[rng.uniform(50, 100, 300), rng.uniform(0, 100, 300), rng.uniform(0, 5, 300)]
    pts = _pts(np.r_[left, right], np.r_[rng.uniform(1, 2, 300), rng.uniform(0.01, 0.02, 300)])
    out = cap_spatially(pts, 100, np.array([[0, 0, 0], [100, 100, 5]]))
    assert len(out) == 100
    n_right = np.sum(out.loc_xyz[:, 0] >= 50)
    # grid 8 x 8 x 1 cells: the 64 cells' strongest first (32 of them dim), then the
    # second strongest of each cell, brightest first: 32 bright + 4 dim.
    # Brightest-first would keep none on the dim side.
    assert n_right == 36, f"{n_right} of 100 kept points on the dim half, expected 32 + 4"
    assert len(np.unique(np.floor(out.loc_xyz[:, :2] / 12.5), axis=0)) == 64


def test_max_spots_end_to_end_keeps_dim_half():
    rng = np.random.default_rng(42)
    shape = (24, 64, 128)
    c = random_centres(rng, shape, 80, margin=5, min_dist=7)
    amps = np.where(c[:, 2] < 64, 1500.0, 120.0)  # left half bright, right half dim
    img = render(shape, c, amps, 1.8).astype(np.float32)
    p = DetectionParams(dsxy=1, threshold=0.01, min_intensity=0, max_intensity=1000,
                        max_spots=20)
    out = detect_dog(img, p)
    assert len(out) == 20
    assert np.sum(out.loc_xyz[:, 0] >= 64) >= 6, "the dim half lost its points to the bright half"
    assert np.sum(out.loc_xyz[:, 0] < 64) >= 6


def test_merge_points_renumbers_in_position_order():
    a = _pts([[5, 0, 1], [1, 0, 0]], [0.1, 0.2])
    b = _pts([[0, 0, 3]], [0.3])
    out = merge_points([a, b], DetectionParams(combine_distance=0.5))
    np.testing.assert_array_equal(out.ids, [0, 1, 2])
    np.testing.assert_array_equal(out.loc_xyz[:, 2], [0, 1, 3])
