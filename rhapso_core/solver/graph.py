"""The tile graph both optimisers work on: tiles by index, links as arrays.

Also the helpers both need: connected components, a greedy colouring (tiles of
one colour share no link, so they can be fitted together and still give
Gauss-Seidel sweeps), and moment-preserving compression of a link's matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "TileLink",
    "HalfMatches",
    "link_moment_points",
    "components",
    "greedy_colouring",
    "apply_batch",
    "mean_link_distances",
]


@dataclass(frozen=True, eq=False)
class TileLink:
    """A link between tile indices ``ia`` and ``ib`` (world points, per-match weights)."""

    ia: int
    ib: int
    pa: np.ndarray
    pb: np.ndarray
    w: np.ndarray

    @property
    def n(self) -> int:
        return int(self.pa.shape[0])


def link_moment_points(pa: np.ndarray, pb: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most 12 weighted point pairs with the same weighted moments as ``(pa, pb, w)``.

    Every fit used by the solvers (translation, rigid, affine and their blends)
    is a weighted least-squares fit that depends on the matches only through the
    weighted sum, mean and 6x6 covariance of the stacked pairs ``(pa, pb)``; the
    target ``M_b(pb)`` is affine in ``pb``, so that remains true after mapping.
    The pairs ``mean +- sqrt(6 s_i) u_i`` (eigenpairs ``s_i, u_i`` of the
    covariance), each with a twelfth of the total weight, reproduce these moments
    exactly, which makes every optimiser iteration cost O(links), not O(matches).
    Links with at most 12 matches are returned unchanged.
    """
    n = pa.shape[0]
    if n <= 12:
        return pa, pb, w
    z = np.concatenate([pa, pb], axis=1)
    wsum = float(w.sum())
    mean = (w @ z) / wsum
    dz = z - mean
    cov = (dz * w[:, None]).T @ dz / wsum
    s, u = np.linalg.eigh(cov)
    s = np.clip(s, 0.0, None)
    offs = (u * np.sqrt(6.0 * s)).T  # (6, 6): row i = sqrt(6 s_i) u_i
    pts = np.concatenate([mean + offs, mean - offs], axis=0)
    return pts[:, :3].copy(), pts[:, 3:].copy(), np.full(12, wsum / 12.0)


def components(n_tiles: int, links: list[TileLink]) -> np.ndarray:
    """Connected-component label per tile (tiles without links are their own component)."""
    if not links:
        return np.arange(n_tiles)
    ia = np.array([lk.ia for lk in links])
    ib = np.array([lk.ib for lk in links])
    g = coo_matrix((np.ones(len(links)), (ia, ib)), shape=(n_tiles, n_tiles))
    _, labels = connected_components(g, directed=False)
    return labels


def greedy_colouring(n_tiles: int, links: list[TileLink]) -> np.ndarray:
    """Colour per tile, no two linked tiles sharing one; greedy in index order (deterministic)."""
    nbrs: list[set[int]] = [set() for _ in range(n_tiles)]
    for lk in links:
        nbrs[lk.ia].add(lk.ib)
        nbrs[lk.ib].add(lk.ia)
    colour = np.full(n_tiles, -1, dtype=np.int64)
    for t in range(n_tiles):
        used = {int(colour[o]) for o in nbrs[t] if colour[o] >= 0}
        c = 0
        while c in used:
            c += 1
        colour[t] = c
    return colour


def apply_batch(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply per-row affines ``m`` (..., 4, 4) to points ``p`` (..., 3)."""
    # Explicit sums: several times faster than einsum / matmul on many tiny matrices.
    return (
        p[..., 0, None] * m[..., :3, 0]
        + p[..., 1, None] * m[..., :3, 1]
        + p[..., 2, None] * m[..., :3, 2]
        + m[..., :3, 3]
    )


def mean_link_distances(models: np.ndarray, links: list[TileLink]) -> tuple[np.ndarray, np.ndarray]:
    """Per link, mean and max of ``|M_a(pa) - M_b(pb)|`` (world units)."""
    mean = np.zeros(len(links))
    mx = np.zeros(len(links))
    for k, lk in enumerate(links):
        ma, mb = models[lk.ia], models[lk.ib]
        d = np.linalg.norm(lk.pa @ ma[:3, :3].T + ma[:3, 3] - (lk.pb @ mb[:3, :3].T + mb[:3, 3]), axis=1)
        mean[k] = d.mean() if d.size else 0.0
        mx[k] = d.max() if d.size else 0.0
    return mean, mx


class HalfMatches:
    """Compressed matches seen from each tile's side, gathered into padded batches.

    Each link contributes its moment-preserving point pairs twice, once per
    side. ``groups`` holds, per batch of tiles (one batch per colour, or one for
    all when ``colour`` is None), the arrays a batched fit needs::

        (tiles (B,), own points (B, N, 3), weights (B, N) with padding at 0,
         partner points (B, N, 3), partner tile (B, N))

    Only tiles marked in ``free`` that have matches are batched.
    """

    def __init__(self, n_tiles: int, links: list[TileLink], free: np.ndarray, colour: np.ndarray | None = None):
        comp = [link_moment_points(lk.pa, lk.pb, lk.w) for lk in links]
        pa = np.concatenate([c[0] for c in comp])
        pb = np.concatenate([c[1] for c in comp])
        w = np.concatenate([c[2] for c in comp])
        ta = np.concatenate([np.full(c[0].shape[0], lk.ia) for c, lk in zip(comp, links)])
        tb = np.concatenate([np.full(c[0].shape[0], lk.ib) for c, lk in zip(comp, links)])
        r = pa.shape[0]
        own = np.concatenate([pa, pb])
        tile = np.concatenate([ta, tb])
        wt = np.concatenate([w, w])
        partner = np.concatenate([np.arange(r) + r, np.arange(r)])
        order = np.argsort(tile, kind="stable")
        counts = np.bincount(tile, minlength=n_tiles)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        if colour is None:
            colour = np.zeros(n_tiles, dtype=np.int64)
        self.groups = []
        for c in range(int(colour.max()) + 1 if n_tiles else 0):
            tiles = np.flatnonzero((colour == c) & free & (counts > 0))
            if tiles.size == 0:
                continue
            cnt = counts[tiles]
            nmax = int(cnt.max())
            rows = np.repeat(np.arange(tiles.size), cnt)
            cols = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            src = order[np.repeat(starts[tiles], cnt) + cols]
            idx = np.zeros((tiles.size, nmax), dtype=np.int64)
            mask = np.zeros((tiles.size, nmax))
            idx[rows, cols] = src
            mask[rows, cols] = 1.0
            pidx = partner[idx]
            self.groups.append((tiles, own[idx], wt[idx] * mask, own[pidx], tile[pidx]))
