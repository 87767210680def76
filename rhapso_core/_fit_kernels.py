"""Numba kernels of the model fits: one small weighted least-squares fit per sample, no LAPACK call.

RANSAC fits 10,000 minimal samples per pair and the iterative solver fits every tile once
per iteration; NumPy's batched ``svd`` / ``solve`` / ``einsum`` spend most of their time on
per-matrix and per-call overhead at these sizes (3x3 systems of 3 to 30 points). Here each
fit is a few hundred flops in one compiled loop:

* **rigid** (Kabsch / Horn, reflections excluded): the 3x3 weighted cross-covariance
  ``H = sum w dp dq^T`` is decomposed by one-sided (Hestenes) Jacobi, which computes the
  singular values to high *relative* accuracy (the degeneracy test compares the middle one
  with the largest, so forming ``H^T H`` would square that ratio away). The rotation is
  ``V diag(1, 1, det V) U^T`` with ``u2 = u0 x u1``, which is Kabsch's
  ``V diag(1, 1, sign det(V U^T)) U^T`` for any completion of ``U`` and needs no third left
  singular vector (it is undetermined whenever the points are coplanar, e.g. every
  three-point sample).
* **affine**: the normal equations ``L cov_pp = cov_qp`` solved by Gaussian elimination
  with partial pivoting (LAPACK ``gesv``'s algorithm), after the same singular-value test
  of ``cov_pp`` as before (coplanar points).
* **translation**: the weighted centroid shift.

``kind`` codes: ``TRANSLATION``, ``RIGID``, ``AFFINE``; ``NO_KIND`` (-1) for "none" (no
regulariser). A fit whose points do not determine it, or whose weights sum to <= 0, is all
NaN (the contract of :meth:`rhapso_core.models.Model.fit_batch`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rhapso_core.fit_codes import AFFINE, DEGENERATE, NO_KIND, RIGID, TRANSLATION  # noqa: F401 (the kernels' globals)

__all__ = ["NO_KIND", "TRANSLATION", "RIGID", "AFFINE", "DEGENERATE", "fit_samples", "fit_one"]

# Jacobi stops rotating a column pair once its cosine is below this (a few ulps); 3x3 converges
# in 3-5 sweeps, the cap only guards against a pathological input cycling on round-off.
_ORTHO_TOL = 4.0 * np.finfo(np.float64).eps
_MAX_SWEEPS = 40


@njit(cache=True, nogil=True)
def _jacobi_svd3(a, v, s):  # pragma: no cover - compiled
    """One-sided Jacobi SVD of the 3x3 ``a`` in place: afterwards ``a = U diag(s)`` (columns) and
    the original ``a = U diag(s) V^T``; returns the column order of descending ``s``."""
    for i in range(3):
        for j in range(3):
            v[i, j] = 1.0 if i == j else 0.0
    for _ in range(_MAX_SWEEPS):
        rotated = False
        for pair in range(3):
            i = 0 if pair < 2 else 1
            j = 1 if pair == 0 else 2
            alpha = a[0, i] * a[0, i] + a[1, i] * a[1, i] + a[2, i] * a[2, i]
            beta = a[0, j] * a[0, j] + a[1, j] * a[1, j] + a[2, j] * a[2, j]
            gamma = a[0, i] * a[0, j] + a[1, i] * a[1, j] + a[2, i] * a[2, j]
            if gamma == 0.0 or abs(gamma) <= _ORTHO_TOL * math.sqrt(alpha) * math.sqrt(beta):
                continue
            rotated = True
            zeta = (beta - alpha) / (2.0 * gamma)
            az = abs(zeta)
            # t = sign / (|zeta| + sqrt(1 + zeta^2)); 1 / (2 |zeta|) where zeta^2 would overflow
            t = math.copysign(1.0 / (az + math.sqrt(1.0 + az * az)) if az < 1e150 else 0.5 / az, zeta)
            c = 1.0 / math.sqrt(1.0 + t * t)
            sn = c * t
            for r in range(3):
                ai = a[r, i]
                aj = a[r, j]
                a[r, i] = c * ai - sn * aj
                a[r, j] = sn * ai + c * aj
                vi = v[r, i]
                vj = v[r, j]
                v[r, i] = c * vi - sn * vj
                v[r, j] = sn * vi + c * vj
        if not rotated:
            break
    for k in range(3):
        s[k] = math.sqrt(a[0, k] * a[0, k] + a[1, k] * a[1, k] + a[2, k] * a[2, k])
    o0, o1, o2 = 0, 1, 2
    if s[o1] > s[o0]:
        o0, o1 = o1, o0
    if s[o2] > s[o1]:
        o1, o2 = o2, o1
    if s[o1] > s[o0]:
        o0, o1 = o1, o0
    return o0, o1, o2


@njit(cache=True, nogil=True)
def fit_one(p, q, w, bp, bq, n, kind, out, bo, h, v, s, m, rhs):  # pragma: no cover - compiled
    """Fit ``kind`` to the first ``n`` matches ``p[bp, k] -> q[bq, k]`` with weights ``w[bp, k]`` into the
    4x4 ``out[bo]``.

    Rows of batches rather than slices: one compiled specialisation serves every caller. ``h``, ``v``,
    ``m``, ``rhs`` (3x3) and ``s`` (3,) are scratch. Returns False (``out`` all NaN) when the fit is
    ill-defined.
    """
    wsum = 0.0
    pc0 = pc1 = pc2 = qc0 = qc1 = qc2 = 0.0
    for k in range(n):
        wk = w[bp, k]
        wsum += wk
        pc0 += wk * p[bp, k, 0]
        pc1 += wk * p[bp, k, 1]
        pc2 += wk * p[bp, k, 2]
        qc0 += wk * q[bq, k, 0]
        qc1 += wk * q[bq, k, 1]
        qc2 += wk * q[bq, k, 2]
    if not wsum > 0.0:
        out[bo, :, :] = np.nan
        return False
    pc0 /= wsum
    pc1 /= wsum
    pc2 /= wsum
    qc0 /= wsum
    qc1 /= wsum
    qc2 /= wsum
    out[bo, 3, 0] = 0.0
    out[bo, 3, 1] = 0.0
    out[bo, 3, 2] = 0.0
    out[bo, 3, 3] = 1.0
    if kind == TRANSLATION:
        for i in range(3):
            for j in range(3):
                out[bo, i, j] = 1.0 if i == j else 0.0
    else:
        # h: rigid, sum w dp dq^T; affine, cov_pp = sum w dp dp^T (m holds cov_qp = sum w dq dp^T)
        for i in range(3):
            for j in range(3):
                h[i, j] = 0.0
                m[i, j] = 0.0
        for k in range(n):
            wk = w[bp, k]
            d0 = p[bp, k, 0] - pc0
            d1 = p[bp, k, 1] - pc1
            d2 = p[bp, k, 2] - pc2
            e0 = q[bq, k, 0] - qc0
            e1 = q[bq, k, 1] - qc1
            e2 = q[bq, k, 2] - qc2
            if kind == RIGID:
                h[0, 0] += wk * d0 * e0
                h[0, 1] += wk * d0 * e1
                h[0, 2] += wk * d0 * e2
                h[1, 0] += wk * d1 * e0
                h[1, 1] += wk * d1 * e1
                h[1, 2] += wk * d1 * e2
                h[2, 0] += wk * d2 * e0
                h[2, 1] += wk * d2 * e1
                h[2, 2] += wk * d2 * e2
            else:
                h[0, 0] += wk * d0 * d0
                h[0, 1] += wk * d0 * d1
                h[0, 2] += wk * d0 * d2
                h[1, 1] += wk * d1 * d1
                h[1, 2] += wk * d1 * d2
                h[2, 2] += wk * d2 * d2
                m[0, 0] += wk * e0 * d0
                m[0, 1] += wk * e0 * d1
                m[0, 2] += wk * e0 * d2
                m[1, 0] += wk * e1 * d0
                m[1, 1] += wk * e1 * d1
                m[1, 2] += wk * e1 * d2
                m[2, 0] += wk * e2 * d0
                m[2, 1] += wk * e2 * d1
                m[2, 2] += wk * e2 * d2
        if kind == AFFINE:
            h[1, 0] = h[0, 1]
            h[2, 0] = h[0, 2]
            h[2, 1] = h[1, 2]
            # rhs = cov_pp (kept for the solve; h is overwritten by the SVD)
            for i in range(3):
                for j in range(3):
                    rhs[i, j] = h[i, j]
        o0, o1, o2 = _jacobi_svd3(h, v, s)
        if kind == RIGID:
            # Collinear points leave the rotation about their line free.
            if not s[o1] > DEGENERATE * max(s[o0], 1e-300):
                out[bo, :, :] = np.nan
                return False
            u00 = h[0, o0] / s[o0]
            u01 = h[1, o0] / s[o0]
            u02 = h[2, o0] / s[o0]
            u10 = h[0, o1] / s[o1]
            u11 = h[1, o1] / s[o1]
            u12 = h[2, o1] / s[o1]
            u20 = u01 * u12 - u02 * u11
            u21 = u02 * u10 - u00 * u12
            u22 = u00 * u11 - u01 * u10
            det_v = (
                v[0, o0] * (v[1, o1] * v[2, o2] - v[2, o1] * v[1, o2])
                - v[0, o1] * (v[1, o0] * v[2, o2] - v[2, o0] * v[1, o2])
                + v[0, o2] * (v[1, o0] * v[2, o1] - v[2, o0] * v[1, o1])
            )
            d = 1.0 if det_v >= 0.0 else -1.0
            for i in range(3):
                a0 = v[i, o0]
                a1 = v[i, o1]
                a2 = d * v[i, o2]
                out[bo, i, 0] = a0 * u00 + a1 * u10 + a2 * u20
                out[bo, i, 1] = a0 * u01 + a1 * u11 + a2 * u21
                out[bo, i, 2] = a0 * u02 + a1 * u12 + a2 * u22
        else:
            # Coplanar points leave the affine's normal direction free.
            if not s[o2] > DEGENERATE * max(s[o0], 1e-300):
                out[bo, :, :] = np.nan
                return False
            # Solve L cov_pp = cov_qp, i.e. cov_pp^T L^T = cov_qp^T, with partial pivoting: rows of
            # ``rhs`` are the system, columns of ``h`` (reused) the right-hand sides L^T.
            for i in range(3):
                for j in range(3):
                    v[i, j] = rhs[j, i]  # cov_pp^T
                    h[i, j] = m[j, i]  # cov_qp^T
            for k in range(3):
                piv = k
                for r in range(k + 1, 3):
                    if abs(v[r, k]) > abs(v[piv, k]):
                        piv = r
                if piv != k:
                    for j in range(3):
                        tmp = v[k, j]
                        v[k, j] = v[piv, j]
                        v[piv, j] = tmp
                        tmp = h[k, j]
                        h[k, j] = h[piv, j]
                        h[piv, j] = tmp
                inv = 1.0 / v[k, k]
                for r in range(k + 1, 3):
                    f = v[r, k] * inv
                    for j in range(k + 1, 3):
                        v[r, j] -= f * v[k, j]
                    for j in range(3):
                        h[r, j] -= f * h[k, j]
            for j in range(3):
                for k in range(2, -1, -1):
                    acc = h[k, j]
                    for c in range(k + 1, 3):
                        acc -= v[k, c] * h[c, j]
                    h[k, j] = acc / v[k, k]
            for i in range(3):
                for j in range(3):
                    out[bo, i, j] = h[j, i]
    out[bo, 0, 3] = qc0 - (out[bo, 0, 0] * pc0 + out[bo, 0, 1] * pc1 + out[bo, 0, 2] * pc2)
    out[bo, 1, 3] = qc1 - (out[bo, 1, 0] * pc0 + out[bo, 1, 1] * pc1 + out[bo, 1, 2] * pc2)
    out[bo, 2, 3] = qc2 - (out[bo, 2, 0] * pc0 + out[bo, 2, 1] * pc1 + out[bo, 2, 2] * pc2)
    return True


@njit(cache=True, nogil=True)
def fit_blend(p, q, w, bp, bq, n, main, reg, lam, out, bo, tmp, h, v, s, m, rhs):  # pragma: no cover - compiled
    """``main`` fitted into ``out[bo]``, blended ``(1 - lam) * main + lam * reg`` when ``reg`` is a kind and
    ``lam != 0`` (``tmp``: (1, 4, 4) scratch); all NaN if either fit is ill-defined. Returns whether the
    result is finite."""
    if not fit_one(p, q, w, bp, bq, n, main, out, bo, h, v, s, m, rhs):
        return False
    if reg == NO_KIND or lam == 0.0:
        return True
    if not fit_one(p, q, w, bp, bq, n, reg, tmp, 0, h, v, s, m, rhs):
        out[bo, :, :] = np.nan
        return False
    for i in range(4):
        for j in range(4):
            out[bo, i, j] = (1.0 - lam) * out[bo, i, j] + lam * tmp[0, i, j]
    return True


@njit(cache=True, nogil=True)
def fit_samples(p, q, w, main, reg, lam):  # pragma: no cover - compiled
    """Fit every sample ``b`` of ``p, q`` (B, N, 3) with weights ``w`` (B, N): (B, 4, 4), NaN rows
    where ill-defined (see :func:`fit_blend`)."""
    nb = p.shape[0]
    out = np.empty((nb, 4, 4))
    tmp = np.empty((1, 4, 4))
    h = np.empty((3, 3))
    v = np.empty((3, 3))
    m = np.empty((3, 3))
    rhs = np.empty((3, 3))
    s = np.empty(3)
    for b in range(nb):
        fit_blend(p, q, w, b, b, p.shape[1], main, reg, lam, out, b, tmp, h, v, s, m, rhs)
    return out
