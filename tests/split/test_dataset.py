"""split_dataset on a synthetic dataset: pixels, points and fake correspondences against ground truth."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.pipeline.dataset import open_view
from rhapso_core.pointstore import PointStore
from rhapso_core.spimdata import load_xml, save_xml
from rhapso_core.split import SplitError, SplitParams, data_step_xyz, in_box, split_dataset


def test_result_record(split, dataset, split_params):
    sp = split_params
    paths, _ = dataset
    assert split.step_xyz == (4, 4, 1), "LCM of the pyramid factors (x y z) of the synthetic tiles"
    assert data_step_xyz(load_xml(paths.xml)) == (4, 4, 1)
    assert split.source_store == os.path.join(str(paths.root), "interestpoints.zarr")
    assert split.store.endswith("split.interestpoints.zarr")
    assert sorted(split.new_setups) == [0, 1] and sum(map(len, split.new_setups.values())) == len(split.parent_of)
    assert split.labels == ("beads", sp.fake_label)
    assert split.label_weights == {sp.fake_label: sp.fake_weight}
    assert split.to_dict()["fake_points"] == split.fake_points > 0


def test_subview_pixels_are_the_parent_pixels_at_the_offset(split, dataset):
    paths, _ = dataset
    parent_sd = load_xml(paths.xml)
    sd = load_xml(split.xml)
    for view in sd.views():
        sub = open_view(sd, view)
        par = open_view(parent_sd, (view[0], split.parent_of[view[1]]))
        assert sub.n_levels == par.n_levels, "offsets aligned to the pyramid: every level is an exact crop"
        off_zyx = np.array(split.offset_xyz[view[1]][::-1])
        size_zyx = np.array(sd.setups[view[1]].size[::-1])
        for level in range(sub.n_levels):
            f = np.array(sub.level_factors(level))
            shape = sub.level_shape(level)
            got = sub.read(tuple((0, n) for n in shape), level)
            lo = off_zyx // f
            want = par.read(tuple((int(a), int(a + n)) for a, n in zip(lo, shape)), level)
            assert np.array_equal(got, want), f"view {view} level {level}: pixels differ from the parent's"
            if level == 0:
                assert tuple(shape) == tuple(size_zyx)


def test_real_points_moved_into_every_subview(split, dataset, split_params):
    sp = split_params
    _, real = dataset
    sd = load_xml(split.xml)
    parent_sd = load_xml(dataset[0].xml)
    store = PointStore(split.store)
    total = 0
    for view in sd.views():
        parent = (view[0], split.parent_of[view[1]])
        ids, loc = real[parent]
        setup = sd.setups[view[1]]
        off = np.array(split.offset_xyz[view[1]], dtype=np.float64)
        inside = in_box(loc, off, off + np.array(setup.size) - 1)
        pts = store.read_points(view, "beads")
        order = np.argsort(pts.ids)
        want = np.argsort(ids[inside])
        assert np.array_equal(pts.ids[order], ids[inside][want]), "the parent's ids, exactly the points in the box"
        # Sub-view coordinates are parent coordinates minus the offset (exact float64 subtraction).
        assert np.array_equal(pts.loc_xyz[order] + off, loc[inside][want])
        # World positions unchanged (tolerance: float64 rounding, 1e-9 world units).
        w_sub = transforms.apply(sd.view_to_world(view), pts.loc_xyz[order])
        w_par = transforms.apply(parent_sd.view_to_world(parent), loc[inside][want])
        np.testing.assert_allclose(w_sub, w_par, atol=1e-9, rtol=0)
        total += int(inside.sum())
    assert split.points_moved == {"beads": total}
    # A point on a sub-view's first plane (z = 19) belongs to it (inclusive boxes).
    z19 = [v for v in sd.views() if split.offset_xyz[v[1]][2] == 19]
    assert z19 and all(np.any(store.read_points(v, "beads").loc_xyz[:, 2] == 0.0) for v in z19)
    # The XML lists both labels for every sub-view.
    listed = {(f.view, f.label) for f in sd.interest_points}
    assert listed == {(v, lab) for v in sd.views() for lab in ("beads", sp.fake_label)}


def test_fake_correspondences_agree_in_world_within_the_jitter(split, dataset, split_params):
    sp = split_params
    _, real = dataset
    sd = load_xml(split.xml)
    store = PointStore(split.store)
    corr = store.read_all_correspondences(sp.fake_label)
    assert len(corr) == split.fake_pairs and sum(len(c) for c in corr) == split.fake_points
    diffs = []
    for c in corr:
        pa, pb = split.parent_of[c.view_a[1]], split.parent_of[c.view_b[1]]
        assert pa == pb, "fake correspondences only tie sub-views of one tile"
        la = store.read_points(c.view_a, sp.fake_label).loc_xyz[c.idx_a]
        lb = store.read_points(c.view_b, sp.fake_label).loc_xyz[c.idx_b]
        assert sp.min_points <= len(c) <= sp.max_points
        # Both ends lie in the overlap of the two boxes (parent voxels), up to 5 sigma of jitter.
        par_a = la + split.offset_xyz[c.view_a[1]]
        par_b = lb + split.offset_xyz[c.view_b[1]]
        size_a = np.array(sd.setups[c.view_a[1]].size)
        size_b = np.array(sd.setups[c.view_b[1]].size)
        lo = np.maximum(split.offset_xyz[c.view_a[1]], split.offset_xyz[c.view_b[1]])
        hi = np.minimum(np.add(split.offset_xyz[c.view_a[1]], size_a - 1), np.add(split.offset_xyz[c.view_b[1]], size_b - 1))
        tol = 5 * sp.error
        assert np.all(par_a >= lo - tol) and np.all(par_a <= hi + tol)
        # Away from real points: the midpoint (true fake position + jitter / 2) keeps exclude_radius
        # minus 5 sigma of the midpoint's jitter (sigma = error / sqrt 2), unless topped up to min_points.
        mid = (par_a + par_b) / 2
        d = np.min(np.linalg.norm(mid[:, None, :] - real[(0, pa)][1][None, :, :], axis=2), axis=1)
        if len(c) > sp.min_points:
            assert d.min() >= sp.exclude_radius - 5 * sp.error / np.sqrt(2)
        wa = transforms.apply(sd.view_to_world(c.view_a), la)
        wb = transforms.apply(sd.view_to_world(c.view_b), lb)
        # World ends differ only by the jitter, mapped through the parent's linear part.
        lin = sd.view_to_world(c.view_a)[:3, :3]
        np.testing.assert_allclose(wa - wb, (par_a - par_b) @ lin.T, atol=1e-9, rtol=0)
        diffs.append((par_a - par_b) @ lin.T)  # world units, where the jitter is defined
    d = np.concatenate(diffs)
    # Each end is jittered by N(0, error^2) per world axis, so the difference has sd error * sqrt(2):
    # the sample sd must be within 15 % of it (over > 1000 values) and nothing beyond 6 sd.
    expected = sp.error * np.sqrt(2)
    assert d.size > 1000
    assert abs(d.std() / expected - 1) < 0.15
    assert np.abs(d).max() < 6 * expected


def test_fake_point_count_follows_the_overlap_volume(dataset, tmp_path, split_params):
    paths, _ = dataset
    sp = split_params.model_copy(update={"exclude_radius": 0.0})
    r = split_dataset(str(paths.xml), str(tmp_path / "s.xml"), sp)
    sd = load_xml(r.xml)
    seen = set()
    for c in PointStore(r.store).read_all_correspondences(sp.fake_label):
        a, b = c.view_a[1], c.view_b[1]
        lo = np.maximum(r.offset_xyz[a], r.offset_xyz[b])
        hi = np.minimum(np.add(r.offset_xyz[a], sd.setups[a].size), np.add(r.offset_xyz[b], sd.setups[b].size)) - 1
        voxels = int(np.prod(hi - lo + 1))
        # BigStitcher's rule: ceil(density * overlap voxels / 100^3), clamped to [min_points, max_points].
        want = min(sp.max_points, max(sp.min_points, int(np.ceil(sp.point_density * voxels / 1e6))))
        assert len(c) == want, f"pair {a}-{b}: {len(c)} fake points for {voxels} overlap voxels, expected {want}"
        seen.add(want)
    assert len(seen) > 2, "overlaps of different volumes were checked"
    # Every overlapping pair of sub-views of one tile (faces, edges and corners) is tied.
    pairs = {(c.view_a[1], c.view_b[1]) for c in PointStore(r.store).read_all_correspondences(sp.fake_label)}
    for parent, kids in r.new_setups.items():
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                touch = all(
                    max(r.offset_xyz[a][k], r.offset_xyz[b][k])
                    <= min(r.offset_xyz[a][k] + sd.setups[a].size[k], r.offset_xyz[b][k] + sd.setups[b].size[k]) - 1
                    for k in range(3)
                )
                assert ((a, b) in pairs) == touch


def test_seeded_and_repeatable(split, dataset, tmp_path, split_params):
    sp = split_params
    paths, _ = dataset
    again = split_dataset(str(paths.xml), str(tmp_path / "again.xml"), sp)
    s1, s2 = PointStore(split.store), PointStore(again.store)
    for v in load_xml(split.xml).views():
        assert np.array_equal(
            s1.read_points(v, sp.fake_label).loc_xyz, s2.read_points(v, sp.fake_label).loc_xyz
        ), "same seed, same fake points"
    other = split_dataset(str(paths.xml), str(tmp_path / "other.xml"), sp.model_copy(update={"seed": 12}))
    v = load_xml(split.xml).views()[0]
    assert not np.array_equal(s1.read_points(v, sp.fake_label).loc_xyz, PointStore(other.store).read_points(v, sp.fake_label).loc_xyz)


def test_never_overwrites_inputs(dataset, tmp_path, split_params):
    sp = split_params
    paths, _ = dataset
    before = paths.xml.read_bytes()
    with pytest.raises(SplitError, match="overwrite the input XML"):
        split_dataset(str(paths.xml), str(paths.xml), sp)
    store = str(paths.root / "interestpoints.zarr")
    with pytest.raises(SplitError, match="point store"):
        split_dataset(str(paths.xml), str(tmp_path / "s.xml"), sp, store_uri=store, out_store_uri=store)
    assert paths.xml.read_bytes() == before


def test_no_point_store_and_explicit_step(dataset, tmp_path, split_params):
    """Without an input store only fake points are written; min_step_size skips opening images."""
    sp = split_params
    paths, _ = dataset
    r = split_dataset(
        str(paths.xml), str(tmp_path / "s.xml"), sp.model_copy(update={"min_step_size": (8, 8, 2)}),
        store_uri=None, out_store_uri=str(tmp_path / "pts.zarr"),
    )
    assert r.step_xyz == (8, 8, 2)
    assert all(o[0] % 8 == 0 and o[2] % 2 == 0 for o in r.offset_xyz.values())
    # Default store discovery found the input's interestpoints.zarr beside the XML.
    assert r.points_moved["beads"] > 0
    bare = tmp_path / "bare"
    save_xml(load_xml(paths.xml), bare / "dataset.xml")  # base path rebased onto the images; no store beside it
    r2 = split_dataset(str(bare / "dataset.xml"), str(bare / "split.xml"), sp)
    assert r2.source_store is None and r2.points_moved == {} and r2.fake_points > 0
    assert r2.labels == (sp.fake_label,)


def test_unsplittable_sizes_name_the_parameter(dataset, tmp_path):
    paths, _ = dataset
    with pytest.raises(ValueError, match=r"target_overlap\[0\]"):
        split_dataset(str(paths.xml), str(tmp_path / "s.xml"), SplitParams(
            target_image_size=(8, 64, 64), target_overlap=(6, 8, 8), min_step_size=(8, 1, 1)))
