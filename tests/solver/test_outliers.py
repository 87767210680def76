"""Outlier handling: iterative link removal and two-round placement by metadata."""

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.solver import Link, SolverParams, solve
from rhapso_core.solver.synthetic import correction_rms, make_grid

from solver_helpers import replace_link, translation_of

WRONG = ((0, 5), (0, 6))  # an interior x-neighbour pair of the 4 x 3 x 2 grid


@pytest.mark.parametrize("solver", ["sparse", "iterative"])
def test_wrong_link_is_removed(grids, solver):
    g = grids["translation"]
    links = replace_link(g.links, *WRONG, [30.0, 0.0, 0.0])
    one = solve(links, SolverParams(model="translation", method="one_round", solver=solver), g.views)
    # Kept, the 30 voxel error spreads: the solve is off by more than the 0.5 voxel tolerance.
    assert correction_rms(g, one.corrections) > 0.5
    res = solve(links, SolverParams(model="translation", method="iterative", solver=solver), g.views)
    assert res.report.removed_links == [(WRONG[0], WRONG[1], "beads")], "exactly the wrong link is removed"
    assert res.report.converged
    assert correction_rms(g, res.corrections) < 0.5, "after removal the solve is within 0.5 voxel RMS of truth"
    status = {(r.a, r.b): r.status for r in res.report.links}
    assert status[WRONG] == "removed" and list(status.values()).count("removed") == 1
    wrong = next(r for r in res.report.links if (r.a, r.b) == WRONG)
    assert wrong.mean_after > 25.0, "the removed link's residual after the solve shows the 30 voxel offset"


def test_bridge_is_never_removed():
    """A chain a - b - c whose last link is wrong: removing it would cut c off, so it stays."""
    rng = np.random.default_rng(2)
    p1 = rng.uniform(0, 100, (30, 3))
    p2 = rng.uniform(0, 100, (30, 3))
    links = [Link((0, 0), (0, 1), p1, p1 + 0.1), Link((0, 1), (0, 2), p2, p2 + [40.0, 0, 0])]
    res = solve(links, SolverParams(model="translation", method="iterative"))
    assert res.report.removed_links == []
    # Both links are solved exactly (a chain has no conflict), so the thresholds hold anyway.
    assert res.report.converged
    assert np.allclose(translation_of(res.corrections[(0, 2)]), [-40.1, -0.1, -0.1])


def test_inconsistent_cycle_loses_one_link():
    """A triangle whose links disagree by 30 voxels: mean error > absolute_threshold until one goes."""
    rng = np.random.default_rng(4)
    pts = [rng.uniform(0, 100, (30, 3)) for _ in range(3)]
    links = [
        Link((0, 0), (0, 1), pts[0], pts[0] + [30.0, 0, 0]),
        Link((0, 1), (0, 2), pts[1], pts[1]),
        Link((0, 0), (0, 2), pts[2], pts[2]),
    ]
    one = solve(links, SolverParams(model="translation", method="one_round"))
    assert one.report.final_error > 7.0
    res = solve(links, SolverParams(model="translation", method="iterative"))
    # One link of the inconsistent cycle goes; the rest is then a tree and exact.
    assert len(res.report.removed_links) == 1
    assert res.report.final_error < 1e-6 and res.report.converged


def test_unremovable_outlier_reports_not_converged():
    """Two views whose matches do not agree: the only link cannot go, so the solve is not converged."""
    rng = np.random.default_rng(7)
    links = [Link((0, 0), (0, 1), rng.uniform(0, 100, (30, 3)), rng.uniform(0, 100, (30, 3)))]
    res = solve(links, SolverParams(model="translation", method="iterative"))
    assert res.report.removed_links == []
    assert res.report.final_error > 7.0 and not res.report.converged


def _drop_view(links, v):
    return [lk for lk in links if v not in (lk.a, lk.b)]


def _overlapping(g, v):
    lo, hi = transforms.view_bounding_box(*g.views[v])
    out = []
    for w, (aff, size) in g.views.items():
        if w == v:
            continue
        lo2, hi2 = transforms.view_bounding_box(aff, size)
        if np.all(np.minimum(hi, hi2) > np.maximum(lo, lo2)):
            out.append(w)
    return out


@pytest.mark.parametrize("solver", ["sparse", "iterative"])
def test_two_round_places_unmatched_view_by_metadata(solver):
    g = make_grid((3, 3, 1), "translation", shift=5.0, seed=5)
    lonely = (0, 4)  # the centre tile
    links = _drop_view(g.links, lonely)
    params = dict(model="translation", solver=solver)
    res = solve(links, SolverParams(method="two_round", **params), g.views)
    nbrs = _overlapping(g, lonely)
    assert len(nbrs) == 8
    expected = np.mean([translation_of(res.corrections[w]) for w in nbrs], axis=0)
    # Translation round 2 with equal-size overlap boxes: the lonely view moves by the mean of the
    # corrections of the views it overlaps (to 1e-6 voxel), so its metadata offsets to them are kept.
    assert np.allclose(translation_of(res.corrections[lonely]), expected, atol=1e-6)
    assert res.report.weak_links == 8 and res.report.unconnected_views == [lonely]
    # One round leaves it at the identity, several voxels away from where its neighbours went.
    one = solve(links, SolverParams(method="iterative", **params), g.views)
    assert np.allclose(one.corrections[lonely], np.eye(4))
    assert np.linalg.norm(expected) > 1.0
    # The matched views are still solved to within 0.5 voxel RMS of the truth.
    matched = {v: m for v, m in res.corrections.items() if v != lonely}
    sub = type(g)({v: g.views[v] for v in matched}, {v: g.truth[v] for v in matched}, [], {})
    assert correction_rms(sub, matched) < 0.5


def test_two_round_moves_unfixed_component_with_its_neighbours():
    """Two halves of a grid with no links between them: the second half follows the first by metadata."""
    g = make_grid((4, 2, 1), "translation", shift=0.0, seed=6)
    # A common true drift of the right half (x index >= 2) that only metadata can relate to the left half.
    links = [lk for lk in g.links if (g.grid_index[lk.a][0] >= 2) == (g.grid_index[lk.b][0] >= 2)]
    res = solve(links, SolverParams(model="translation", method="two_round"), g.views)
    # Shift 0 truth: every correction must be (close to) the identity, including the gauge-fixed half.
    for v, m in res.corrections.items():
        assert np.abs(translation_of(m)).max() < 0.5, v
    assert res.report.gauge_fixed_views == [(0, 2)]


def test_two_round_needs_views(grids):
    from rhapso_core.solver import SolverInputError

    with pytest.raises(SolverInputError, match="two_round needs the box of view"):
        solve(grids["translation"].links, SolverParams(method="two_round"))


def test_label_weights(grids):
    """A wrong link labelled as low-weight synthetic points barely moves the solution."""
    g = grids["translation"]
    bad = next(lk for lk in g.links if (lk.a, lk.b) == WRONG)
    extra = Link(bad.a, bad.b, bad.pa, bad.pb + [30.0, 0, 0], label="split")
    base = dict(model="translation", method="one_round")
    heavy = solve(g.links + [extra], SolverParams(**base), g.views)
    light = solve(g.links + [extra], SolverParams(label_weights={"split": 1e-4}, **base), g.views)
    assert correction_rms(g, heavy.corrections) > 0.5
    assert correction_rms(g, light.corrections) < 0.5
    dropped = solve(g.links + [extra], SolverParams(label_weights={"split": 0.0}, **base), g.views)
    assert [r.status for r in dropped.report.links if r.label == "split"] == ["dropped"]
