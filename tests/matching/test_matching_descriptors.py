"""RGLDM descriptors and candidate search, checked against an exhaustive reference."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from matching_synth import affine, make_pair, rotation

from rhapso_core.matching import build_descriptors, match_descriptors, neighbor_vectors, subset_table
from rhapso_core.matching import descriptors as desc_mod


def reference_candidates(a, b, k, r, significance, radius, kind):
    """mpicbg's definition, written as plainly as possible: every subset pair of every point pair."""
    da, va = build_descriptors(a, k, r, kind)
    db, vb = build_descriptors(b, k, r, kind)
    diff = da[:, None, :, None, :] - db[None, :, None, :, :]  # (Na, Nb, S, S, D)
    d2 = np.einsum("abstd,abstd->abst", diff, diff)
    d2[~(va[:, None, :, None] & vb[None, :, None, :])] = np.inf
    point_d = d2.min(axis=(2, 3))  # (Na, Nb)
    if radius is not None:
        far = np.linalg.norm(a[:, None] - b[None], axis=-1) > radius
        point_d[far] = np.inf
    out = {}
    for i in range(a.shape[0]):
        row = point_d[i]
        order = np.argsort(row, kind="stable")
        if row.size < 2 or not np.isfinite(row[order[1]]):
            continue
        if row[order[0]] * significance < row[order[1]]:
            out[i] = int(order[0])
    return out


def as_dict(c):
    return dict(zip(c.idx_a.tolist(), c.idx_b.tolist()))


def test_subset_table_lists_every_subset():
    t = subset_table(3, 2)
    assert t.shape == (10, 3)  # C(5, 3)
    assert {tuple(x) for x in t} == set(combinations(range(5), 3))
    assert np.all(np.diff(t, axis=1) > 0), "neighbour order must be kept inside a subset"


def test_neighbor_vectors_are_sorted_and_exclude_self():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 50, size=(200, 3))
    rel = neighbor_vectors(p, 4)
    d = np.linalg.norm(rel, axis=-1)
    assert np.all(d > 0), "a point is not its own neighbour"
    assert np.all(np.diff(d, axis=1) >= 0)
    brute = np.sort(np.linalg.norm(p[:, None] - p[None], axis=-1), axis=1)[:, 1:5]
    np.testing.assert_allclose(d, brute, rtol=0, atol=1e-12)


def test_rotation_descriptor_is_invariant_and_translation_descriptor_is_not():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 100, size=(300, 3))
    rot = rotation([0.3, -1.0, 0.5], 37.0)
    q = p @ rot.T + [5.0, -7.0, 11.0]
    dr, vr = build_descriptors(p, 3, 1, "rotation")
    dq, vq = build_descriptors(q, 3, 1, "rotation")
    assert vr.all() and vq.all()
    np.testing.assert_allclose(dr, dq, atol=1e-9, err_msg="rotation descriptor must not change under rotation")
    tr, _ = build_descriptors(p, 3, 1, "translation")
    tq, _ = build_descriptors(p + [5.0, -7.0, 11.0], 3, 1, "translation")
    np.testing.assert_allclose(tr, tq, atol=1e-9, err_msg="translation descriptor must not change under translation")
    tq_rot, _ = build_descriptors(q, 3, 1, "translation")
    assert np.abs(tr - tq_rot).max() > 1.0


@pytest.mark.parametrize("kind", ["translation", "rotation"])
@pytest.mark.parametrize("redundancy", [0, 1, 2])
def test_candidates_equal_exhaustive_comparison(kind, redundancy):
    # Exactness: the tree search must give exactly what comparing every subset pair gives.
    truth = affine(rotation([1, 0, 0], 2.0), [3.0, 1.0, -2.0], [60, 60, 40])
    pr = make_pair(11, truth, n_shared=120, n_extra=40, noise=0.3, box=(120, 120, 80), min_spacing=3.0)
    got = as_dict(match_descriptors(pr.a, pr.b, 3, redundancy, 3.0, None, kind))
    ref = reference_candidates(pr.a, pr.b, 3, redundancy, 3.0, None, kind)
    assert got == ref
    assert len(ref) > 20, "the case must produce candidates to be meaningful"


@pytest.mark.parametrize("force_tree", [False, True])
@pytest.mark.parametrize("radius", [8.0, 25.0])
def test_gated_candidates_equal_exhaustive_comparison(monkeypatch, force_tree, radius):
    if force_tree:  # exercise the tree round + compiled scan path, not only the direct scan
        monkeypatch.setattr(desc_mod, "_BRUTE_DIRECT", 0)
    truth = affine(np.eye(3), [6.0, 0.0, 0.0])
    pr = make_pair(12, truth, n_shared=120, n_extra=40, noise=0.3, box=(120, 120, 80), min_spacing=3.0)
    got = as_dict(match_descriptors(pr.a, pr.b, 3, 1, 3.0, radius, "translation"))
    ref = reference_candidates(pr.a, pr.b, 3, 1, 3.0, radius, "translation")
    assert got == ref
    assert len(ref) > 20


def test_search_radius_excludes_partners_beyond_it():
    truth = affine(np.eye(3), [30.0, 0.0, 0.0])
    pr = make_pair(13, truth, n_shared=300, box=(150, 150, 90))
    near = match_descriptors(pr.a, pr.b, 3, 1, 3.0, 50.0)
    far = match_descriptors(pr.a, pr.b, 3, 1, 3.0, 20.0)
    assert pr.correct(near.idx_a, near.idx_b).sum() > 250
    assert pr.correct(far.idx_a, far.idx_b).sum() == 0, "partners 30 apart must not be compared within radius 20"
    assert np.all(np.linalg.norm(pr.a[far.idx_a] - pr.b[far.idx_b], axis=1) <= 20.0)


def test_redundancy_tolerates_one_spurious_neighbour():
    # A point whose neighbourhood in B gains one spurious point (a false detection
    # between its 1st and 2nd neighbour) still matches when every 3-of-4 subset is
    # compared (redundancy 1), and not when only its 3 nearest are (redundancy 0).
    rng = np.random.default_rng(5)
    found_r1, found_r0 = 0, 0
    for trial in range(10):
        a = rng.uniform(0, 100, size=(300, 3))
        b = a + [4.0, -2.0, 1.0]
        i = trial * 7
        rel = neighbor_vectors(a, 4)[i]
        d1, d2 = np.linalg.norm(rel[:2], axis=1)
        # Spurious point at distance (d1 + d2) / 2 from b[i], away from its neighbours.
        direction = -rel[0] / d1
        spurious = b[i] + direction * (d1 + d2) / 2
        b_sp = np.vstack([b, spurious])
        r1 = as_dict(match_descriptors(a, b_sp, 3, 1, 3.0))
        r0 = as_dict(match_descriptors(a, b_sp, 3, 0, 3.0))
        found_r1 += r1.get(i) == i
        found_r0 += r0.get(i) == i
    assert found_r1 == 10, "redundancy 1 must find every point despite its spurious neighbour"
    assert found_r0 == 0, "redundancy 0 compares only the corrupted 3 nearest neighbours"


def test_rotation_descriptor_rejects_collinear_frames():
    p = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [0, 5, 0]])
    _, valid = build_descriptors(p, 2, 0, "rotation")
    assert not valid[0, 0], "two collinear nearest neighbours give no frame"
    with pytest.raises(ValueError, match="num_neighbors >= 2"):
        build_descriptors(p, 1, 0, "rotation")
