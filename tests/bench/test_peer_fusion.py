"""bench/peer_fusion.py's own arithmetic: the peers' grid, the view count per voxel, the
comparison of two fused images, the XML it gives Rhapso, and ``--peers`` parsing.

The peers themselves are not run (their venvs take minutes of pip); all arrays are tiny.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import peer_fusion as pf  # noqa: E402
from rhapso_core import transforms as tf  # noqa: E402
from rhapso_core.fusion import FusionView  # noqa: E402
from rhapso_core.image_source import ArraySource  # noqa: E402


def _view(pose, size_xyz, k):
    return FusionView(ArraySource([np.zeros(size_xyz[::-1], np.uint16)]), pose, size_xyz, k)


def _views():
    """Two 10 x 8 x 4 views, the second 6.5 voxels further along x and 0.25 along y."""
    return [_view(tf.translation([0.3, -0.4, 0.0]), (10, 8, 4), 0),
            _view(tf.translation([6.8, -0.15, 0.0]), (10, 8, 4), 1)]


def test_peer_grid_is_the_views_box_widened_to_whole_world_units():
    g = pf.peer_grid(_views())
    # x: 0.3 .. 15.8 -> 0 .. 16; y: -0.4 .. 6.85 -> -1 .. 7; z: 0 .. 3.
    assert np.array_equal(g.origin_xyz, [0.0, -1.0, 0.0])
    assert np.array_equal(g.voxel_size_xyz, [1.0, 1.0, 1.0])
    assert g.shape_zyx == (4, 9, 17)


def test_views_covering_counts_each_voxel_exactly():
    views = _views()
    g = pf.peer_grid(views)
    n = pf.views_covering(views, g)(0, g.shape_zyx[0])
    assert n.shape == g.shape_zyx
    # Output voxel x (world x) is in view 0 when 0.3 <= x <= 9.3, in view 1 when 6.8 <= x <= 15.8;
    # y (world y - 1) in both when -0.15 <= y - 1 <= 6.6, i.e. rows 1..7.
    row = n[1, 3]
    assert row.tolist() == [0] + [1] * 6 + [2] * 3 + [1] * 6 + [0]
    assert not n[:, 0].any() and not n[:, 8].any()


def test_agreement_of_an_image_with_itself_and_with_a_known_change():
    rng = np.random.default_rng(0)
    ours = rng.integers(200, 3200, (5, 6, 7)).astype(np.uint16)
    ours[:, :, 0] = 0  # not covered
    same = pf.agreement(ours, ours.copy(), slab=2)
    assert same.ncc == pytest.approx(1.0, abs=1e-12)
    assert (same.mean_abs, same.max_abs, same.mean_diff) == (0.0, 0.0, 0.0)
    assert (same.both, same.ours_only, same.theirs_only) == (5 * 6 * 6, 0, 0)

    theirs = ours.copy()
    theirs[ours > 0] += 3  # a constant bias leaves NCC at 1
    theirs[0, 0, 1] = 0  # one voxel ours covers and theirs does not
    theirs[4, 5, 0] = 500  # one voxel only theirs covers
    count = lambda z0, z1: np.ones((z1 - z0, 6, 7), np.uint8)  # noqa: E731  every voxel inside one view
    ag = pf.agreement(ours, theirs, count, slab=2)
    assert ag.ncc == pytest.approx(1.0, abs=1e-9)
    assert ag.mean_abs == pytest.approx(3.0) and ag.max_abs == 3.0 and ag.mean_diff == pytest.approx(3.0)
    assert (ag.both, ag.ours_only, ag.theirs_only) == (5 * 6 * 6 - 1, 1, 1)
    assert ag.single == ag.both and ag.single_mean_abs == pytest.approx(3.0)


def test_agreement_refuses_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        pf.agreement(np.zeros((2, 3, 4), np.uint16), np.zeros((2, 3, 5), np.uint16))


def test_rhapso_xml_holds_the_poses_sizes_and_tile_paths(tmp_path):
    from rhapso_core.spimdata import load_xml

    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(0.01), -np.sin(0.01)], [np.sin(0.01), np.cos(0.01)]]
    views = [_view(tf.translation([1.5, 2.0, -3.25]) @ rot, (10, 8, 4), 0),
             _view(tf.translation([9.0, 0.0, 0.0]), (12, 8, 4), 1)]
    paths = {0: str(tmp_path / "ds" / "tile_0"), 1: str(tmp_path / "ds" / "tile_1")}
    sd = load_xml(str(pf.write_rhapso_xml(views, paths, tmp_path / "d.xml")))
    for v in views:
        assert np.allclose(sd.view_to_world((0, v.view_id)), v.view_to_world, rtol=0, atol=1e-12)
        assert sd.setup_of((0, v.view_id)).size == v.size_xyz
    text = (tmp_path / "d.xml").read_text()
    # Rhapso 0.4.5 opens <image_prefix>/<path>: the folder is the loader's root, the path the tile's name.
    assert "<path>tile_0</path>" in text and "<path>tile_1</path>" in text
    assert f">{tmp_path / 'ds'}<" in text


def test_peers_option_parsing():
    assert pf.parse_tools("rhapso,mvs") == ("rhapso", "mvs")
    assert pf.parse_tools(" mvs ") == ("mvs",)
    for bad in ("", "bigstitcher", "rhapso,foo"):
        with pytest.raises(ValueError, match="--peers"):
            pf.parse_tools(bad)
    with pytest.raises(SystemExit, match="avg_blend"):
        pf.check_strategy("max")
    pf.check_strategy("avg_blend")
