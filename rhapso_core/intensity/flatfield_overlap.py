"""Refine a channel's flat field with what overlapping views see at the same world points.

A world point seen by views ``a`` and ``b`` (signal above the dark level ``d``) gives

    log(x_a - d) - log(x_b - d) = (gamma_a - gamma_b) + log F(p_a) - log F(p_b)

(``gamma``: a view's log gain; ``p``: the point's in-plane position in each view): the
specimen cancels. The content estimate (:mod:`.flatfield`) cannot tell the vignetting from
the specimen's own structure when the tiles are few (measured: corner terms off by 0.01
to 0.03 on six tiles, a 2-4 % error in the fused image); an overlap sees the same point
near one view's edge and the other's opposite edge, so the even terms show there as a
ratio that changes across the overlap (``u^2`` across an x-overlap, ``u w`` along it).
What overlaps cannot see (odd terms, which the basis leaves out; ``w^2`` without any
y-overlap) is left to the content estimate.

Both are combined as independent estimates: the overlaps' least-squares fit (each pair
weighted by the scatter of its own residuals) and the content estimate as a Gaussian prior with the
covariance of :class:`~.flatfield.ContentEstimate` (the per-view scatter), so neither
weight is a tuned constant. ``log F`` is non-linear in the coefficients; a few
Gauss-Newton steps from the content estimate converge (the correction is small). Samples
whose residual exceeds ``outlier_mad`` robust deviations (misregistered or moving content)
are dropped at each step (the residuals are centred: the log-gains absorb any mean).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from rhapso_core.intensity.flatfield import ContentEstimate
from rhapso_core.intensity.model import FlatField, flatfield_terms, normalised_position
from rhapso_core.intensity.sampling import PairSamples, SampledView

__all__ = ["refine_flatfield"]

_STEPS = 8
# A flat field must stay positive over the tile; the steps are halved until it does.
_MIN_F = 0.05


def _monomials(points_xyz: np.ndarray, size_xyz, terms) -> np.ndarray:
    u = normalised_position(points_xyz[:, 0], size_xyz[0])
    w = normalised_position(points_xyz[:, 1], size_xyz[1])
    return np.stack([u ** i * w ** j for i, j in terms], axis=1)


def _pair_sigma(r: np.ndarray, keep: np.ndarray, pair_of: np.ndarray, n_pairs: int) -> np.ndarray:
    """Per sample, the robust standard deviation (1.4826 MAD) of its pair's residuals.

    Pairs differ in noise (a corner overlap has few voxels per bin, a dim overlap a
    low signal): each is weighted by its own scatter. A pair's figure is kept at least
    a tenth of the median pair's (a pair of near-constant samples must not take all
    the weight).
    """
    sig = np.full(n_pairs, np.nan)
    for k in range(n_pairs):
        rk = r[(pair_of == k) & keep]
        if rk.size >= 3:
            sig[k] = 1.4826 * float(np.median(np.abs(rk - np.median(rk))))
    typical = float(np.nanmedian(sig)) if np.isfinite(sig).any() else 1e-3
    typical = max(typical, 1e-6)
    sig = np.where(np.isfinite(sig), np.maximum(sig, 0.1 * typical), typical)
    return sig[pair_of]


def refine_flatfield(
    views: Sequence[SampledView], samples: Sequence[PairSamples], content: ContentEstimate, outlier_mad: float = 4.0,
) -> FlatField:
    """The flat field of the channel of ``views`` from its overlaps and the content estimate.

    ``views``: the channel's views; ``samples``: pairs among them (others are ignored).
    Returns the content estimate unchanged when no pair has signal above the dark level.
    """
    ff0 = content.flatfield
    terms = flatfield_terms(ff0.degree)
    K = len(terms)
    by_id = {v.view_id: v for v in views}
    pairs = [s for s in samples if s.a in by_id and s.b in by_id and s.n > 0]
    ids = sorted({s.a for s in pairs} | {s.b for s in pairs}, key=repr)
    col = {v: k for k, v in enumerate(ids)}
    V = len(ids)
    rows_a, rows_b, ma, mb, L, pair_of = [], [], [], [], [], []
    for s in pairs:
        sa, sb = s.values_a - ff0.dark, s.values_b - ff0.dark
        ok = (sa > 0) & (sb > 0)
        if not ok.any():
            continue
        rows_a.append(np.full(int(ok.sum()), col[s.a])); rows_b.append(np.full(int(ok.sum()), col[s.b]))
        pair_of.append(np.full(int(ok.sum()), len(L)))
        ma.append(_monomials(s.points_a[ok], by_id[s.a].size_xyz, terms))
        mb.append(_monomials(s.points_b[ok], by_id[s.b].size_xyz, terms))
        L.append(np.log(sa[ok]) - np.log(sb[ok]))
    if not L:
        return ff0
    ia, ib, pair_of = np.concatenate(rows_a), np.concatenate(rows_b), np.concatenate(pair_of)
    n_pairs = len(L)
    ma, mb, L = np.concatenate(ma), np.concatenate(mb), np.concatenate(L)
    n = L.size
    c0 = np.asarray(ff0.coefficients, np.float64)
    if content.covariance is not None:
        # The prior's information; a direction the views do not scatter in is not taken as certain.
        cov = content.covariance + np.eye(K) * max(float(np.trace(content.covariance)) / K, 1e-12) * 1e-3
        prior = np.linalg.inv(cov)
    else:
        prior = np.zeros((K, K))
    gamma = np.zeros(V)
    c = c0.copy()
    keep = np.ones(n, bool)

    def residual(g, cc):
        fa, fb = 1.0 + ma @ cc, 1.0 + mb @ cc
        if min(fa.min(), fb.min()) < _MIN_F:
            return None, fa, fb
        return L - (g[ia] - g[ib]) - (np.log(fa) - np.log(fb)), fa, fb

    r, fa, fb = residual(gamma, c)
    if r is None:
        return ff0
    # Start the gains from the data (the flat field starts at the content estimate).
    for _ in range(2):
        A = np.zeros((n + 1, V)); A[np.arange(n), ia] += 1.0; A[np.arange(n), ib] -= 1.0; A[n, :] = 1.0
        gamma = np.linalg.lstsq(A[np.r_[keep, True]], np.r_[(L - (np.log(fa) - np.log(fb)))[keep], 0.0], rcond=None)[0]
    for _ in range(_STEPS):
        r, fa, fb = residual(gamma, c)
        sigma = _pair_sigma(r, keep, pair_of, n_pairs)
        keep = np.abs(r) <= outlier_mad * sigma
        J = np.zeros((n, V + K))
        J[np.arange(n), ia] += 1.0
        J[np.arange(n), ib] -= 1.0
        J[:, V:] = ma / fa[:, None] - mb / fb[:, None]
        Jk, rk, wk = J[keep], r[keep], 1.0 / sigma[keep] ** 2
        H = Jk.T @ (Jk * wk[:, None])
        g = Jk.T @ (rk * wk)
        H[V:, V:] += prior
        g[V:] -= prior @ (c - c0)
        # Gauge: the gains' mean (a common factor of all views is not the flat field's).
        H[:V, :V] += 1.0
        g[:V] -= gamma.sum()
        delta = np.linalg.lstsq(H, g, rcond=None)[0]
        step = 1.0
        while step > 1e-3:
            r_new, _, _ = residual(gamma + step * delta[:V], c + step * delta[V:])
            if r_new is not None:
                break
            step /= 2
        else:
            break
        gamma, c = gamma + step * delta[:V], c + step * delta[V:]
        if float(np.max(np.abs(step * delta[V:]), initial=0.0)) < 1e-6:
            break
    return FlatField(ff0.degree, tuple(float(v) for v in c), ff0.dark)
