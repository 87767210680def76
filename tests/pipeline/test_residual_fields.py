"""Residual displacement fields' linear parts, from matches, and loops of translations moved to one place."""

import numpy as np

from rhapso_core.pipeline.pair_check import loop_closure_sd
from rhapso_core.pipeline.residual_fields import residual_linear_parts, translation_at


def _grid_pairs(rng, linear, trans, noise=0.05, n=60):
    """A 3 x 3 grid of 256-unit tiles with 51-unit overlap strips (single planes, z = 0); each view
    displaced by t_v + L_v x. Returns (view_a, view_b, x, disp) per neighbour pair."""
    step = 205.0
    pairs = []
    for i in range(9):
        for j in (i + 1, i + 3):
            if (j == i + 1 and i % 3 == 2) or j >= 9:
                continue
            lo = np.array([(i % 3) * step, (i // 3) * step, 0.0])
            if j == i + 1:
                lo_s, size = lo + [step, 0, 0], np.array([51.0, 256.0, 0.0])
            else:
                lo_s, size = lo + [0, step, 0], np.array([256.0, 51.0, 0.0])
            x = lo_s + rng.uniform(0, 1, (n, 3)) * size
            a, b = (0, i), (0, j)
            d_b = trans[b] + x @ linear[b].T
            d_a = trans[a] + x @ linear[a].T
            pairs.append((a, b, x, d_b - d_a + rng.normal(0, noise, (n, 3)) * [1, 1, 0]))
    return pairs


def test_linear_parts_recovered_and_loops_close_once_moved():
    """Views left with about 1 % of affine in the plane: the fitted L_b - L_a match the truth within
    0.001, and loops of the matches' means (sd 0.05 per match, 60 per pair: about 0.007 per mean) close
    to within 0.02 once moved to one place, against > 0.1 as measured."""
    rng = np.random.default_rng(0)
    views = [(0, i) for i in range(9)]
    linear = {v: np.diag([0.0, 0.0, 0.0]) for v in views}
    for v in views:
        linear[v][:2, :2] = rng.normal(0, 0.007, (2, 2))
    trans = {v: np.append(rng.normal(0, 2.0, 2), 0.0) for v in views}
    pairs = _grid_pairs(rng, linear, trans)
    origin = np.mean([x.mean(axis=0) for _, _, x, _ in pairs], axis=0)
    fit = residual_linear_parts(pairs, origin)
    for a, b, _, _ in pairs:
        np.testing.assert_allclose((fit[b] - fit[a])[:2, :2], (linear[b] - linear[a])[:2, :2], atol=1e-3)
    measured = loop_closure_sd([(a, b, d.mean(axis=0)) for a, b, x, d in pairs])
    moved = loop_closure_sd([(a, b, translation_at(d.mean(axis=0), x.mean(axis=0), a, b, fit, origin))
                             for a, b, x, d in pairs])
    assert np.max(measured[:2]) > 0.1 and np.max(moved) < 0.02, (measured, moved)


def test_a_bias_shared_by_all_matches_of_a_pair_stays_in_the_loops():
    """Translation-only views, one pair's matches all biased by 0.5 along x: the fitted linear parts stay
    below 1e-3 (the bias does not enter them) and the loops still show the bias after moving."""
    rng = np.random.default_rng(1)
    views = [(0, i) for i in range(9)]
    zero = {v: np.zeros((3, 3)) for v in views}
    trans = {v: np.append(rng.normal(0, 2.0, 2), 0.0) for v in views}
    pairs = _grid_pairs(rng, zero, trans)
    a, b, x, d = pairs[3]
    pairs[3] = (a, b, x, d + [0.5, 0.0, 0.0])
    origin = np.zeros(3)
    fit = residual_linear_parts(pairs, origin)
    assert max(np.abs(m).max() for m in fit.values()) < 1e-3
    moved = loop_closure_sd([(a, b, translation_at(d.mean(axis=0), x.mean(axis=0), a, b, fit, origin))
                             for a, b, x, d in pairs])
    assert moved[0] > 0.1


def test_views_without_pairs_and_pairs_with_one_match():
    fit = residual_linear_parts([((0, 0), (0, 1), np.zeros((1, 3)), np.zeros((1, 3)))], np.zeros(3))
    assert set(fit) == {(0, 0), (0, 1)} and all(np.all(m == 0) for m in fit.values())
    np.testing.assert_allclose(translation_at([1, 2, 3], [5, 5, 5], (0, 0), (0, 9), fit, np.zeros(3)), [1, 2, 3])
