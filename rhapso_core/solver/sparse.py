"""Direct sparse least-squares solve for translation and (regularised) affine.

Translation minimises ``sum_links sum_i w_i |pa_i + t_a - pb_i - t_b|^2`` over the
free tiles' translations: a weighted graph Laplacian, factorised once, three
right-hand sides.

Affine minimises ``sum_links sum_i w_i |M_a(pa_i) - M_b(pb_i)|^2``; the three
output rows decouple and share one sparse normal matrix (4 unknowns per tile
and row).

Regularised affine (lambda > 0). BigStitcher's interpolated model fits
``(1 - lambda) A + lambda R`` per tile (A, R: affine and rigid fits to the same
matches). That blend is exactly the minimiser of the tile's data term plus
``mu = lambda / (1 - lambda)`` times ``sum_h w_h |M_v(p_h) - R(p_h)|^2`` over the
tile's own matched points (both terms share the same Hessian). We therefore
minimise, over every free tile's affine ``M_v`` and a rigid ``R_v`` per tile::

    sum_links sum_i w_i |M_a(pa_i) - M_b(pb_i)|^2 + mu sum_v sum_h w_h |M_v(p_h) - R_v(p_h)|^2

by Gauss-Newton on the rotations: with ``R_v = (I + [w_v]x) R0_v`` (plus a
translation) the problem is linear in (M, w, t), 18 unknowns per tile, one
sparse symmetric solve; then ``R0_v <- exp([w_v]x) R0_v`` and repeat until no
matched point moves by more than ``tol`` (typically 5-10 solves). At the
optimum ``R_v`` is the rigid fit of the tile's points to ``M_v`` of them
(BigStitcher fits R to the neighbours' targets instead; the two differ only by
the rigid part of the residuals, a second-order term), so the result agrees
with the iterative optimiser's fixed point to within its convergence (tests:
<= 0.01 voxel RMS on a run to convergence). A plain alternation (fit R, then
solve M) needs hundreds of rounds on large grids because smoothly bending,
near-rigid modes are barely constrained by the matches; solving for R's
rotation jointly removes that.

Each tile's coordinates are centred on its own matches and all scaled by one
global length before building the system, which keeps the normal matrix well
conditioned for tiles far from the origin. Fixed tiles are constants (their
points are mapped through their fixed models). A ridge of relative size 1e-10
toward the initial models keeps directions the matches do not determine (for
example coplanar matches under affine) at their initial value instead of
making the system singular.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from rhapso_core.solver.graph import HalfMatches, TileLink, apply_batch
from rhapso_core.solver.iterative import MatchSet, OptimiserInfo

__all__ = ["optimise_sparse"]

_RIDGE = 1e-10


def _factor(rows, cols, vals, n):
    k = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    # Symmetric matrices: minimum degree on A^T + A fills in far less than the COLAMD default.
    return splu(k, permc_spec="MMD_AT_PLUS_A")


def _translation(n_tiles, links, free, init):
    models = np.array(init, dtype=np.float64)
    index = np.full(n_tiles, -1)
    index[free] = np.arange(int(free.sum()))
    nf = int(free.sum())
    rows, cols, vals = [], [], []
    rhs = np.zeros((nf, 3))
    diag = np.zeros(nf)
    for lk in links:
        fa, fb = free[lk.ia], free[lk.ib]
        if not (fa or fb):
            continue
        pa = lk.pa if fa else apply_batch(models[lk.ia], lk.pa)
        pb = lk.pb if fb else apply_batch(models[lk.ib], lk.pb)
        wsum = float(lk.w.sum())
        d = lk.w @ (pa - pb)
        if fa:
            diag[index[lk.ia]] += wsum
            rhs[index[lk.ia]] -= d
        if fb:
            diag[index[lk.ib]] += wsum
            rhs[index[lk.ib]] += d
        if fa and fb:
            i, j = index[lk.ia], index[lk.ib]
            rows += [np.array([i, j])]
            cols += [np.array([j, i])]
            vals += [np.array([-wsum, -wsum])]
    ridge = _RIDGE * max(float(diag.mean()) if nf else 1.0, 1e-300)
    rows.append(np.arange(nf))
    cols.append(np.arange(nf))
    vals.append(diag + ridge)
    t0 = models[free, :3, 3]
    t = _factor(rows, cols, vals, nf).solve(rhs + ridge * t0)
    out = models.copy()
    out[free] = np.eye(4)
    out[free, :3, 3] = t
    return out


def _affine(n_tiles, links, free, init, lam, tol, max_rounds):
    models = np.array(init, dtype=np.float64)
    nf = int(free.sum())
    index = np.full(n_tiles, -1)
    index[free] = np.arange(nf)
    # Normalisation: per-tile centre c_v, one scale s, output frame centred on c0.
    wsum_t = np.zeros(n_tiles)
    psum_t = np.zeros((n_tiles, 3))
    for lk in links:
        wsum_t[lk.ia] += lk.w.sum()
        wsum_t[lk.ib] += lk.w.sum()
        psum_t[lk.ia] += lk.w @ lk.pa
        psum_t[lk.ib] += lk.w @ lk.pb
    centre = psum_t / np.maximum(wsum_t, 1e-300)[:, None]
    c0 = centre[wsum_t > 0].mean(axis=0) if np.any(wsum_t > 0) else np.zeros(3)
    spread = [np.sum(lk.w[:, None] * (lk.pa - centre[lk.ia]) ** 2) + np.sum(lk.w[:, None] * (lk.pb - centre[lk.ib]) ** 2) for lk in links]
    s = float(np.sqrt(np.sum(spread) / max(2 * sum(float(lk.w.sum()) for lk in links), 1e-300))) or 1.0

    def hom(p, v):
        return np.concatenate([(p - centre[v]) / s, np.ones((p.shape[0], 1))], axis=1)

    blocks: dict[tuple[int, int], np.ndarray] = {}
    own_moments = np.zeros((nf, 4, 4))
    rhs_data = np.zeros((nf, 4, 3))

    def add(i, j, m):
        if (i, j) in blocks:
            blocks[(i, j)] += m
        else:
            blocks[(i, j)] = m.copy()

    for lk in links:
        fa, fb = free[lk.ia], free[lk.ib]
        if not (fa or fb):
            continue
        w = lk.w
        if fa and fb:
            ha, hb = hom(lk.pa, lk.ia), hom(lk.pb, lk.ib)
            i, j = index[lk.ia], index[lk.ib]
            haa = (ha * w[:, None]).T @ ha
            hbb = (hb * w[:, None]).T @ hb
            hab = (ha * w[:, None]).T @ hb
            add(i, i, haa)
            add(j, j, hbb)
            add(i, j, -hab)
            add(j, i, -hab.T)
            own_moments[i] += haa
            own_moments[j] += hbb
        else:
            (v, p), (u, q) = ((lk.ia, lk.pa), (lk.ib, lk.pb)) if fa else ((lk.ib, lk.pb), (lk.ia, lk.pa))
            h = hom(p, v)
            target = (apply_batch(models[u], q) - c0) / s
            i = index[v]
            hh = (h * w[:, None]).T @ h
            add(i, i, hh)
            own_moments[i] += hh
            rhs_data[i] += (h * w[:, None]).T @ target

    mu = lam / (1.0 - lam) if lam > 0 else 0.0
    keys = sorted(blocks)
    ii = np.array([k[0] for k in keys])
    jj = np.array([k[1] for k in keys])
    vals = np.stack([blocks[k] for k in keys])  # (K, 4, 4) data blocks, shared by the 3 output rows
    ridge = _RIDGE * float(np.mean(np.trace(own_moments, axis1=1, axis2=2))) if nf else 0.0
    free_tiles = np.flatnonzero(free)

    def to_param(m, tiles):
        """World models (B, 4, 4) of ``tiles`` -> normalised (B, 3, 4) parameters (rows = output axes)."""
        x = np.empty((len(tiles), 3, 4))
        x[:, :, :3] = m[:, :3, :3]
        x[:, :, 3] = (np.einsum("bij,bj->bi", m[:, :3, :3], centre[tiles]) + m[:, :3, 3] - c0) / s
        return x

    def from_param(x):
        """Normalised (nf, 3, 4) parameters of the free tiles -> world models of all tiles."""
        out = models.copy()
        lin = x[:, :, :3]
        out[free_tiles, :3, :3] = lin
        out[free_tiles, :3, 3] = -np.einsum("tij,tj->ti", lin, centre[free_tiles]) + s * x[:, :, 3] + c0
        return out

    x_init = to_param(models[free_tiles], free_tiles)
    a4 = np.arange(4)

    if mu == 0.0:
        r = ii[:, None, None] * 4 + a4[None, :, None] + np.zeros((1, 1, 4), dtype=np.int64)
        c = jj[:, None, None] * 4 + a4[None, None, :] + np.zeros((1, 4, 1), dtype=np.int64)
        lu = _factor([r.ravel(), np.arange(4 * nf)], [c.ravel(), np.arange(4 * nf)],
                     [vals.ravel(), np.full(4 * nf, ridge)], 4 * nf)
        rhs = rhs_data + ridge * x_init.transpose(0, 2, 1)
        x = lu.solve(rhs.reshape(4 * nf, 3)).reshape(nf, 4, 3).transpose(0, 2, 1)
        return from_param(x), 1, True

    # Regularised: minimise data + mu * sum_h w_h |M_v(p_h) - R_v(p_h)|^2 over the affines M
    # and rigid R jointly, by Gauss-Newton on R's rotation (see the module docstring).
    # Unknowns per free tile (18): x (3x4, row-major), rotation increment w (3), rigid translation t (3).
    nd = 18
    k3 = np.arange(3)
    # Data blocks expanded to the 3 output rows: dof (row k, col c) = 18 * tile + 4 * k + c.
    dr = (ii[:, None, None, None] * nd + 4 * k3[None, :, None, None] + a4[None, None, :, None]) + np.zeros((1, 1, 1, 4), dtype=np.int64)
    dc = (jj[:, None, None, None] * nd + 4 * k3[None, :, None, None] + a4[None, None, None, :]) + np.zeros((1, 1, 4, 1), dtype=np.int64)
    dv = np.broadcast_to(vals[:, None], (vals.shape[0], 3, 4, 4))
    rhs_x = np.zeros((nf, nd))
    rhs_x[:, :12] = rhs_data.transpose(0, 2, 1).reshape(nf, 12) + ridge * x_init.reshape(nf, 12)

    halves = HalfMatches(n_tiles, links, free)
    (tiles_g, p_g, w_g, _, _), = halves.groups
    order = index[tiles_g]
    hp = (p_g - centre[tiles_g][:, None]) / s  # (nf, N, 3) normalised own points
    radius = np.zeros(nf)
    radius[order] = np.max(np.where(w_g > 0, np.linalg.norm(hp, axis=-1), 0.0), axis=1)
    h = np.concatenate([hp, np.ones(hp.shape[:2] + (1,))], axis=-1)
    jac = np.zeros(hp.shape[:2] + (3, nd))
    for k in range(3):
        jac[:, :, k, 4 * k:4 * k + 4] = h
        jac[:, :, k, 15 + k] = -1.0
    br = (np.arange(nf)[:, None, None] * nd + np.arange(nd)[None, :, None]) + np.zeros((1, 1, nd), dtype=np.int64)
    bc = br.transpose(0, 2, 1)
    rows = [dr.ravel(), br.ravel()]
    cols = [dc.ravel(), bc.ravel()]
    rot = np.tile(np.eye(3), (nf, 1, 1))
    x = x_init
    rounds, move = 0, np.inf
    for rounds in range(1, max_rounds + 1):
        a = np.einsum("bij,bnj->bni", rot[order], hp)  # R0 p' per own point
        # Residual x h - (I + [w]x) R0 p' - t = x h + [a]x w - t - a, with a = R0 p'.
        zero = np.zeros_like(a[..., 0])
        jac[:, :, 0, 12:15] = np.stack([zero, -a[..., 2], a[..., 1]], axis=-1)
        jac[:, :, 1, 12:15] = np.stack([a[..., 2], zero, -a[..., 0]], axis=-1)
        jac[:, :, 2, 12:15] = np.stack([-a[..., 1], a[..., 0], zero], axis=-1)
        # Sums over points and output axes as batched matrix products (BLAS): einsum does them unblocked,
        # and these two contractions were most of a model-selection solve.
        jw_t = (jac * w_g[:, :, None, None]).reshape(nf, -1, nd).transpose(0, 2, 1)
        reg = np.empty((nf, nd, nd))
        reg[order] = mu * (jw_t @ jac.reshape(nf, -1, nd)) + ridge * np.eye(nd)
        rhs = rhs_x.copy()
        rhs[order] += mu * (jw_t @ a.reshape(nf, -1, 1))[..., 0]
        lu = _factor(rows, cols, [dv.ravel(), reg.ravel()], nd * nf)
        z = lu.solve(rhs.ravel()).reshape(nf, nd)
        x_new = z[:, :12].reshape(nf, 3, 4)
        omega = z[:, 12:15]
        d = x_new - x
        move = float(s * np.max(np.linalg.norm(d[:, :, :3], axis=(1, 2)) * radius + np.linalg.norm(d[:, :, 3], axis=1)))
        move = max(move, float(s * np.max(np.linalg.norm(omega, axis=1) * radius)))
        x = x_new
        rot = _rotate(omega, rot)
        if move <= tol:
            break
    return from_param(x), rounds, move <= tol


def _rotate(omega: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``exp([omega]x) @ rot`` per tile (Rodrigues), re-orthonormalised."""
    ang = np.linalg.norm(omega, axis=1)
    axis = omega / np.where(ang > 0, ang, 1.0)[:, None]
    kx = np.zeros((len(omega), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    kx -= kx.transpose(0, 2, 1)
    ex = np.eye(3) + np.sin(ang)[:, None, None] * kx + (1 - np.cos(ang))[:, None, None] * kx @ kx
    u, _, vt = np.linalg.svd(ex @ rot)
    return u @ vt


def optimise_sparse(
    n_tiles: int,
    links: list[TileLink],
    fixed: np.ndarray,
    kind: str,
    lam: float = 0.0,
    *,
    init: np.ndarray | None = None,
    tol: float = 1e-6,
    max_rounds: int = 50,
) -> tuple[np.ndarray, OptimiserInfo]:
    """Solve a tile configuration directly (see the module docstring).

    Parameters
    ----------
    n_tiles : int
        Number of tiles, indexed ``0 .. n_tiles - 1``.
    links : list of TileLink
        The links (world points, per-match weights).
    fixed : (n_tiles,) bool
        Tiles whose model is kept at ``init``. Every connected component of the
        link graph must contain one (the caller fixes a gauge tile otherwise).
    kind : {"translation", "affine"}
        Model of the free tiles.
    lam : float, default 0.0
        Affine only: regularisation toward rigid (BigStitcher's lambda, [0, 1)).
    init : (n_tiles, 4, 4), optional
        Models of the fixed tiles (identity by default).
    tol : float, default 1e-6
        Gauss-Newton stops when no matched point moves more (world units).
    max_rounds : int, default 50
        Upper bound on Gauss-Newton solves (regularised affine).

    Returns
    -------
    models : (n_tiles, 4, 4)
        World -> world correction per tile (tiles without links keep ``init``).
    info : OptimiserInfo
        ``iterations`` = linear solves, ``converged``, final mean tile error.
    """
    if kind not in ("translation", "affine"):
        raise ValueError(f"the sparse solver supports translation and affine, not {kind!r}")
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"the sparse solver needs lambda in [0, 1), got {lam}")
    init = np.tile(np.eye(4), (n_tiles, 1, 1)) if init is None else np.asarray(init, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=bool)
    matches = MatchSet(n_tiles, links)
    free = ~fixed & (matches.count > 0)
    if not np.any(free):
        models = init.copy()
        return models, OptimiserInfo(0, True, matches.error(models)[0])
    if kind == "translation":
        models, rounds, converged = _translation(n_tiles, links, free, init), 1, True
    else:
        models, rounds, converged = _affine(n_tiles, links, free, init, lam, tol, max_rounds)
    return models, OptimiserInfo(rounds, converged, matches.error(models)[0])
