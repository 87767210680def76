"""Choosing the solve's model and affine regularisation per dataset by held-out validation.

Two steps, both scoring candidates by how well a solve without some matches predicts them
(the held-out error of a match is ``|M_a(pa) - M_b(pb)|`` under that solve's corrections,
world units):

1. **The model**, by k-fold over correspondences: every link's matches are dealt at random
   (fixed seed) into ``validation_folds`` folds; every candidate (model, lambda) is solved on
   the other folds and predicts the left-out ones. A more flexible model fits the training
   matches at least as well, but only predicts left-out matches better when the data really
   deviate that way; an over-flexible one fits noise and predicts worse.
2. **The lambda**, where step 1 chose an affine: whole links are held out, one at a time (up
   to ``validation_pairs``; see ``_pair_folds``), and every affine candidate is solved on all
   the other links and predicts the held-out link's matches. Why: an overlap's matches lie in
   one slab, so matches held out of a link that stays in the fit are predicted from the same
   slab and never show how a tile's affine extrapolates across the tile, which is where
   lambda matters (measured: on 3 x 2 tiles of 256 voxels with 1 % affine truth, step 1
   alone chose lambda 0.02, 0.35 voxel RMS at the tile corners, against 0.19-0.27 for lambda
   0.001-0.005; on 3 x 3 and 4 x 4 single-plane mosaics, 0.29-0.35 pixel against
   0.09-0.23). A held-out overlap is predicted through the tiles' other overlaps, on their
   far sides: the extrapolation the result depends on, for any tile grid or overlap graph.
   Where no link can be held out (two tiles, a strip: every link a bridge) step 1's lambda
   stays.

Whole links choose the lambda only, not the model: a tile that loses one of its two or three
overlaps is placed by a single slab, whose rotation is poorly determined from the slab's
narrow width, so on a 3 x 2 grid of real texture translation predicted held-out links better
than rigid and was chosen (0.83 voxel RMS at the end, against 0.60); k-fold over matches
keeps every overlap in every fold.

Held-out matches only test the overlaps: a model free to bend where no match
constrains it (unregularised affine over many tiles) can predict them best and
still be far off elsewhere (measured: 75 voxels on a 10 x 10 x 2 rigid grid). So
each candidate's score adds the spread of its tile placements between the fold
solutions (RMS distance of each view's box corners from their mean over folds,
world units); in step 2 after removing from each fold's placements the global affine
that best maps them onto the mean: no overlap can determine a global affine of the
whole mosaic (the score against truth removes it too), and with it in, the spread of a
free affine about the fixed tile outweighed the bias of a stiff one.

Rule: score = held-out mean squared error + spread squared; the lowest is the best.
Step 1 chooses the *simplest* candidate (translation < rigid < affine with lambda from
large to small) whose score is not above the best's by more than one standard error of
the paired difference of squared held-out errors (matches compared one by one under both
candidates), so rigid data stay rigid (an affine fit does not predict better) and
distorted data get their affine. Step 2 takes the *least regularised* lambda within one
standard error of the best: that the data need an affine is settled by step 1, and holding
out whole links is itself biased toward stiffness (each fold's solves lack an overlap the
final solve has), so a tie goes the other way. Its standard error treats a held-out link as
one unit, since its matches share the errors of one prediction. Measured: on a 4 x 4
single-plane mosaic with 1 % affine truth, lambda 0.001 and 0 scored 0.1491 and 0.1494
(one standard error 0.001 in squared units: a tie, decided by the placement spread), and
ended at 0.197 and 0.117 pixel RMS against the truth.

Held-out matches count only where no candidate's solve of that fold removed
their link as an outlier (so every candidate is judged on the same matches).
Folds are solved with the configured outlier handling (``two_round`` validates as
``iterative``: its metadata placement predicts no matches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import zlib

import numpy as np

from rhapso_core import transforms
from rhapso_core.model_registry import model_names
from rhapso_core.solver.params import SolverParams
from rhapso_core.solver.records import Link, ViewId

__all__ = ["ModelChoice", "candidates", "select_model"]

_Z_LAMBDA = 1.0  # step 2: the least regularised lambda within one standard error (module docstring)
_Z = 1.0  # standard errors a simpler model may trail the best by (the one-standard-error rule)


@dataclass(frozen=True)
class ModelChoice:
    """The chosen (model, lambda) and every candidate's held-out score."""

    model: str
    lambda_value: float
    reason: str
    folds: int
    n_held_out: int
    scores: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "lambda_value": self.lambda_value, "reason": self.reason, "folds": self.folds,
                "n_held_out": self.n_held_out, "scores": self.scores}


def candidates(params: SolverParams) -> list[tuple[str, float]]:
    """(model, lambda) pairs to validate, simplest first."""
    if params.model == "auto":
        names = model_names()  # simplest first
        models = names[: names.index(params.max_model) + 1]
    else:
        models = [params.model]
    out = []
    for m in models:
        if m not in ("translation", "affine") and params.solver == "sparse":
            continue  # the sparse solver is linear in translation and affine only: others need the iterative one
        if m != "affine":
            out.append((m, 0.0))
            continue
        lams = params.lambda_candidates if params.lambda_value == "auto" else [params.lambda_value]
        for lam in sorted(set(float(x) for x in lams), reverse=True):
            if params.solver == "sparse" and lam >= 1.0:
                continue
            out.append(("affine", lam))
    return out


def _fold_ids(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.empty(n, dtype=np.int64)
    ids[rng.permutation(n)] = np.arange(n) % k
    return ids


def _key(lk: Link) -> tuple[ViewId, ViewId, str]:
    return (min(lk.a, lk.b), max(lk.a, lk.b), lk.label)


def select_model(
    links: Sequence[Link],
    params: SolverParams,
    views: Mapping[ViewId, tuple[np.ndarray, Sequence[float]]] | None = None,
    seed: int = 0,
) -> ModelChoice:
    """Validate every candidate of ``params`` (see the module docstring) and return the choice."""
    cands = candidates(params)
    fallback_lam = 0.1 if params.lambda_value == "auto" else float(params.lambda_value)
    if len(cands) == 1:
        m, lam = cands[0]
        return ModelChoice(m, lam, "the only candidate", 0, 0)
    label_w = params.label_weights
    links = _neighbourhood(links, params.validation_max_views)
    if views is not None:
        kept = {v for lk in links for v in (lk.a, lk.b)}
        views = {v: g for v, g in views.items() if v in kept}
    # Canonical link order and a seed per link: the choice does not depend on the order links come in.
    links = sorted(links, key=lambda lk: (_key(lk), lk.n))
    trained = [lk.n >= params.min_matches and float(np.sum(lk.weight)) * label_w.get(lk.label, 1.0) > 0
               for lk in links]
    # Trained-only labels are held out only where no other link can be (a round of image links alone).
    trained_only = set(params.validation_trained_only_labels)
    usable = list(trained)
    if any(ok and lk.label not in trained_only for lk, ok in zip(links, usable)):
        usable = [ok and lk.label not in trained_only for lk, ok in zip(links, usable)]
    k = params.validation_folds
    folds = []
    for lk, ok in zip(links, usable):
        a, b, label = _key(lk)
        rng = np.random.default_rng([seed, *a, *b, lk.n, zlib.crc32(label.encode())])
        if lk.units is None:
            held = ok and lk.n >= k * params.min_matches
            folds.append(_fold_ids(lk.n, k, rng) if held else None)
        else:  # matches measured together go to one fold: a unit is predicted from the others
            ids, unit_of = np.unique(lk.units, return_inverse=True)
            folds.append(_fold_ids(len(ids), k, rng)[unit_of] if ok and len(ids) >= 2 else None)
    if not any(f is not None for f in folds):
        m = cands[-1][0]
        lam = fallback_lam if m == "affine" else 0.0
        return ModelChoice(m, lam, f"no link has {k * params.min_matches} matches to validate with: "
                                   f"the most flexible model allowed", k, 0)
    first = _validate(links, params, views, cands, folds, k, by_pairs=False)
    if first is None:
        m = cands[-1][0]
        return ModelChoice(m, fallback_lam if m == "affine" else 0.0,
                           "every held-out link was removed as an outlier: the most flexible model allowed", k, 0)
    choice, reason, n_held, scores = first
    m, lam = cands[choice]
    scores = [dict(sc, held_out="matches") for sc in scores]
    affine = [c for c in cands if c[0] == "affine"]
    if m != "affine" or len(affine) < 2:
        return ModelChoice(m, float(lam), reason, k, n_held, scores)
    pair_fold = _pair_folds(links, usable, params.validation_pairs, seed, trained)
    if not any(f is not None for f in pair_fold):
        return ModelChoice(m, float(lam), reason + "; lambda: no link held out whole (validation_pairs is 0, or "
                                                   "every link is a bridge)",
                           k, n_held, scores)
    k2 = max(f for f in pair_fold if f is not None) + 1
    # A held-out link's matches all sit in its one fold; the other links are always trained on.
    pfolds = [None if f is None else np.full(lk.n, f, dtype=np.int64) for lk, f in zip(links, pair_fold)]
    second = _validate(links, params, views, affine, pfolds, k2, by_pairs=True, z=_Z_LAMBDA, least_first=True)
    if second is None:
        return ModelChoice(m, float(lam), reason + "; lambda: every held-out link was removed as an outlier",
                           k, n_held, scores)
    choice2, reason2, n_held2, scores2 = second
    lam = affine[choice2][1]
    return ModelChoice("affine", float(lam), f"model: {reason}; lambda: {reason2}", k2, n_held2,
                       scores + [dict(sc, held_out="links") for sc in scores2])


def _validate(links, params, views, cands, folds, k, by_pairs, z=None, least_first=False):
    """Score ``cands`` over ``k`` folds (``folds``: per link, each match's fold or None) and apply the
    one-standard-error rule: the first of ``cands`` (the last with ``least_first``) within ``z``
    standard errors of the best. Returns (choice index, reason, held-out matches, scores), or None where
    every held-out link was removed as an outlier."""
    from rhapso_core.solver.solve import solve  # the solve calls this module

    label_w = params.label_weights
    method = "iterative" if params.method == "two_round" else params.method
    sq: dict[int, list[np.ndarray]] = {i: [] for i in range(len(cands))}
    probes = _probe_points(links, views)
    placed: dict[int, list[np.ndarray]] = {i: [] for i in range(len(cands))}
    weights: list[np.ndarray] = []
    clusters: list[np.ndarray] = []  # the unit of the standard error each held-out match belongs to
    next_id = len(links)
    for f in range(k):
        train = []
        # Whole links held out: the pair's other links (an image check's or a phase round's link of the same
        # two views, never held out themselves) leave the fold too, or the pair would be predicted from its
        # own overlap instead of through its neighbours.
        held_pairs = ({frozenset((lk.a, lk.b)) for lk, ids in zip(links, folds) if ids is not None and (ids == f).any()}
                      if by_pairs else set())
        for lk, ids in zip(links, folds):
            if ids is None:
                if frozenset((lk.a, lk.b)) not in held_pairs:
                    train.append(lk)
            else:
                keep = ids != f
                if keep.any():
                    train.append(Link(lk.a, lk.b, lk.pa[keep], lk.pb[keep], lk.weight[keep], lk.label))
        fold_err, removed = {}, set()
        for i, (m, lam) in enumerate(cands):
            p = params.model_copy(update={"model": m, "lambda_value": lam, "method": method})
            res = solve(train, p, views)
            removed |= set(res.report.removed_links)
            fold_err[i] = res.corrections
            placed[i].append(np.concatenate([transforms.apply(res.corrections[v], q) for v, q in probes]))
        mask_w, per_cand, ids_c = [], {i: [] for i in fold_err}, []
        for j, (lk, ids) in enumerate(zip(links, folds)):
            if ids is None or _key(lk) in removed:
                continue
            out = ids == f
            if not out.any():
                continue
            mask_w.append(lk.weight[out] * label_w.get(lk.label, 1.0))
            # Whole links: a held-out link's matches share the errors of one prediction, so the link is
            # the unit of the standard error; matches held out of every link are independent draws.
            n_out = int(out.sum())
            ids_c.append(np.full(n_out, j) if by_pairs else next_id + np.arange(n_out))
            next_id += n_out
            for i, corr in fold_err.items():
                d = transforms.apply(corr[lk.a], lk.pa[out]) - transforms.apply(corr[lk.b], lk.pb[out])
                per_cand[i].append(np.sum(d * d, axis=1))
        if mask_w:
            weights.append(np.concatenate(mask_w))
            clusters.append(np.concatenate(ids_c))
            for i in per_cand:
                sq[i].append(np.concatenate(per_cand[i]))
    if not weights:
        return None
    w = np.concatenate(weights)
    unit_of = np.unique(np.concatenate(clusters), return_inverse=True)[1]
    err = {i: np.concatenate(v) for i, v in sq.items()}
    wsum = float(w.sum())
    mse = {i: float(np.sum(w * e) / wsum) for i, e in err.items()}
    spread = {i: _spread(np.stack(runs), gauge_free=by_pairs) for i, runs in placed.items()}

    z = _Z if z is None else z
    score = {i: mse[i] + spread[i] ** 2 for i in mse}
    best = min(score, key=lambda i: (score[i], i))
    scores, choice = [], None
    for i, (m, lam) in enumerate(cands):
        d = err[i] - err[best]
        mean_d = float(np.sum(w * d) / wsum)
        per_unit = np.bincount(unit_of, weights=w * (d - mean_d))
        se = float(np.sqrt(np.sum(per_unit ** 2)) / wsum)
        ok = score[i] - score[best] <= z * se
        scores.append({"model": m, "lambda_value": lam, "score": float(np.sqrt(score[i])),
                       "held_out_rms": float(np.sqrt(mse[i])),
                       "excess_mse": mean_d, "placement_spread": spread[i],
                       "standard_error": se, "within_noise_of_best": bool(ok)})
        if ok and (choice is None or least_first):
            choice = i
    b_m, b_lam = cands[best]
    best_txt = f"{b_m}" + (f" lambda={b_lam:g}" if b_m == "affine" else "")
    what = f"{k} held-out links" if by_pairs else f"{k} folds of matches"
    reason = (f"score {np.sqrt(score[choice]):.3g}: held-out RMS {np.sqrt(mse[choice]):.3g} over {len(w)} matches in "
              f"{what}, placement spread {spread[choice]:.3g}; "
              + ("the best" if choice == best else
                 f"the {'least regularised' if least_first else 'simplest'} within {z:g} standard errors of the "
                 f"best ({best_txt}, {np.sqrt(score[best]):.3g})"))
    return choice, reason, int(len(w)), scores


def _pair_folds(links: Sequence[Link], usable: Sequence[bool], max_pairs: int, seed: int,
                connected_by: Sequence[bool] | None = None) -> list[int | None]:
    """The fold each link is held out in (None: always trained on); one link per fold.

    A link is held out only where the other links keep every view connected as in the full
    graph (a held-out pair is predicted through its neighbours; a bridge has none). One link
    at a time, so every view keeps all its other overlaps: holding out several of a view's
    links at once leaves it placed by a single slab, and the validation then favours models
    too stiff for the full data (measured: four random folds of links on a 3 x 3 single-plane
    mosaic with 1 % affine truth preferred translation to every affine).
    Up to ``max_pairs`` links, drawn at random (fixed seed, canonical order), first one per
    view so that the held-out pairs cover as many views as possible. A held-out link's pair
    leaves its fold with every link it has (see ``_validate``), so bridges are judged by pairs."""
    # Whether a held-out link is a bridge is a property of the graph the folds are solved on: every
    # trained link (``connected_by``, default ``usable``), also those never held out themselves.
    connected_by = usable if connected_by is None else connected_by
    nodes = sorted({v for lk, ok in zip(links, connected_by) if ok for v in (lk.a, lk.b)})
    index = {v: i for i, v in enumerate(nodes)}
    edges = [(index[lk.a], index[lk.b]) if ok else None for lk, ok in zip(links, connected_by)]

    def n_components(skip: int) -> int:
        parent = list(range(len(nodes)))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        count = len(nodes)
        gone = None if skip < 0 else frozenset(edges[skip])  # the held-out pair leaves with all its links
        for j, e in enumerate(edges):
            if e is None or frozenset(e) == gone:
                continue
            ra, rb = find(e[0]), find(e[1])
            if ra != rb:
                parent[ra] = rb
                count -= 1
        return count

    out: list[int | None] = [None] * len(links)
    if max_pairs <= 0:
        return out
    full = n_components(-1)
    order = [j for j, e in enumerate(edges) if e is not None and usable[j]]
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    chosen: list[int] = []
    for distinct in (True, False):
        seen = {v for j in chosen for v in edges[j]}
        for j in order:
            if len(chosen) >= max_pairs:
                break
            if j in chosen or (distinct and seen & set(edges[j])):
                continue
            if n_components(j) == full:
                chosen.append(j)
                seen |= set(edges[j])
    for f, j in enumerate(sorted(chosen)):
        out[j] = f
    return out


def _neighbourhood(links: Sequence[Link], max_views: int) -> list[Link]:
    """The links among at most ``max_views`` views: breadth-first from the view with the most matches,
    so the subset is connected and its views are the well-linked ones (the validation's cost is bounded
    by this, not by the dataset's size)."""
    views = {v for lk in links for v in (lk.a, lk.b)}
    if len(views) <= max_views:
        return list(links)
    adjacency: dict[ViewId, set[ViewId]] = {}
    matches: dict[ViewId, int] = {}
    for lk in links:
        adjacency.setdefault(lk.a, set()).add(lk.b)
        adjacency.setdefault(lk.b, set()).add(lk.a)
        for v in (lk.a, lk.b):
            matches[v] = matches.get(v, 0) + lk.n
    start = max(sorted(matches), key=lambda v: matches[v])
    chosen, queue = {start}, [start]
    while queue and len(chosen) < max_views:
        v = queue.pop(0)
        for u in sorted(adjacency[v], key=lambda u: (-matches[u], u)):
            if u not in chosen and len(chosen) < max_views:
                chosen.add(u)
                queue.append(u)
    return [lk for lk in links if lk.a in chosen and lk.b in chosen]


def _spread(runs: np.ndarray, gauge_free: bool) -> float:
    """RMS distance of the fold solutions' placements (folds x points x 3) from their mean
    (``gauge_free``: after removing each fold's global affine onto the mean)."""
    if gauge_free:
        runs = _without_global_affine(runs)
    return float(np.sqrt(np.mean(np.sum((runs - runs.mean(axis=0)) ** 2, axis=2))))


def _without_global_affine(runs: np.ndarray) -> np.ndarray:
    """Each fold's placements with the global affine that best maps them onto the mean removed."""
    mean = runs.mean(axis=0)
    out = np.empty_like(runs)
    for f, r in enumerate(runs):
        h = np.hstack([r, np.ones((len(r), 1))])
        coef, *_ = np.linalg.lstsq(h, mean, rcond=None)
        out[f] = h @ coef
    return out


def _probe_points(links, views) -> list[tuple[ViewId, np.ndarray]]:
    """World points per view where fold solutions are compared: the 8 corners of its box
    (``views``), else of its matched points' bounding box."""
    linked: dict[ViewId, list[np.ndarray]] = {}
    for lk in links:
        linked.setdefault(lk.a, []).append(lk.pa)
        linked.setdefault(lk.b, []).append(lk.pb)
    out = []
    for v in sorted(linked):
        if views and v in views:
            affine, size = views[v]
            lo, hi = transforms.view_bounding_box(np.asarray(affine, dtype=np.float64), size)
        else:
            pts = np.concatenate(linked[v])
            lo, hi = pts.min(axis=0), pts.max(axis=0)
        out.append((v, transforms.box_corners(lo, hi)))
    return out
