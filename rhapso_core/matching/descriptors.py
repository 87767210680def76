"""Redundant geometric local descriptor matching (BigStitcher's RGLDM), vectorised.

Each point is described by the relative vectors (world frame, x y z) to its
``k + r`` nearest neighbours, ordered by distance. Every subset of ``k`` of them
(``C(k + r, k)`` subsets, neighbour order kept) is one descriptor. The distance
between two *points* is the smallest squared distance over all subset pairs
(mpicbg ``SubsetMatcher`` + ``SquareDistance``: every subset of one point is
compared with every subset of the other). A point of A is matched to its best
point of B when ``best * significance < second best``, the second best being
the best *other* point of B (BigStitcher's ratio test).

Instead of mpicbg's loop over all descriptor pairs, all subsets of all B points
go into one KD-tree in descriptor space and all subsets of A query it (no
Python loop over points). The two nearest descriptors decide almost every
point; the ``k`` nearest bound every unseen descriptor from below, which is
enough to decide the ratio test exactly, and the few undecided points are
re-queried with ``S + 1`` neighbours (``S = C(k + r, k)``), which always
contain a descriptor of a second point. With ``search_radius`` gating, tree
answers from B points that are too far away are dropped, and points the tree
could not decide are compared with every B point inside their radius by a
compiled scan (directly, without the tree, when few point pairs are within the
radius). Every answer is the one an exhaustive comparison gives, not an
approximation.

Two descriptor kinds:

* ``"translation"``: the concatenated relative vectors (3k numbers). Tolerates
  translation, and rotations small enough that the vectors move less than the
  neighbour spacing.
* ``"rotation"``: the relative vectors expressed in a local right-handed frame
  whose first axis points to the nearest neighbour of the subset and whose
  first two axes span the two nearest (Gram-Schmidt). Rigid rotations leave it
  unchanged; it needs ``k >= 2``. A subset whose two nearest neighbours are
  collinear with the point has no frame and takes no part.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.spatial import cKDTree

from ._kernels import ratio_scan

__all__ = ["Candidates", "subset_table", "neighbor_vectors", "build_descriptors", "match_descriptors"]

# Relative length under which the second frame axis is considered undefined.
_FRAME_EPS = 1e-6
# With gating, up to this many (A, B) point pairs within the radius are compared
# directly, skipping the descriptor tree.
_BRUTE_DIRECT = 200_000
_LEAFSIZE = 64


@dataclass(frozen=True, eq=False)
class Candidates:
    """Correspondence candidates of a point pair set, one per matched point of A.

    Attributes
    ----------
    idx_a, idx_b : (M,) int64
        Indices into the point arrays given to :func:`match_descriptors`.
    distance2 : (M,) float64
        Squared descriptor distance of the best subset pair (world units squared).
    """

    idx_a: np.ndarray
    idx_b: np.ndarray
    distance2: np.ndarray

    def __len__(self) -> int:
        return int(self.idx_a.shape[0])


def subset_table(num_neighbors: int, redundancy: int) -> np.ndarray:
    """All subsets ``(S, k)`` of ``k`` out of ``k + r`` neighbour ranks, each in increasing order."""
    return np.array(list(combinations(range(num_neighbors + redundancy), num_neighbors)), dtype=np.intp)


def neighbor_vectors(points: np.ndarray, n: int, tree: cKDTree | None = None) -> np.ndarray:
    """Relative vectors ``(N, n, 3)`` from each point to its ``n`` nearest other points, nearest first.

    Parameters
    ----------
    points : (N, 3) float
        Points (any frame, x y z); ``N > n`` is required.
    n : int
        Neighbours per point.
    tree : cKDTree, optional
        A tree already built on ``points``.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape[0] <= n:
        raise ValueError(f"neighbor_vectors: {p.shape[0]} points cannot give {n} neighbours each")
    tree = cKDTree(p) if tree is None else tree
    _, idx = tree.query(p, k=n + 1)
    own = idx == np.arange(p.shape[0])[:, None]
    # Exact duplicates may push the point itself out of its own list: then drop the farthest.
    no_self = ~own.any(axis=1)
    own[no_self, -1] = True
    nb = idx[~own].reshape(p.shape[0], n)
    return p[nb] - p[:, None, :]


def build_descriptors(
    points: np.ndarray,
    num_neighbors: int,
    redundancy: int,
    kind: str = "translation",
    tree: cKDTree | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of every subset of every point.

    Parameters
    ----------
    points : (N, 3) float
        Points in the world frame, x y z.
    num_neighbors : int
        ``k``, neighbours per descriptor.
    redundancy : int
        ``r``, extra neighbours; ``S = C(k + r, k)`` descriptors per point.
    kind : {"translation", "rotation"}
        Descriptor kind (see the module docstring).
    tree : cKDTree, optional
        A tree already built on ``points``.

    Returns
    -------
    desc : (N, S, D) float64
        ``D = 3k`` (translation) or ``3k - 3`` (rotation: the entries that are zero by
        construction of the frame are left out).
    valid : (N, S) bool
        False where the rotation frame is undefined.
    """
    k, r = num_neighbors, redundancy
    rel = neighbor_vectors(points, k + r, tree)
    sub = rel[:, subset_table(k, r)]  # (N, S, k, 3)
    n, s = sub.shape[:2]
    if kind == "translation":
        return sub.reshape(n, s, 3 * k), np.ones((n, s), dtype=bool)
    if kind != "rotation":
        raise ValueError(f"build_descriptors: kind must be 'translation' or 'rotation', got {kind!r}")
    if k < 2:
        raise ValueError("build_descriptors: the rotation-invariant descriptor needs num_neighbors >= 2")
    v1, v2 = sub[:, :, 0], sub[:, :, 1]
    n1 = np.linalg.norm(v1, axis=-1)
    e1 = v1 / np.where(n1 > 0, n1, 1.0)[..., None]
    u = v2 - np.einsum("nsi,nsi->ns", v2, e1)[..., None] * e1
    nu = np.linalg.norm(u, axis=-1)
    valid = (n1 > 0) & (nu > _FRAME_EPS * np.maximum(np.linalg.norm(v2, axis=-1), 1e-300))
    e2 = u / np.where(valid, nu, 1.0)[..., None]
    e3 = np.cross(e1, e2)
    frame = np.stack([e1, e2, e3], axis=-2)  # (N, S, 3, 3), rows are the axes
    local = np.einsum("nsij,nskj->nski", frame, sub)  # (N, S, k, 3)
    parts = [local[:, :, 0, :1], local[:, :, 1, :2]]
    if k > 2:
        parts.append(local[:, :, 2:, :].reshape(n, s, 3 * (k - 2)))
    desc = np.concatenate(parts, axis=-1)
    desc[~valid] = 0.0
    return desc, valid


def _ratio_round(d2, owner, gated, significance):
    """Decide the ratio test from each row's ``K`` nearest descriptors (see module docstring).

    ``d2`` (R, S, K) squared distances, ascending along K (inf where the tree ran
    out of descriptors); ``owner`` the B point of each; ``gated`` whether it may be
    compared. Returns accept, reject (R,) bools, best B point and best distance.
    Unseen descriptors are at least as far as the K-th, which bounds the unknowns.
    """
    r_idx = np.arange(d2.shape[0])
    bound = d2[..., -1]
    has1 = gated.any(-1)
    f1 = gated.argmax(-1)
    g1 = np.where(has1, np.take_along_axis(d2, f1[..., None], -1)[..., 0], np.inf)
    s_best = g1.argmin(-1)
    best = g1[r_idx, s_best]
    b_star = owner[r_idx, s_best, f1[r_idx, s_best]]
    # The best is certain when no unseen descriptor can beat it.
    determined = best <= np.where(has1, np.inf, bound).min(-1)
    other = gated & (owner != b_star[:, None, None])
    has2 = other.any(-1)
    f2 = other.argmax(-1)
    m = np.where(has2, np.take_along_axis(d2, f2[..., None], -1)[..., 0], np.inf)
    second_known = m.min(-1)
    second_lb = np.where(has2, m, bound).min(-1)
    with np.errstate(invalid="ignore"):
        scaled = best * significance
        accept = determined & np.isfinite(best) & np.isfinite(second_lb) & (scaled < second_lb)
        reject = determined & (~np.isfinite(best) | ~np.isfinite(second_lb) | (scaled >= second_known))
    return accept, reject & ~accept, b_star, best


def _brute(rows, desc_a, valid_a, desc_b, valid_b, pts_a, tree_pb, radius, significance):
    """Exact ratio test for ``rows`` of A against every B point within ``radius``."""
    pairs = cKDTree(pts_a[rows]).sparse_distance_matrix(tree_pb, radius, output_type="ndarray")
    order = np.argsort(pairs["i"], kind="stable")  # memory locality in the scan
    a_rep = rows[pairs["i"][order]].astype(np.intp)
    b_rep = pairs["j"][order].astype(np.intp)
    best, best_b, second = ratio_scan(desc_a, valid_a, desc_b, valid_b, a_rep, b_rep, desc_a.shape[0])
    best, best_b, second = best[rows], best_b[rows], second[rows]
    ok = np.isfinite(best) & np.isfinite(second) & (best * significance < second)
    return rows[ok], best_b[ok], best[ok]


def match_descriptors(
    points_a: np.ndarray,
    points_b: np.ndarray,
    num_neighbors: int = 3,
    redundancy: int = 1,
    significance: float = 3.0,
    search_radius: float | None = None,
    kind: str = "translation",
) -> Candidates:
    """Correspondence candidates between two point clouds by RGLDM.

    Parameters
    ----------
    points_a, points_b : (N, 3), (M, 3) float
        Points in the world frame (x y z) under the current registrations.
    num_neighbors : int
        ``k``, neighbours per descriptor (default 3).
    redundancy : int
        ``r``: all ``k``-subsets of the ``k + r`` nearest neighbours are compared (default 1).
    significance : float
        Keep ``a -> b`` when ``best * significance < second best`` on squared descriptor
        distances (default 3).
    search_radius : float, optional
        Compare only points whose world positions are at most this far apart (world
        units; default None = everything).
    kind : {"translation", "rotation"}
        Descriptor kind (default "translation").

    Returns
    -------
    Candidates
        At most one candidate per point of A, sorted by ``idx_a``.
    """
    pa = np.asarray(points_a, dtype=np.float64)
    pb = np.asarray(points_b, dtype=np.float64)
    n_nb = num_neighbors + redundancy
    empty = Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if pa.shape[0] <= n_nb or pb.shape[0] <= n_nb:
        return empty
    desc_a, valid_a = build_descriptors(pa, num_neighbors, redundancy, kind)
    desc_b, valid_b = build_descriptors(pb, num_neighbors, redundancy, kind)
    s = desc_a.shape[1]
    flat_b = desc_b.reshape(-1, desc_b.shape[-1])
    keep_b = np.flatnonzero(valid_b.ravel())
    if keep_b.size == 0:
        return empty
    owner_b = keep_b // s
    # Larger leaves than scipy's default 16 halve the query time in 6-12 dimensions.
    tree_d = cKDTree(flat_b[keep_b], leafsize=_LEAFSIZE)
    m = keep_b.size

    rows = np.flatnonzero(valid_a.any(axis=1))
    out_a, out_b, out_d = [], [], []
    # Two neighbours decide almost every row (the second is nearly always another
    # point); undecided rows are re-queried with more, and S + 1 always decides.
    k = min(m, 2)
    tree_pb = None
    if search_radius is not None:
        tree_pb = cKDTree(pb)
        n_near = tree_pb.query_ball_point(pa[rows], search_radius, return_length=True)
        rows = rows[n_near >= 2]  # a ratio test needs a second point
        if n_near[n_near >= 2].sum() <= _BRUTE_DIRECT:
            k = 0  # few gated pairs: compare them all directly

    while rows.size and k:
        dist, ii = tree_d.query(desc_a[rows].reshape(-1, desc_a.shape[-1]), k=k)
        dist = dist.reshape(rows.size, s, k)
        ii = ii.reshape(rows.size, s, k)
        found = ii < m
        owner = np.where(found, owner_b[np.minimum(ii, m - 1)], -1)
        gated = found & valid_a[rows][:, :, None]
        if search_radius is not None:
            gap = pb[np.maximum(owner, 0)] - pa[rows][:, None, None, :]
            gated &= np.einsum("rski,rski->rsk", gap, gap) <= search_radius * search_radius
        d2 = np.where(valid_a[rows][:, :, None], dist * dist, np.inf)
        accept, reject, b_star, best = _ratio_round(d2, owner, gated, significance)
        out_a.append(rows[accept])
        out_b.append(b_star[accept])
        out_d.append(best[accept])
        rows = rows[~(accept | reject)]
        if search_radius is not None:
            break  # gated rows left undecided are compared exhaustively below
        if rows.size and k >= m:  # pragma: no cover - an exhaustive query always decides
            raise AssertionError("match_descriptors: exhaustive query left rows undecided")
        k = min(m, max(4 * k, s + 1))
    if search_radius is not None and rows.size:
        ba, bb, bd = _brute(rows, desc_a, valid_a, desc_b, valid_b, pa, tree_pb, search_radius, significance)
        out_a.append(ba)
        out_b.append(bb)
        out_d.append(bd)

    ia = np.concatenate(out_a).astype(np.int64) if out_a else np.zeros(0, np.int64)
    ib = np.concatenate(out_b).astype(np.int64) if out_b else np.zeros(0, np.int64)
    dd = np.concatenate(out_d) if out_d else np.zeros(0)
    order = np.argsort(ia, kind="stable")
    return Candidates(ia[order], ib[order], dd[order])
