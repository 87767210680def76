"""The direct sparse solver and the iterative optimiser give the same answer.

Tolerances (max distance between the two solutions over every view's box):
translation 1e-3 voxel with BigStitcher's default stopping rule; regularised
affine 0.01 voxel when the iterative optimiser runs to convergence (BigStitcher's
plateau rule stops it earlier, where it can still be a few tenths of a voxel
away along weakly constrained directions).
"""

import numpy as np

from rhapso_core import transforms
from rhapso_core.solver import SolverParams, solve
from rhapso_core.solver.synthetic import make_grid


def _max_diff(g, c1, c2):
    worst = 0.0
    for v, (nominal, size) in g.views.items():
        corners = transforms.apply(nominal, transforms.box_corners([0, 0, 0], np.asarray(size) - 1.0))
        d = np.linalg.norm(transforms.apply(c1[v], corners) - transforms.apply(c2[v], corners), axis=1)
        worst = max(worst, float(d.max()))
    return worst


def test_translation_sparse_equals_iterative(grids):
    g = grids["translation"]
    base = dict(model="translation", method="one_round")
    sparse = solve(g.links, SolverParams(solver="sparse", **base), g.views)
    iterative = solve(g.links, SolverParams(solver="iterative", **base), g.views)
    assert iterative.report.converged and iterative.report.iterations > 200
    assert _max_diff(g, sparse.corrections, iterative.corrections) < 1e-3


def test_regularised_affine_sparse_equals_converged_iterative():
    g = make_grid((3, 2, 1), "affine", overlap=0.25, matches_per_link=100, seed=8)
    base = dict(model="affine", lambda_value=0.1, method="one_round")
    sparse = solve(g.links, SolverParams(solver="sparse", **base), g.views)
    assert sparse.report.converged
    # max_allowed_error=0 disables the plateau stop, so the optimiser runs all iterations.
    iterative = solve(
        g.links, SolverParams(solver="iterative", max_allowed_error=0.0, max_iterations=3000, **base), g.views
    )
    assert iterative.report.iterations == 3000
    diff = _max_diff(g, sparse.corrections, iterative.corrections)
    assert diff < 0.01, f"sparse vs converged iterative affine differ by {diff:.4f} voxel"
    # And with BigStitcher's default stopping they agree on the residual level (mean tile error).
    default = solve(g.links, SolverParams(solver="iterative", **base), g.views)
    assert abs(default.report.final_error - sparse.report.final_error) < 0.01
