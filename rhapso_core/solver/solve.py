"""The global solve: links in, one correction affine per view out.

Outlier handling (``SolverParams.method``):

* ``one_round``: solve once with every link.
* ``iterative`` (BigStitcher's "iterative dropping of bad links"): solve; while
  ``mean * relative_threshold < max`` (with ``max > 0.75``) or
  ``mean > absolute_threshold`` (mean / max over tiles of each tile's mean match
  distance), remove the worst connection and solve again. The worst connection
  is the pair of views holding the largest single match distance (all labels
  between the two views go together, as in BigStitcher, which drops the whole
  tile connection); a connection whose removal would split its component (and
  so also one that is a tile's last) is never removed.
* ``two_round``: ``iterative``, then every group of views connected by the
  remaining links moves as one: groups are linked by "weak" links made from
  the views' metadata, the 8 corners of the overlap of two views' current
  world boxes (views of the same timepoint in different groups), each corner
  mapped through the first-round correction of either view. Solving these with
  the groups containing a fixed view held keeps a view without matches where
  its metadata puts it relative to its neighbours.

Gauge: the fixed views (default: the first view of each timepoint) keep their
registration; any connected component without one gets its first view
(lowest ``(timepoint, setup)``) fixed as well, reported as ``gauge_fixed_views``.
Views without usable links keep the identity correction (one_round /
iterative). Everything is ordered by view id and link order, so the same input
gives the same output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.models import Model
from rhapso_core.planar import Planarity, choose_model, planarity
from rhapso_core.solver.graph import TileLink, components, mean_link_distances
from rhapso_core.solver.iterative import MatchSet, optimise_iterative
from rhapso_core.solver.params import SolverParams
from rhapso_core.solver.planar import flatten_links, from_plane_frame, plane_frame, to_plane_frame
from rhapso_core.solver.records import Link, LinkResidual, SolveReport, SolveResult, SolverInputError, ViewId
from rhapso_core.solver.select import select_model
from rhapso_core.solver.sparse import optimise_sparse

__all__ = ["solve", "metadata_weak_links", "solver_model"]

# BigStitcher's SimpleIterativeConvergenceStrategy.minMaxError: below this max error, never drop links.
_MIN_MAX_ERROR = 0.75


def solver_model(params: SolverParams, plane: Planarity | None) -> tuple[Model, str]:
    """The model every view's correction is fitted with, and the optimiser that can fit it.

    Coplanar matches (``plane.planar``) get the in-plane model about the plane's normal;
    the sparse solver then works in the plane's frame (:mod:`rhapso_core.solver.planar`).
    """
    model = choose_model(params.model, params.effective_lambda(), "rigid", plane)
    return model, params.resolved_solver()


def _core(n, links, fixed, params, solver, init=None, model: Model | None = None, plane: Planarity | None = None):
    """Gauge-fix components without a fixed tile, then run the chosen optimiser."""
    fixed = np.array(fixed, dtype=bool)
    gauge = []
    if links:
        labels = components(n, links)
        linked = np.zeros(n, dtype=bool)
        for lk in links:
            linked[lk.ia] = linked[lk.ib] = True
        for lab in np.unique(labels[linked]):
            members = np.flatnonzero((labels == lab) & linked)
            if not np.any(fixed[members]):
                fixed[members[0]] = True
                gauge.append(int(members[0]))
    lam = params.effective_lambda()
    if solver == "sparse" and plane is not None and plane.planar and links:
        frame = plane_frame(plane, links)
        init_p = None if init is None else to_plane_frame(np.asarray(init, dtype=np.float64), frame)
        models, info = optimise_sparse(n, flatten_links(links, frame), fixed, params.model, lam, init=init_p)
        models = from_plane_frame(models, frame)
        if init is not None:
            models[fixed] = np.asarray(init, dtype=np.float64)[fixed]
    elif solver == "sparse":
        models, info = optimise_sparse(n, links, fixed, params.model, lam, init=init)
    else:
        models, info = optimise_iterative(
            n,
            links,
            fixed,
            model if model is not None else choose_model(params.model, lam),
            damp=params.damp,
            max_iterations=params.max_iterations,
            max_allowed_error=params.max_allowed_error,
            max_plateauwidth=params.max_plateauwidth,
            init=init,
        )
    return models, info, gauge


def _thresholds_met(avg: float, mx: float, params: SolverParams) -> bool:
    bad = (avg * params.relative_threshold < mx and mx > _MIN_MAX_ERROR) or avg > params.absolute_threshold
    return not bad


def _worst_removable_pair(n, links, models):
    """Index pair (ia, ib) of the connection with the largest match distance whose removal keeps components whole."""
    _, mx = mean_link_distances(models, links)
    pair_score: dict[tuple[int, int], float] = {}
    for lk, m in zip(links, mx):
        key = (lk.ia, lk.ib)
        pair_score[key] = max(pair_score.get(key, -np.inf), float(m))
    n_before = len(np.unique(components(n, links)))
    for key in sorted(pair_score, key=lambda k: (-pair_score[k], k)):
        rest = [lk for lk in links if (lk.ia, lk.ib) != key]
        if len(np.unique(components(n, rest))) == n_before:
            return key
    return None


def _solve_with_removal(n, links, fixed, params, solver, remove, model=None, plane=None):
    """Solve; if ``remove``, drop worst connections until the thresholds hold. Returns models, kept ids, info."""
    active = list(range(len(links)))
    removed: list[int] = []
    iterations, solves = 0, 0
    gauge: list[int] = []
    while True:
        current = [links[k] for k in active]
        models, info, gauge = _core(n, current, fixed, params, solver, model=model, plane=plane)
        iterations += info.iterations
        solves += 1
        avg, mx = MatchSet(n, current).error(models)
        ok = _thresholds_met(avg, mx, params)
        if not remove or ok:
            break
        pair = _worst_removable_pair(n, current, models)
        if pair is None:
            break
        removed += [k for k in active if (links[k].ia, links[k].ib) == pair]
        active = [k for k in active if (links[k].ia, links[k].ib) != pair]
    converged = info.converged and (ok or not remove)
    return models, active, removed, gauge, iterations, solves, converged


def metadata_weak_links(
    tiles: Sequence[ViewId],
    groups: np.ndarray,
    boxes: np.ndarray,
    models: np.ndarray,
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Weak links between views of the same timepoint in different groups whose boxes overlap.

    Parameters
    ----------
    tiles : sequence of ViewId
        Views, in tile-index order.
    groups : (T,) int
        Group (connected component) of each view.
    boxes : (T, 2, 3)
        World bounding box ``(min_xyz, max_xyz)`` of each view under its current registration.
    models : (T, 4, 4)
        First-round correction of each view (world -> world).

    Returns
    -------
    list of (view index u, view index v, (8, 3) corners through M_u, (8, 3) corners through M_v)
    """
    out = []
    tp = np.array([t[0] for t in tiles])
    for u in range(len(tiles)):
        v = np.arange(u + 1, len(tiles))
        v = v[(tp[v] == tp[u]) & (groups[v] != groups[u])]
        if v.size == 0:
            continue
        lo = np.maximum(boxes[u, 0], boxes[v, 0])
        hi = np.minimum(boxes[u, 1], boxes[v, 1])
        ok = np.all(hi > lo, axis=1)
        for k in np.flatnonzero(ok):
            corners = transforms.box_corners(lo[k], hi[k])
            out.append((u, int(v[k]), transforms.apply(models[u], corners), transforms.apply(models[v[k]], corners)))
    return out


def _second_round(tiles, active_links, fixed_user, views, models, params, solver, model=None, plane=None):
    n = len(tiles)
    labels = components(n, active_links)
    # Group ids in order of each group's first view (deterministic).
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first, kind="stable")
    remap = np.empty(order.size, dtype=np.int64)
    remap[np.unique(labels)[order]] = np.arange(order.size)
    groups = remap[labels]
    boxes = np.empty((n, 2, 3))
    for i, v in enumerate(tiles):
        if v not in views:
            raise SolverInputError(f"method two_round needs the box of view {v} (missing from views)")
        affine, size = views[v]
        lo, hi = transforms.view_bounding_box(np.asarray(affine, dtype=np.float64), size)
        boxes[i] = lo, hi
    weak = metadata_weak_links(tiles, groups, boxes, models)
    n_groups = int(groups.max()) + 1 if n else 0
    group_links = [TileLink(int(groups[u]), int(groups[v]), pu, pv, np.ones(len(pu))) for u, v, pu, pv in weak]
    group_links.sort(key=lambda lk: (min(lk.ia, lk.ib), max(lk.ia, lk.ib)))
    fixed_groups = np.zeros(n_groups, dtype=bool)
    fixed_groups[groups[fixed_user]] = True
    gmodels, info, gauge = _core(n_groups, group_links, fixed_groups, params, solver, model=model, plane=plane)
    final = np.einsum("tij,tjk->tik", gmodels[groups], models)
    return final, len(weak), n_groups, info


def _prepare_links(links: Sequence[Link], params: SolverParams):
    """Canonical order (a < b), label weights applied, usable ones separated from dropped ones."""
    canon = []
    for k, lk in enumerate(links):
        if not isinstance(lk, Link):
            raise SolverInputError(f"links[{k}] is a {type(lk).__name__}, not a solver Link")
        w = lk.weight * params.label_weights.get(lk.label, 1.0)
        if lk.a < lk.b:
            canon.append((lk.a, lk.b, lk.label, k, lk.pa, lk.pb, w))
        else:
            canon.append((lk.b, lk.a, lk.label, k, lk.pb, lk.pa, w))
    canon.sort(key=lambda c: (c[0], c[1], c[2], c[3]))
    usable = [c[4].shape[0] >= params.min_matches and float(c[6].sum()) > 0 for c in canon]
    return canon, usable


def solve(
    links: Sequence[Link],
    params: SolverParams | None = None,
    views: Mapping[ViewId, tuple[np.ndarray, Sequence[float]]] | None = None,
    validation_links: Sequence[Link] | None = None,
) -> SolveResult:
    """Globally optimise the views' registrations from their pairwise matches.

    Parameters
    ----------
    links : sequence of Link
        Matches between pairs of views, in world coordinates under the views'
        current registrations (x, y, z; normally full-resolution voxels).
    params : SolverParams, optional
        Model, outlier handling, optimiser settings (BigStitcher defaults).
    views : mapping ViewId -> (view_to_world (4, 4), size_xyz), optional
        Every view's current registration and size (x, y, z voxels). Views
        listed here without links get an identity correction (one_round,
        iterative) or are placed by their metadata overlaps (two_round, which
        requires this mapping for every view).
    validation_links : sequence of Link, optional
        What an automatic model or lambda (:mod:`rhapso_core.solver.select`) is chosen
        with, when not ``links`` themselves (default): measurements with independent
        errors per match. The solve then uses ``links`` with the chosen model.

    Returns
    -------
    SolveResult
        ``corrections[v]``: a world -> world 4x4 affine per view to prepend to
        its registration (so ``M_a(pa) ~ M_b(pb)`` for every used link), the
        transform name, and the report.

    Examples
    --------
    >>> import numpy as np
    >>> from rhapso_core.solver import Link, SolverParams, solve
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 100, (20, 3))
    >>> res = solve([Link((0, 0), (0, 1), p, p + [5.0, 0, 0])], SolverParams(model="translation"))
    >>> np.round(res.corrections[(0, 1)][:3, 3], 6).tolist()
    [-5.0, 0.0, 0.0]
    """
    params = SolverParams() if params is None else params
    views = {} if views is None else {(int(v[0]), int(v[1])): val for v, val in views.items()}
    choice, transform_name = None, None
    if not params.is_resolved:
        choice = select_model(links if validation_links is None else validation_links, params, views)
        # The name keeps the round's model (what was asked) and says what the validation chose.
        asked = params.max_model if params.model == "auto" else params.model
        chosen = choice.model + (f", lambda={choice.lambda_value:.2f}" if choice.model == "affine" else "")
        transform_name = f"rhapso {asked} solve (validated: {chosen})"
        params = params.model_copy(update={"model": choice.model, "lambda_value": choice.lambda_value})
    canon, usable = _prepare_links(links, params)
    tiles = sorted({c[0] for c in canon} | {c[1] for c in canon} | set(views))
    index = {v: i for i, v in enumerate(tiles)}
    n = len(tiles)

    if params.fixed_views is None:
        fixed_views = sorted({min(v for v in tiles if v[0] == tp) for tp in {v[0] for v in tiles}})
    else:
        fixed_views = sorted({(int(v[0]), int(v[1])) for v in params.fixed_views})
        for v in fixed_views:
            if v not in index:
                raise SolverInputError(f"fixed_views: view {v} is not among the solved views")
    fixed = np.zeros(n, dtype=bool)
    fixed[[index[v] for v in fixed_views]] = True

    all_links = [TileLink(index[c[0]], index[c[1]], c[4], c[5], c[6]) for c in canon]
    use_ids = [k for k, u in enumerate(usable) if u]
    use_links = [all_links[k] for k in use_ids]
    if use_links:
        plane = planarity(
            np.vstack([x for lk in use_links for x in (lk.pa, lk.pb)]),
            [np.asarray(views[v][0], dtype=np.float64) for v in tiles if v in views],
        )
    else:
        plane = None
    model, solver = solver_model(params, plane)

    if params.method == "two_round" and n and any(v not in views for v in tiles):
        missing = next(v for v in tiles if v not in views)
        raise SolverInputError(f"method two_round needs the box of view {missing} (missing from views)")

    models, kept, removed, gauge, iterations, solves, converged = _solve_with_removal(
        n, use_links, fixed, params, solver, remove=params.method != "one_round", model=model, plane=plane
    )
    rounds = [{"round": 1, "solves": solves, "iterations": iterations, "removed_links": len(removed)}]
    weak_count = 0
    kept_links = [use_links[k] for k in kept]
    if params.method == "two_round":
        models, weak_count, n_groups, info2 = _second_round(tiles, kept_links, fixed, views, models, params, solver, model, plane)
        iterations += info2.iterations
        solves += 1
        converged = converged and info2.converged
        rounds.append({"round": 2, "groups": n_groups, "weak_links": weak_count, "iterations": info2.iterations})

    identity = np.tile(np.eye(4), (n, 1, 1))
    mean_b, max_b = mean_link_distances(identity, all_links)
    mean_a, max_a = mean_link_distances(models, all_links)
    status = ["dropped"] * len(canon)
    for k in use_ids:
        status[k] = "used"
    for k in removed:
        status[use_ids[k]] = "removed"
    residuals = [
        LinkResidual(c[0], c[1], c[2], int(c[4].shape[0]), mean_b[k], max_b[k], mean_a[k], max_a[k], status[k])
        for k, c in enumerate(canon)
    ]
    ms = MatchSet(n, kept_links)
    tile_d = ms.tile_distances(models)
    tile_errors = {tiles[i]: float(tile_d[i]) for i in range(n) if ms.count[i] > 0}
    final_error, max_error = ms.error(models)
    report = SolveReport(
        model=params.model,
        lambda_value=params.effective_lambda(),
        method=params.method,
        solver=solver,
        fixed_views=fixed_views,
        gauge_fixed_views=[tiles[i] for i in gauge],
        tile_errors=tile_errors,
        links=residuals,
        removed_links=[(canon[use_ids[k]][0], canon[use_ids[k]][1], canon[use_ids[k]][2]) for k in removed],
        iterations=int(iterations),
        solves=int(solves),
        final_error=final_error,
        max_error=max_error,
        converged=bool(converged),
        unconnected_views=[tiles[i] for i in range(n) if ms.count[i] == 0],
        weak_links=weak_count,
        rounds=rounds,
        model_selection=None if choice is None else choice.to_dict(),
        plane=None if plane is None else plane.to_dict(),
    )
    corrections = {v: models[i].copy() for i, v in enumerate(tiles)}
    return SolveResult(corrections=corrections, transform_name=transform_name or params.transform_name(), report=report)
