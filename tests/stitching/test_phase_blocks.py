"""Phase links fitted in blocks carry the relative rotation along an overlap into later rounds.

A single-plane strip (40 x 200 pixels, a 2-D mosaic's overlap) of smoothed noise is compared
with itself turned by 1 degree (3.5 pixels across the strip's length): each block's shift must
be the displacement at the block's centre to 0.1 pixel, which no single translation of the strip
can be (the ends differ by 2.3 pixels between the outer block centres).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from rhapso_core.pipeline.match import PairRecord
from rhapso_core.pipeline.phase_fallback import anchors_of_unmatched
from rhapso_core.stitching import PhaseLink, anchor_links
from rhapso_core.stitching.blocks import PhaseBlock, block_parts, fit_blocks
from rhapso_core.stitching.globalopt import ANCHOR_LEVER


def test_block_parts_cut_long_axes_into_parts_as_wide_as_the_overlap_is_thin():
    strip = block_parts((1, 40, 200), min_len=32)
    assert len(strip) == 3 and all(b[1] == slice(0, 40) for b in strip)
    assert [b[2].stop - b[2].start for b in strip] == [67, 66, 67]
    # 3-D strip: thin in x (15 voxels), long in y (128) and z (64): widths at least min_len
    assert len(block_parts((64, 128, 15), min_len=32)) == 3 * 2
    # A corner overlap no longer than twice its width is not cut: the link stays one translation
    assert block_parts((1, 51, 51), min_len=32) == []
    assert block_parts((1, 1, 1), min_len=32) == []


def _texture(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.normal(size=shape), 2.0).astype(np.float32)


def test_block_shifts_follow_a_rotation_along_the_strip():
    big = _texture((120, 320))
    theta = np.deg2rad(1.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    a_mat, t = rot - np.eye(2), np.array([0.4, -0.3])  # displacement s(p) = A p + t (y, x), about the origin
    centre = np.array([60.0, 160.0])
    # moving(p) = fixed(p + s(p)) about the strip's centre: fixed(x) ~ moving(x - s(x)) to first order
    moving = ndi.affine_transform(big, np.eye(2) + a_mat, offset=t - a_mat @ centre, order=3, mode="nearest")
    sl = (slice(40, 80), slice(60, 260))
    fixed_crop, moving_crop = big[sl][None], moving[sl][None]
    c2w = np.eye(4)
    c2w[:3, 3] = [60.0, 40.0, 0.0]  # crop voxel (x, y, z) -> world = the big image's pixels

    def to_world(s_zyx):
        return np.asarray(s_zyx, dtype=np.float64)[::-1]

    blocks = fit_blocks(fixed_crop, moving_crop, (0.0, 0.0, 0.0), c2w, to_world, 32, 0.3)
    assert len(blocks) == 3
    for b in blocks:
        mid_xyz = 0.5 * (np.asarray(b.box_min_xyz) + np.asarray(b.box_max_xyz))
        expect_yx = a_mat @ (mid_xyz[[1, 0]] - centre) + t
        assert np.allclose(np.asarray(b.shift_xyz)[[1, 0]], expect_yx, atol=0.1), (b, expect_yx)
        assert b.shift_xyz[2] == 0.0
    spread = np.ptp([b.shift_xyz[1] for b in blocks])  # y shift changes along x by the rotation
    assert 2.0 < spread < 2.6


def _link(blocks=()):
    return PhaseLink((0, 0), (0, 1), (1.0, 2.0, 0.0), 0.9, (200.0, 0.0, 0.0), (240.0, 200.0, 0.0), 0.0, 0, None,
                     (41, 201, 1), "ok", blocks=tuple(blocks))


def test_anchor_of_a_blocked_link_holds_each_block_at_its_shift_near_its_centre():
    blocks = [PhaseBlock((200.0, y0, 0.0), (240.0, y0 + 66.0, 0.0), (1.0, 2.0 + 0.01 * y0, 0.0), 0.9)
              for y0 in (0.0, 67.0, 134.0)]
    eye = {(0, 0): np.eye(4), (0, 1): np.eye(4)}
    (lk,) = anchor_links([_link(blocks)], eye, eye, weights=[2.0])
    assert lk.pa.shape == (24, 3)
    assert np.isclose(lk.weight.sum(), 8 * 2.0)  # the link pulls as hard as a one-translation link
    for i, b in enumerate(blocks):
        pa, pb = lk.pa[8 * i:8 * i + 8], lk.pb[8 * i:8 * i + 8]
        assert np.allclose(pa - pb, b.shift_xyz)
        mid = 0.5 * (np.asarray(b.box_min_xyz) + np.asarray(b.box_max_xyz))
        half = 0.5 * (np.asarray(b.box_max_xyz) - np.asarray(b.box_min_xyz))
        assert np.allclose(np.abs(pa - mid).max(axis=0), ANCHOR_LEVER * half)
    # Without blocks: one translation at the box's centre, on a lever a tenth of the box
    (one,) = anchor_links([_link()], eye, eye)
    assert one.pa.shape == (8, 3) and np.allclose(one.pa - one.pb, (1.0, 2.0, 0.0))
    assert np.allclose(one.pa.mean(axis=0), (220.0, 100.0, 0.0))
    assert np.allclose(np.ptp(one.pa, axis=0), (4.0, 20.0, 0.0))


def test_blocks_survive_the_json_round_trip():
    b = PhaseBlock((1.0, 2.0, 0.0), (3.0, 4.0, 0.0), (0.5, -0.5, 0.0), 0.8)
    k = _link([b, b])
    assert PhaseLink.from_dict(k.to_dict()) == k
    d = k.to_dict()
    del d["blocks"]  # links written before blocks existed
    assert PhaseLink.from_dict(d).blocks == ()


def test_point_rounds_keep_phase_anchors_only_for_pairs_points_did_not_match():
    links = [dict(_link().to_dict(), view_a=[0, a], view_b=[0, b]) for a, b in ((0, 1), (1, 2), (0, 2))]
    anchors = {"xml": "x.xml", "links": links, "weights": [1.0, 2.0, 3.0]}

    def rec(a, b, ok):
        return PairRecord((0, a), (0, b), "beads", 100, 100, 50, 40 if ok else 3, 0.5,
                          "ok" if ok else "too_few_inliers", "", None)

    out = anchors_of_unmatched(anchors, [rec(0, 1, True), rec(1, 2, False)])
    assert [(k["view_a"], k["view_b"]) for k in out["links"]] == [([0, 1], [0, 2]), ([0, 0], [0, 2])]
    assert out["weights"] == [2.0, 3.0]
    # Corner contacts (not faces) are left out too: redundant links of one translation each
    faces = {frozenset(((0, 0), (0, 1))), frozenset(((0, 1), (0, 2)))}
    out = anchors_of_unmatched(anchors, [rec(0, 1, True), rec(1, 2, False)], faces)
    assert [(k["view_a"], k["view_b"]) for k in out["links"]] == [([0, 1], [0, 2])] and out["weights"] == [2.0]
    assert anchors_of_unmatched(anchors, [rec(0, 1, True), rec(1, 2, True), rec(0, 2, True)]) is None
    assert anchors_of_unmatched(None, []) is None


def test_blocks_without_a_peak_of_their_own_leave_the_link_whole():
    # Texture in the strip's middle third only: the outer blocks are noise, their NCC has no
    # peak near the strip's shift, and a link of one good block is the link itself.
    rng = np.random.default_rng(3)
    signal = np.zeros((1, 40, 200), np.float32)
    signal[0, :, 67:133] = _texture((40, 66), seed=4) * 5
    fixed = signal + rng.normal(size=signal.shape).astype(np.float32) * 0.05
    moving = np.roll(signal, (0, 1, 2), axis=(0, 1, 2)) + rng.normal(size=signal.shape).astype(np.float32) * 0.05
    blocks = fit_blocks(fixed, moving, (0.0, -1.0, -2.0), np.eye(4), lambda s: np.asarray(s)[::-1], 32, 0.3)
    assert blocks == ()


def test_a_block_off_the_linear_field_leaves_the_link_whole():
    from rhapso_core.stitching.blocks import _linear

    centres = np.array([[0.0, 20.0, 33.0], [0.0, 20.0, 100.0], [0.0, 20.0, 166.0]])
    along = np.array([[0.0, 0.5, 0.0], [0.0, 1.6, 0.0], [0.0, 2.7, 0.0]])  # a rotation: linear along x
    assert _linear(centres, along)
    wrong = along + np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])  # middle block on another peak
    assert not _linear(centres, wrong)
    assert _linear(centres[:2], wrong[:2])  # two blocks: nothing left to check
