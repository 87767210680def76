"""Parameters, determinism, report serialisation and the optimiser's stopping rule."""

import json
import random

import numpy as np
import pytest
from pydantic import ValidationError

from rhapso_core.models import make_model
from rhapso_core.solver import Link, SolverInputError, SolverParams, optimise_iterative, solve
from rhapso_core.solver.graph import TileLink


def test_defaults_are_bigstitchers():
    p = SolverParams()
    assert (p.relative_threshold, p.absolute_threshold, p.min_matches, p.damp) == (3.5, 7.0, 3, 1.0)
    assert (p.max_iterations, p.max_allowed_error, p.max_plateauwidth) == (10000, float("inf"), 200)
    assert (p.model, p.lambda_value) == ("auto", "auto")   # chosen per dataset (rhapso_core.solver.select)
    assert SolverParams(model="affine", lambda_value=0.1).resolved_solver() == "sparse"
    assert SolverParams(model="rigid").resolved_solver() == "iterative"
    assert SolverParams(model="translation").transform_name() == "rhapso translation solve"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"damp": 0.0}, "damp"),
        ({"lambda_value": 1.5}, "lambda_value"),
        ({"max_plateauwidth": 0}, "max_plateauwidth"),
        ({"model": "similarity"}, "model"),
        ({"label_weights": {"beads": -1.0}}, "label_weights"),
        ({"min_matches": 0}, "min_matches"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, name):
    with pytest.raises(ValidationError, match=name):
        SolverParams(**kwargs)


def test_sparse_refuses_rigid():
    with pytest.raises(ValidationError, match="sparse"):
        SolverParams(model="rigid", solver="sparse")


def test_bad_inputs_raise_clear_errors(grids):
    with pytest.raises(SolverInputError, match="fixed_views"):
        solve(grids["translation"].links, SolverParams(fixed_views=[(9, 9)]))
    with pytest.raises(SolverInputError, match=r"\(N, 3\)"):
        Link((0, 0), (0, 1), np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(SolverInputError, match="itself"):
        Link((0, 0), (0, 0), np.zeros((4, 3)), np.zeros((4, 3)))


def test_inputs_are_not_modified(grids):
    g = grids["translation"]
    before = [lk.pa.copy() for lk in g.links]
    solve(g.links, SolverParams(model="translation"), g.views)
    assert all(np.array_equal(b, lk.pa) for b, lk in zip(before, g.links))


@pytest.mark.parametrize("model, solver", [("translation", "sparse"), ("affine", "sparse"), ("rigid", "iterative")])
def test_deterministic_and_order_independent(grids, model, solver):
    g = grids["translation" if model == "translation" else model]
    params = SolverParams(model=model, solver=solver)
    r1 = solve(g.links, params, g.views)
    r2 = solve(g.links, params, g.views)
    shuffled = list(g.links)
    random.Random(3).shuffle(shuffled)
    # Also give some links the other way round (b, a).
    shuffled = [Link(lk.b, lk.a, lk.pb, lk.pa) if k % 2 else lk for k, lk in enumerate(shuffled)]
    r3 = solve(shuffled, params, dict(reversed(list(g.views.items()))))
    for v in r1.corrections:
        assert np.array_equal(r1.corrections[v], r2.corrections[v]), "same input, same output (bitwise)"
        assert np.array_equal(r1.corrections[v], r3.corrections[v]), "link / view order does not matter (bitwise)"
    assert json.dumps(r1.to_dict()) == json.dumps(r3.to_dict())


def test_report_is_json_and_complete(grids):
    g = grids["translation"]
    res = solve(g.links, SolverParams(model="translation", method="iterative"), g.views)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["transform_name"] == "rhapso translation solve"
    assert len(d["corrections"]) == len(g.views) and len(d["corrections"][0]["affine"]) == 12
    rep = d["report"]
    assert len(rep["links"]) == len(g.links) and len(rep["tile_errors"]) == len(g.views)
    assert rep["fixed_views"] == [{"timepoint": 0, "setup": 0}]
    for r in rep["links"]:
        # Before the solve the views are off by up to 10 voxels; after, only the 0.2 voxel noise is left.
        assert r["mean_after"] < 0.6 < r["mean_before"]
    assert rep["final_error"] == pytest.approx(np.mean([t["error"] for t in rep["tile_errors"]]))
    assert rep["max_error"] is not None and rep["converged"] is True


def test_default_fixed_view_per_timepoint():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (10, 3))
    links = [Link((t, 3), (t, 5), p, p + [1.0 + t, 0, 0]) for t in (0, 1)]
    res = solve(links, SolverParams(model="translation"))
    assert res.report.fixed_views == [(0, 3), (1, 3)]
    assert np.array_equal(res.corrections[(1, 3)], np.eye(4))
    assert np.allclose(res.corrections[(1, 5)][:3, 3], [-2.0, 0, 0])


def test_min_matches_drops_small_links():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (2, 3))
    res = solve([Link((0, 0), (0, 1), p, p + 1.0)], SolverParams(model="translation"))
    assert res.report.links[0].status == "dropped" and res.report.unconnected_views == [(0, 0), (0, 1)]


def _chain(n_tiles, offset):
    rng = np.random.default_rng(1)
    out = []
    for t in range(n_tiles - 1):
        p = rng.uniform(0, 100, (20, 3))
        out.append(TileLink(t, t + 1, p, p + offset + rng.normal(0, 0.5, p.shape), np.ones(20)))
    return out


def test_stopping_rule():
    links = _chain(4, [3.0, 0, 0])
    fixed = np.array([True, False, False, False])
    model = make_model("translation")
    # The plateau rule can only stop once past max_plateauwidth iterations.
    _, info = optimise_iterative(4, links, fixed, model, max_plateauwidth=50)
    assert info.converged and info.iterations == 52
    _, info = optimise_iterative(4, links, fixed, model, max_iterations=10)
    assert info.iterations == 10 and not info.converged
    # An unreachable max_allowed_error keeps it going to max_iterations.
    _, info = optimise_iterative(4, links, fixed, model, max_plateauwidth=50, max_allowed_error=0.0, max_iterations=300)
    assert info.iterations == 300 and not info.converged


def test_prealignment_places_a_chain_exactly():
    """Noise-free chain: breadth-first pre-alignment alone is exact, so iterations change nothing."""
    rng = np.random.default_rng(2)
    links = []
    for t in range(3):
        p = rng.uniform(0, 100, (20, 3))
        links.append(TileLink(t, t + 1, p, p + [5.0, -2.0, 1.0], np.ones(20)))
    models, info = optimise_iterative(4, links, np.array([True, False, False, False]), make_model("rigid"))
    for t in range(4):
        assert np.allclose(models[t][:3, 3], np.array([-5.0, 2.0, -1.0]) * t, atol=1e-9)
    assert info.error < 1e-9
