"""Numba kernels of matching: the two loops whose NumPy form would need huge temporaries."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["count_inliers", "ratio_scan"]


@njit(cache=True, nogil=True)
def count_inliers(affines, p, q, eps2):  # pragma: no cover - compiled
    """Inlier count and summed squared inlier residual of each ``(H, 3, 4)`` affine.

    A candidate is an inlier of affine ``h`` when ``|A_h p_i - q_i|^2 < eps2``; NaN
    affines (degenerate samples) count none. NumPy would need an (H, N, 3) array.
    """
    n_h = affines.shape[0]
    n = p.shape[0]
    counts = np.zeros(n_h, dtype=np.int64)
    costs = np.zeros(n_h)
    for h in range(n_h):
        a = affines[h]
        c = 0
        s = 0.0
        for i in range(n):
            x = p[i, 0]
            y = p[i, 1]
            z = p[i, 2]
            dx = a[0, 0] * x + a[0, 1] * y + a[0, 2] * z + a[0, 3] - q[i, 0]
            dy = a[1, 0] * x + a[1, 1] * y + a[1, 2] * z + a[1, 3] - q[i, 1]
            dz = a[2, 0] * x + a[2, 1] * y + a[2, 2] * z + a[2, 3] - q[i, 2]
            d2 = dx * dx + dy * dy + dz * dz
            if d2 < eps2:
                c += 1
                s += d2
        counts[h] = c
        costs[h] = s
    return counts, costs


@njit(cache=True, nogil=True)
def ratio_scan(desc_a, valid_a, desc_b, valid_b, ia, ib, n_a):  # pragma: no cover - compiled
    """Best and second-best B point of every A point over the pairs ``(ia[k], ib[k])``.

    The distance of a pair is the smallest squared distance over all subset pairs
    (invalid subsets excluded). Returns ``best_d, best_b, second_d`` of length
    ``n_a`` (inf / -1 where an A point has no pair). A pair's sum stops as soon as it
    exceeds the A point's current second best: it can no longer change the answer.
    Equal distances go to the lower B index, so the result does not depend on pair order.
    """
    n_pairs = ia.shape[0]
    n_sub = desc_a.shape[1]
    dim = desc_a.shape[2]
    best = np.full(n_a, np.inf)
    second = np.full(n_a, np.inf)
    best_b = np.full(n_a, -1, dtype=np.int64)
    for k in range(n_pairs):
        a = ia[k]
        b = ib[k]
        lim = second[a]
        pd = np.inf
        for s in range(n_sub):
            if not valid_a[a, s]:
                continue
            for t in range(n_sub):
                if not valid_b[b, t]:
                    continue
                stop = min(pd, lim)
                d = 0.0
                for j in range(dim):
                    x = desc_a[a, s, j] - desc_b[b, t, j]
                    d += x * x
                    if d > stop:
                        break
                if d < pd:
                    pd = d
        if pd > lim:
            continue
        if pd < best[a] or (pd == best[a] and b < best_b[a]):
            second[a] = best[a]
            best[a] = pd
            best_b[a] = b
        elif pd < second[a]:
            second[a] = pd
    return best, best_b, second
