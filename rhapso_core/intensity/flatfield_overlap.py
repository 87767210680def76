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
    fit_dark: bool = False, return_gains: bool = False,
) -> FlatField:
    """The flat field of the channel of ``views`` from its overlaps and the content estimate.

    ``views``: the channel's views; ``samples``: pairs among them (others are ignored).
    ``fit_dark``: also fit the dark level (the content estimate's is then only the start):
    two views of different gain see ``x_a - d = r (x_b - d)``, a line whose intercept
    ``d (1 - r)`` the overlaps measure wherever their content spans a range of brightness.
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
    rows_a, rows_b, ma, mb, xa, xb, pair_of = [], [], [], [], [], [], []
    for s in pairs:
        ok = (s.values_a > ff0.dark) & (s.values_b > ff0.dark)
        if not ok.any():
            continue
        rows_a.append(np.full(int(ok.sum()), col[s.a])); rows_b.append(np.full(int(ok.sum()), col[s.b]))
        pair_of.append(np.full(int(ok.sum()), len(xa)))
        ma.append(_monomials(s.points_a[ok], by_id[s.a].size_xyz, terms))
        mb.append(_monomials(s.points_b[ok], by_id[s.b].size_xyz, terms))
        xa.append(s.values_a[ok]); xb.append(s.values_b[ok])
    if not xa:
        return (ff0, {}) if return_gains else ff0
    ia, ib, pair_of = np.concatenate(rows_a), np.concatenate(rows_b), np.concatenate(pair_of)
    n_pairs = len(xa)
    ma, mb, xa, xb = np.concatenate(ma), np.concatenate(mb), np.concatenate(xa), np.concatenate(xb)
    n = xa.size
    # The dark level stays below every sample used, by a tenth of the smallest signal above it.
    d_max = float(min(xa.min(), xb.min()))
    D = 1 if fit_dark else 0
    c0 = np.asarray(ff0.coefficients, np.float64)
    if content.covariance is not None:
        # The prior's information; a direction the views do not scatter in is not taken as certain.
        cov = content.covariance + np.eye(K) * max(float(np.trace(content.covariance)) / K, 1e-12) * 1e-3
        prior = np.linalg.inv(cov)
    else:
        prior = np.zeros((K, K))
    gamma = np.zeros(V)
    c = c0.copy()
    d = float(ff0.dark)
    keep = np.ones(n, bool)

    def residual(g, cc, dd):
        fa, fb = 1.0 + ma @ cc, 1.0 + mb @ cc
        if min(fa.min(), fb.min()) < _MIN_F or dd > d_max - 0.1 * max(d_max - ff0.dark, 1e-9):
            return None, fa, fb
        L = np.log(xa - dd) - np.log(xb - dd)
        return L - (g[ia] - g[ib]) - (np.log(fa) - np.log(fb)), fa, fb

    r, fa, fb = residual(gamma, c, d)
    if r is None:
        return (ff0, {}) if return_gains else ff0
    # Start the gains from the data (the flat field starts at the content estimate).
    A = np.zeros((n + 1, V)); A[np.arange(n), ia] += 1.0; A[np.arange(n), ib] -= 1.0; A[n, :] = 1.0
    gamma = np.linalg.lstsq(A, np.r_[r, 0.0], rcond=None)[0]
    for _ in range(_STEPS + 4 * D):
        r, fa, fb = residual(gamma, c, d)
        sigma = _pair_sigma(r, keep, pair_of, n_pairs)
        keep = np.abs(r) <= outlier_mad * sigma
        J = np.zeros((n, V + K + D))
        J[np.arange(n), ia] += 1.0
        J[np.arange(n), ib] -= 1.0
        J[:, V:V + K] = ma / fa[:, None] - mb / fb[:, None]
        if D:
            # r = L(d) - model: the model's derivative is minus that of L.
            J[:, -1] = 1.0 / (xa - d) - 1.0 / (xb - d)
        Jk, rk, wk = J[keep], r[keep], 1.0 / sigma[keep] ** 2
        H = Jk.T @ (Jk * wk[:, None])
        g = Jk.T @ (rk * wk)
        H[V:V + K, V:V + K] += prior
        g[V:V + K] -= prior @ (c - c0)
        # Gauge: the gains' mean (a common factor of all views is not the flat field's).
        H[:V, :V] += 1.0
        g[:V] -= gamma.sum()
        delta = np.linalg.lstsq(H, g, rcond=None)[0]
        step = 1.0
        while step > 1e-3:
            r_new, _, _ = residual(gamma + step * delta[:V], c + step * delta[V:V + K], d + step * delta[-1] * D)
            if r_new is not None:
                break
            step /= 2
        else:
            break
        gamma, c = gamma + step * delta[:V], c + step * delta[V:V + K]
        d += step * float(delta[-1]) * D
        if float(np.max(np.abs(step * delta[V:]), initial=0.0)) < 1e-6 * (1.0 + D * abs(d)):
            break
    out = FlatField(ff0.degree, tuple(float(v) for v in c), d)
    if return_gains:
        return out, {v: float(np.exp(gamma[k])) for v, k in col.items()}
    return out


def fit_dark_level(
    views: Sequence[SampledView], samples: Sequence[PairSamples], content: ContentEstimate, outlier_mad: float = 4.0,
) -> float:
    """The dark level under which the overlaps agree best, each candidate with its own refined flat field.

    Two views of a point agree, in counts, when ``x_a - d = R (x_b - d)`` with ``R`` their
    gain and flat-field ratio. The log-ratio fit of :func:`refine_flatfield` cannot choose
    ``d`` itself (all ratios tend to 1 as ``d`` falls, which any misfit prefers), so ``d`` is
    chosen by the median of ``|x_a - d - R (x_b - d)| / ((x_a + x_b) / 2)``, a figure in the
    counts' own scale, by golden-section search between 0 and the darkest sample.
    """
    by_id = {v.view_id: v for v in views}
    pairs = [s for s in samples if s.a in by_id and s.b in by_id and s.n > 0]
    if not pairs:
        return content.flatfield.dark
    terms = flatfield_terms(content.flatfield.degree)
    lo_all = float(min(min(s.values_a.min(), s.values_b.min()) for s in pairs))

    def misfit(d):
        trial = ContentEstimate(FlatField(content.flatfield.degree, content.flatfield.coefficients, d),
                                content.covariance, content.n_views)
        ff, gains = refine_flatfield(views, pairs, trial, outlier_mad, return_gains=True)
        if not gains:
            return np.inf
        errs = []
        for s in pairs:
            fa = ff.evaluate(*_uw(s.points_a, by_id[s.a].size_xyz))
            fb = ff.evaluate(*_uw(s.points_b, by_id[s.b].size_xyz))
            ratio = gains.get(s.a, 1.0) * fa / (gains.get(s.b, 1.0) * fb)
            errs.append(np.abs(s.values_a - d - ratio * (s.values_b - d)) / (0.5 * (s.values_a + s.values_b)))
        return float(np.median(np.concatenate(errs)))

    del terms
    a, b = 0.0, max(lo_all - 1e-3 * max(abs(lo_all), 1.0), 0.0)
    if b <= a:
        return content.flatfield.dark
    phi = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = b - phi * (b - a), a + phi * (b - a)
    f1, f2 = misfit(x1), misfit(x2)
    while b - a > 1e-3 * max(lo_all, 1.0):
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - phi * (b - a)
            f1 = misfit(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + phi * (b - a)
            f2 = misfit(x2)
    return float(0.5 * (a + b))


def _uw(points_xyz: np.ndarray, size_xyz):
    return normalised_position(points_xyz[:, 0], size_xyz[0]), normalised_position(points_xyz[:, 1], size_xyz[1])
