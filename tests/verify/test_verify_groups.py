"""Views that move together are reverted together (rhapso_core.verify with ``groups``).

The channels (and illuminations) of one tile were imaged at one stage position and get
one solver correction (``alignment.grouping``); the after-solve check must keep them
together: a tile it reverts is reverted in every channel. Unit part: an overlap seen
only by channel 0 gets worse, so a per-view check would put back channel 0 alone.
Integration part: a generated 3 x 1 grid with 2 channels (different specimens), one
tile's stored points shifted by 10 voxels in both channels after matching (a wrong but
self-consistent match set); tolerance: the reverted tile's views get their input
registration exactly, and every tile's views stay identical.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.verify import VerifyParams, choose_reverts


def test_a_group_is_reverted_whole_when_one_channel_shows_the_damage():
    # Tiles 0 and 1, two channels each: views (0, 0), (0, 1) = tile 0 ch 0/1; (0, 2), (0, 3) = tile 1.
    groups = {(0, 0): (0, 0), (0, 1): (0, 0), (0, 2): (0, 2), (0, 3): (0, 2)}
    before = {v: transforms.translation([100.0 * (v[1] // 2), 0, 0]) for v in groups}   # stage was right
    after = {v: transforms.translation([100.0 * (v[1] // 2) + (12.0 if v[1] >= 2 else 0.0), 0, 0]) for v in groups}
    after[(0, 0)] = after[(0, 1)] = transforms.translation([0.0, 0, 0])

    def ncc_fn(a, b, ma, mb):
        if a[1] % 2:  # channel 1 is too dim to measure here: only channel 0 shows the damage
            return None, 0
        err = (mb[0, 3] - ma[0, 3]) - 100.0
        return float(np.exp(-(err / 3.0) ** 2)), 5000

    pairs = [((0, 0), (0, 2)), ((0, 1), (0, 3))]
    regs_view, rep_view = choose_reverts(pairs, before, after, ncc_fn, None, VerifyParams())
    # Without groups only channel 0 of tile 1 goes back: the tile is split (the bug).
    assert [r.view for r in rep_view.reverted] == [(0, 2)]
    assert not np.allclose(regs_view[(0, 2)], regs_view[(0, 3)])
    regs, rep = choose_reverts(pairs, before, after, ncc_fn, None, VerifyParams(), groups=groups)
    assert [r.views for r in rep.reverted] == [((0, 2), (0, 3))]
    assert "t0 s3" in rep.reverted[0].name and "t0 s3" in rep.summary()
    for v in ((0, 2), (0, 3)):
        np.testing.assert_allclose(regs[v], before[v])
    for v in ((0, 0), (0, 1)):
        np.testing.assert_allclose(regs[v], after[v])
    assert rep.to_dict()["reverted"][0]["views"] == [[0, 2], [0, 3]]


SHIFT = np.array([10.0, 0.0, 0.0])   # voxels, along x


@pytest.fixture(scope="module")
def two_channels(tmp_path_factory):
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, match
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    root = tmp_path_factory.mktemp("verify_groups")
    paths = write_dataset(root / "data", SyntheticParams(
        grid=(3, 1, 1), tile_size_xyz=(128, 96, 24), overlap=0.3, voxel_size_xyz=(0.5, 0.5, 1.0),
        jitter_voxels=(3.0, 3.0, 1.0), blob_density=4000.0, blob_sigma_um=(1.0, 2.0), margin_um=6.0,
        fibre_count=0, n_levels=2, chunk_size_xyz=(64, 48, 24), channels=2, seed=11))
    p = PipelineParams()
    xml, store = str(paths.xml), str(root / "ip.zarr")
    detect.detect_in_process(xml, store, p.detection)
    m, s = p.round_params("rigid")
    pairs = match.plan_pairs(xml, grouping=p.alignment.grouping)
    recs = [match.match_pair(xml, store, a, b, "beads", m) for a, b in pairs]
    return root, paths, store, s, pairs, recs


def _tile_views(xml):
    from rhapso_core.spimdata import load_xml

    sd = load_xml(xml)
    by: dict = {}
    for v in sd.views():
        by.setdefault(sd.setup_of(v).tile, []).append(v)
    return sd, by


def test_a_shifted_tile_is_reverted_in_both_channels(two_channels, tmp_path):
    import shutil

    from rhapso_core.pipeline import solve
    from rhapso_core.pointstore import PointStore
    from rhapso_core.spimdata import load_xml

    root, paths, store0, s, pairs, recs = two_channels
    xml = str(paths.xml)
    sd, tiles = _tile_views(xml)
    assert all(len(vs) == 2 for vs in tiles.values())
    bad = sorted(tiles)[-1]
    bad_views = sorted(tiles[bad])
    store = str(tmp_path / "ip.zarr")
    shutil.copytree(store0, store)
    st = PointStore(store, mode="a")
    n_links = 0
    for v in bad_views:
        saved = [c for c in st.read_all_correspondences("beads") if v in (c.view_a, c.view_b)]
        assert saved and min(len(c.idx_a) for c in saved) >= 12, "each channel's pair must match"
        pts = st.read_points(v, "beads")
        st.write_points(v, "beads", pts.ids, pts.loc_xyz + SHIFT, pts.intensity, pts.dog)
        for c in saved:
            st.write_correspondences(c.view_a, c.view_b, "beads", c.idx_a, c.idx_b)
        n_links += len(saved)
    assert n_links == 2
    out = str(tmp_path / "rigid.xml")
    rep = solve.solve_dataset(xml, store, "beads", s, out, verify=VerifyParams(), grouping=["channel", "illumination"])
    v = rep.verify
    assert [sorted(map(tuple, r["views"])) for r in v["reverted"]] == [bad_views], v["summary"]
    sd_out = load_xml(out)
    for view in bad_views:
        np.testing.assert_allclose(sd_out.view_to_world(view), sd.view_to_world(view))
    for tile, vs in tiles.items():
        first = sd_out.view_to_world(vs[0])
        for view in vs[1:]:
            np.testing.assert_array_equal(sd_out.view_to_world(view), first, err_msg=f"tile {tile} split")
