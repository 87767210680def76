"""Global translation solve of phase-correlation links with the project's solver.

Each usable link becomes, as in BigStitcher (ImageCorrelationPointMatchCreator), 8 point
matches: the corners ``c`` of the compared world overlap box on a's side and ``c - shift`` on
b's, so that the solve finds corrections with ``M_a(c) = M_b(c - shift)``. Link removal is the
solver's own (``SolverParams.method``, relative / absolute thresholds), on these matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.solver import Link, SolveResult, SolverParams, solve
from rhapso_core.stitching.records import PhaseLink

__all__ = ["PHASE_LABEL", "solver_links", "solve_phase_links", "anchor_links"]

#: Label of phase-correlation links in the solver's report.
PHASE_LABEL = "phase-correlation"


def solver_links(links: Sequence[PhaseLink]) -> list[Link]:
    """Solver links (8 box-corner matches each, x y z world) of the ``ok`` phase links."""
    out = []
    for k in links:
        if not k.ok:
            continue
        corners = transforms.box_corners(k.box_min_xyz, k.box_max_xyz)
        out.append(Link(k.view_a, k.view_b, corners, corners - np.asarray(k.shift_xyz), label=PHASE_LABEL))
    return out


def solve_phase_links(
    links: Sequence[PhaseLink], params: SolverParams | None = None,
    views: Mapping[tuple[int, int], tuple[np.ndarray, Sequence[float]]] | None = None,
) -> SolveResult:
    """Translation corrections per view (world -> world 4x4) from the usable links.

    ``params``' model is forced to translation (a shift constrains nothing else) and
    ``min_matches`` to at most 8 (one link is 8 corner matches). ``views``: as
    :func:`rhapso_core.solver.solve` (views without links keep an identity correction).
    """
    params = SolverParams(model="translation") if params is None else params
    params = params.model_copy(update={"model": "translation", "lambda_value": 0.0,
                                       "min_matches": min(params.min_matches, 8)})
    return solve(solver_links(links), params, views=views)


def anchor_links(
    links: Sequence[PhaseLink], then: Mapping[tuple[int, int], np.ndarray], now: Mapping[tuple[int, int], np.ndarray],
    weights: Sequence[float] | None = None,
) -> list[Link]:
    """The ``ok`` phase links re-expressed under later registrations, for a later round's solve.

    ``then``: each view's voxel -> world affine when the links were measured; ``now``: the
    current ones. The correction a view received since, ``now @ inv(then)``, maps the link's
    points: a later point round solved with these keeps the phase-correlation constraint on
    pairs whose interest points are too few to match (or match badly). ``weights``: per link, the
    weight of each of its 8 corner matches (default 1).
    """
    out = []
    for i, k in enumerate(links):
        if not k.ok or not all(v in then and v in now for v in (k.view_a, k.view_b)):
            continue
        c = transforms.box_corners(k.box_min_xyz, k.box_max_xyz)
        ca = np.asarray(now[k.view_a]) @ transforms.invert(np.asarray(then[k.view_a]))
        cb = np.asarray(now[k.view_b]) @ transforms.invert(np.asarray(then[k.view_b]))
        out.append(Link(k.view_a, k.view_b, transforms.apply(ca, c),
                        transforms.apply(cb, c - np.asarray(k.shift_xyz)),
                        weight=1.0 if weights is None else float(weights[i]), label=PHASE_LABEL))
    return out
