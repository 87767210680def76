"""The iterative optimiser with mpicbg ``TileConfiguration`` semantics.

Semantics kept from mpicbg (read from its ``TileConfiguration``, ``Tile`` and
``ErrorStatistic``):

* **Pre-alignment** (``preAlign``): starting from the fixed tiles, every tile
  not yet placed is fitted to the first already placed neighbour (breadth first)
  using only the matches between the two, if there are at least the model's
  minimum number of them.
* **Iteration**: every non-fixed tile is fitted to its matches' current targets
  (the other tile's current world points) and its world points move by ``damp``
  toward the new fit: ``W <- W + damp * (M(local) - W)``. Because a tile's world
  points all move with the same affine blend, they are stored as one "effective"
  affine per tile. Tiles are updated Gauss-Seidel style (each fit sees the
  neighbours' latest state), in colour order: tiles of one colour share no link,
  so one batched ``fit_batch`` per colour equals fitting them one after another.
* **Error**: a tile's distance is the unweighted mean distance of its matches;
  the configuration error is the mean over tiles (tiles with links).
* **Stopping** (``optimizeSilently``): after iteration ``i`` (0-based), once
  ``i > max_plateauwidth``, stop when the error is ``<= max_allowed_error`` and
  ``|slope(d)| <= 1e-4`` for every ``d = w, w/2, ..., 1`` where
  ``slope(d) = (e_i - e_{i-d}) / d``; always stop after ``max_iterations``.

Fits use :mod:`rhapso_core.models` on moment-preserving compressed matches
(:func:`~rhapso_core.solver.graph.link_moment_points`), which gives the same
fits as the full match sets at a fraction of the cost; errors use all matches.
Models with compiled fits (:func:`rhapso_core.models.compiled_spec`) run each sweep as one
compiled call (:mod:`rhapso_core.solver._sweep`); other models (in-plane, extensions) run the
same sweep through ``fit_batch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from rhapso_core.models import Model, compiled_spec
from rhapso_core.solver._sweep import pack_groups, sweep
from rhapso_core.solver.graph import HalfMatches, TileLink, apply_batch, greedy_colouring

__all__ = ["OptimiserInfo", "MatchSet", "prealign", "optimise_iterative"]

_SLOPE_TOL = 1e-4


@dataclass(frozen=True)
class OptimiserInfo:
    iterations: int
    converged: bool
    error: float


@numba.njit(cache=True, nogil=True)
def _match_distances(eff, fa, fb, la, lb, out):  # pragma: no cover - compiled
    for r in range(fa.shape[0]):
        a = la[r]
        b = lb[r]
        s = 0.0
        for i in range(3):
            xa = eff[a, i, 0] * fa[r, 0] + eff[a, i, 1] * fa[r, 1] + eff[a, i, 2] * fa[r, 2] + eff[a, i, 3]
            xb = eff[b, i, 0] * fb[r, 0] + eff[b, i, 1] * fb[r, 1] + eff[b, i, 2] * fb[r, 2] + eff[b, i, 3]
            s += (xa - xb) * (xa - xb)
        out[r] = np.sqrt(s)


@numba.njit(cache=True, nogil=True)
def _tile_distances(eff, fa, fb, la, lb, count, d, out):  # pragma: no cover - compiled
    """Per tile mean match distance into ``out`` (NaN without matches); the sums run in match order
    per side, then side a + side b (what ``np.bincount`` of each side added gives)."""
    _match_distances(eff, fa, fb, la, lb, d)
    n = out.shape[0]
    sa = np.zeros(n)
    sb = np.zeros(n)
    for r in range(d.shape[0]):
        sa[la[r]] += d[r]
    for r in range(d.shape[0]):
        sb[lb[r]] += d[r]
    for t in range(n):
        out[t] = (sa[t] + sb[t]) / count[t] if count[t] > 0 else np.nan


class MatchSet:
    """All matches of a set of links, flattened, for fast error evaluation."""

    def __init__(self, n_tiles: int, links: list[TileLink]):
        self.n_tiles = n_tiles
        if links:
            self.fa = np.ascontiguousarray(np.concatenate([lk.pa for lk in links]))
            self.fb = np.ascontiguousarray(np.concatenate([lk.pb for lk in links]))
            self.la = np.concatenate([np.full(lk.n, lk.ia, dtype=np.int64) for lk in links])
            self.lb = np.concatenate([np.full(lk.n, lk.ib, dtype=np.int64) for lk in links])
        else:
            self.fa = self.fb = np.zeros((0, 3))
            self.la = self.lb = np.zeros(0, dtype=np.int64)
        self.count = np.bincount(self.la, minlength=n_tiles) + np.bincount(self.lb, minlength=n_tiles)
        self._has = self.count > 0
        self._d = np.empty(self.fa.shape[0])

    def tile_distances(self, models: np.ndarray) -> np.ndarray:
        """Per tile mean match distance (NaN for tiles without matches)."""
        out = np.empty(self.n_tiles)
        # One compiled call: the optimiser evaluates this every iteration.
        _tile_distances(np.ascontiguousarray(models, dtype=np.float64), self.fa, self.fb, self.la, self.lb,
                        self.count, self._d, out)
        return out

    def error(self, models: np.ndarray) -> tuple[float, float]:
        """(mean, max) over tiles with matches of the tile distances; (0, 0) if none."""
        d = self.tile_distances(models)
        d = d[self._has]
        if d.size == 0:
            return 0.0, 0.0
        return float(d.mean()), float(d.max())


def prealign(
    n_tiles: int, links: list[TileLink], fixed: np.ndarray, model: Model, init: np.ndarray | None = None
) -> np.ndarray:
    """Breadth-first pre-alignment from the fixed tiles (mpicbg ``preAlign``).

    Returns ``(n_tiles, 4, 4)`` models; fixed and unreachable tiles keep ``init``
    (identity by default). Each placed tile is fitted, with ``model``, to the
    matches it shares with the already placed tile that reached it first.
    """
    models = np.tile(np.eye(4), (n_tiles, 1, 1)) if init is None else np.array(init, dtype=np.float64)
    pair_links: dict[tuple[int, int], list[TileLink]] = {}
    nbrs: list[set[int]] = [set() for _ in range(n_tiles)]
    for lk in links:
        pair_links.setdefault((lk.ia, lk.ib), []).append(lk)
        pair_links.setdefault((lk.ib, lk.ia), []).append(lk)
        nbrs[lk.ia].add(lk.ib)
        nbrs[lk.ib].add(lk.ia)
    aligned = np.array(fixed, dtype=bool).copy()
    queue = [int(t) for t in np.flatnonzero(aligned)]
    head = 0
    while head < len(queue):
        ref = queue[head]
        head += 1
        for t in sorted(nbrs[ref]):
            if aligned[t]:
                continue
            own, other, w = [], [], []
            for lk in pair_links[(t, ref)]:
                mine, theirs = (lk.pa, lk.pb) if lk.ia == t else (lk.pb, lk.pa)
                own.append(mine)
                other.append(theirs)
                w.append(lk.w)
            p = np.concatenate(own)
            if p.shape[0] < model.min_matches:
                continue
            q = apply_batch(models[ref], np.concatenate(other))
            fit = model.fit_batch(p[None], q[None], np.concatenate(w)[None])[0]
            if not np.all(np.isfinite(fit)):
                continue
            models[t] = fit
            aligned[t] = True
            queue.append(t)
    return models


def optimise_iterative(
    n_tiles: int,
    links: list[TileLink],
    fixed: np.ndarray,
    model: Model,
    *,
    damp: float = 1.0,
    max_iterations: int = 10000,
    max_allowed_error: float = np.inf,
    max_plateauwidth: int = 200,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, OptimiserInfo]:
    """Pre-align, then optimise a tile configuration (see the module docstring).

    Parameters
    ----------
    n_tiles : int
        Number of tiles; tiles are indexed ``0 .. n_tiles - 1``.
    links : list of TileLink
        The links (world points, per-match weights).
    fixed : (n_tiles,) bool
        Tiles whose model is kept (``init`` or identity).
    model : rhapso_core.models.Model
        The model each tile is fitted with.
    damp, max_iterations, max_allowed_error, max_plateauwidth
        As in :class:`~rhapso_core.solver.params.SolverParams`.
    init : (n_tiles, 4, 4), optional
        Starting models (identity by default); pre-alignment overrides them
        for every tile it reaches.

    Returns
    -------
    models : (n_tiles, 4, 4)
        World -> world correction per tile.
    info : OptimiserInfo
        Iterations run, whether the plateau rule stopped it, the final error.
    """
    fixed = np.asarray(fixed, dtype=bool)
    models = prealign(n_tiles, links, fixed, model, init)
    matches = MatchSet(n_tiles, links)
    free = ~fixed
    if not links or not np.any(free & (matches.count > 0)):
        err, _ = matches.error(models)
        return models, OptimiserInfo(0, True, err)
    halves = HalfMatches(n_tiles, links, free, greedy_colouring(n_tiles, links))
    models = np.ascontiguousarray(models, dtype=np.float64)
    eff = models.copy()
    spec = compiled_spec(model)
    if spec is not None:
        # The compiled fits: the whole sweep in one call (same order, fits and update as below).
        pk = pack_groups(halves.groups)
        main, reg, lam = spec
        damp_f = float(damp)

        def step():
            sweep(eff, models, pk.tiles, pk.p, pk.w, pk.pp, pk.ptile, pk.counts, pk.starts, main, reg, lam, damp_f)
    else:
        def step():
            for tiles, p, w, pp, ptile in halves.groups:
                q = apply_batch(eff[ptile], pp)
                fit = model.fit_batch(p, q, w)
                ok = np.all(np.isfinite(fit), axis=(1, 2))
                t = tiles[ok]
                models[t] = fit[ok]
                eff[t] += damp * (fit[ok] - eff[t])

    history: list[float] = []
    i = 0
    proceed = i < max_iterations
    converged = False
    while proceed:
        step()
        err, _ = matches.error(eff)
        history.append(err)
        if i > max_plateauwidth:
            proceed = err > max_allowed_error
            d = max_plateauwidth
            while not proceed and d >= 1:
                proceed = abs((history[-1] - history[-1 - d]) / d) > _SLOPE_TOL
                d //= 2
            converged = not proceed
        i += 1
        proceed = proceed and i < max_iterations
    return models, OptimiserInfo(i, converged, history[-1])
