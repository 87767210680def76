"""Numba kernels that evaluate analytic primitives at a tile's voxels.

Every kernel takes the tile's view voxel -> um affine as ``lin`` (3x3) and ``t``
(3,), both xyz, and writes into a float32 (z, y, x) array. Each primitive is
evaluated only in the voxel box around its footprint, so cost scales with the
number of primitives, not primitives times voxels.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["background", "splat_blobs", "splat_segments"]


@njit(cache=True)
def background(out, lin, t, level, kvec, amp, phase):
    """``out[z, y, x] = level * (1 + sum_k amp_k cos(kvec_k . w + phase_k))`` at world ``w`` (um)."""
    nz, ny, nx = out.shape
    nk = amp.shape[0]
    for z in range(nz):
        for y in range(ny):
            b0 = lin[0, 1] * y + lin[0, 2] * z + t[0]
            b1 = lin[1, 1] * y + lin[1, 2] * z + t[1]
            b2 = lin[2, 1] * y + lin[2, 2] * z + t[2]
            for x in range(nx):
                w0 = b0 + lin[0, 0] * x
                w1 = b1 + lin[1, 0] * x
                w2 = b2 + lin[2, 0] * x
                s = 1.0
                for k in range(nk):
                    s += amp[k] * math.cos(kvec[k, 0] * w0 + kvec[k, 1] * w1 + kvec[k, 2] * w2 + phase[k])
                out[z, y, x] = level * s


@njit(cache=True)
def _window(c, h, n):
    lo = max(int(math.ceil(c - h)), 0)
    hi = min(int(math.floor(c + h)), n - 1)
    return lo, hi


@njit(cache=True)
def splat_blobs(out, lin, t, inv_lin, centres, sigma, amp, n_sigma):
    """Add isotropic Gaussians ``amp * exp(-|w - c|^2 / (2 sigma^2))`` (um) to ``out``.

    Each blob is evaluated within ``n_sigma`` sigmas of its centre.
    """
    nz, ny, nx = out.shape
    # Voxel-frame covariance of a unit isotropic world Gaussian is inv_lin @ inv_lin.T.
    m0 = math.sqrt(inv_lin[0, 0] ** 2 + inv_lin[0, 1] ** 2 + inv_lin[0, 2] ** 2)
    m1 = math.sqrt(inv_lin[1, 0] ** 2 + inv_lin[1, 1] ** 2 + inv_lin[1, 2] ** 2)
    m2 = math.sqrt(inv_lin[2, 0] ** 2 + inv_lin[2, 1] ** 2 + inv_lin[2, 2] ** 2)
    for b in range(centres.shape[0]):
        d0 = centres[b, 0] - t[0]
        d1 = centres[b, 1] - t[1]
        d2 = centres[b, 2] - t[2]
        cx = inv_lin[0, 0] * d0 + inv_lin[0, 1] * d1 + inv_lin[0, 2] * d2
        cy = inv_lin[1, 0] * d0 + inv_lin[1, 1] * d1 + inv_lin[1, 2] * d2
        cz = inv_lin[2, 0] * d0 + inv_lin[2, 1] * d1 + inv_lin[2, 2] * d2
        r = n_sigma * sigma[b]
        x0, x1 = _window(cx, r * m0, nx)
        y0, y1 = _window(cy, r * m1, ny)
        z0, z1 = _window(cz, r * m2, nz)
        if x0 > x1 or y0 > y1 or z0 > z1:
            continue
        inv2s2 = 1.0 / (2.0 * sigma[b] * sigma[b])
        cut = r * r
        a = amp[b]
        for z in range(z0, z1 + 1):
            vz = z - cz
            for y in range(y0, y1 + 1):
                vy = y - cy
                e0 = lin[0, 1] * vy + lin[0, 2] * vz
                e1 = lin[1, 1] * vy + lin[1, 2] * vz
                e2 = lin[2, 1] * vy + lin[2, 2] * vz
                for x in range(x0, x1 + 1):
                    vx = x - cx
                    w0 = e0 + lin[0, 0] * vx
                    w1 = e1 + lin[1, 0] * vx
                    w2 = e2 + lin[2, 0] * vx
                    r2 = w0 * w0 + w1 * w1 + w2 * w2
                    if r2 < cut:
                        out[z, y, x] += a * math.exp(-r2 * inv2s2)


@njit(cache=True)
def splat_segments(out, lin, t, inv_lin, p0, p1, sigma, amp, n_sigma):
    """``out = max(out, amp * exp(-dist(w, segment)^2 / (2 sigma^2)))`` per segment (um)."""
    nz, ny, nx = out.shape
    m0 = math.sqrt(inv_lin[0, 0] ** 2 + inv_lin[0, 1] ** 2 + inv_lin[0, 2] ** 2)
    m1 = math.sqrt(inv_lin[1, 0] ** 2 + inv_lin[1, 1] ** 2 + inv_lin[1, 2] ** 2)
    m2 = math.sqrt(inv_lin[2, 0] ** 2 + inv_lin[2, 1] ** 2 + inv_lin[2, 2] ** 2)
    for s in range(p0.shape[0]):
        a0 = p0[s, 0] - t[0]
        a1 = p0[s, 1] - t[1]
        a2 = p0[s, 2] - t[2]
        b0 = p1[s, 0] - t[0]
        b1 = p1[s, 1] - t[1]
        b2 = p1[s, 2] - t[2]
        ax = inv_lin[0, 0] * a0 + inv_lin[0, 1] * a1 + inv_lin[0, 2] * a2
        ay = inv_lin[1, 0] * a0 + inv_lin[1, 1] * a1 + inv_lin[1, 2] * a2
        az = inv_lin[2, 0] * a0 + inv_lin[2, 1] * a1 + inv_lin[2, 2] * a2
        bx = inv_lin[0, 0] * b0 + inv_lin[0, 1] * b1 + inv_lin[0, 2] * b2
        by = inv_lin[1, 0] * b0 + inv_lin[1, 1] * b1 + inv_lin[1, 2] * b2
        bz = inv_lin[2, 0] * b0 + inv_lin[2, 1] * b1 + inv_lin[2, 2] * b2
        r = n_sigma * sigma[s]
        x0 = max(int(math.ceil(min(ax, bx) - r * m0)), 0)
        x1 = min(int(math.floor(max(ax, bx) + r * m0)), nx - 1)
        y0 = max(int(math.ceil(min(ay, by) - r * m1)), 0)
        y1 = min(int(math.floor(max(ay, by) + r * m1)), ny - 1)
        z0 = max(int(math.ceil(min(az, bz) - r * m2)), 0)
        z1 = min(int(math.floor(max(az, bz) + r * m2)), nz - 1)
        if x0 > x1 or y0 > y1 or z0 > z1:
            continue
        g0 = p1[s, 0] - p0[s, 0]
        g1 = p1[s, 1] - p0[s, 1]
        g2 = p1[s, 2] - p0[s, 2]
        gg = g0 * g0 + g1 * g1 + g2 * g2
        if gg <= 0.0:
            gg = 1e-300
        inv2s2 = 1.0 / (2.0 * sigma[s] * sigma[s])
        cut = r * r
        a = amp[s]
        for z in range(z0, z1 + 1):
            vz = z - az
            for y in range(y0, y1 + 1):
                vy = y - ay
                e0 = lin[0, 1] * vy + lin[0, 2] * vz
                e1 = lin[1, 1] * vy + lin[1, 2] * vz
                e2 = lin[2, 1] * vy + lin[2, 2] * vz
                for x in range(x0, x1 + 1):
                    vx = x - ax
                    # world offset of the voxel from the segment start (um)
                    w0 = e0 + lin[0, 0] * vx
                    w1 = e1 + lin[1, 0] * vx
                    w2 = e2 + lin[2, 0] * vx
                    u = (w0 * g0 + w1 * g1 + w2 * g2) / gg
                    if u < 0.0:
                        u = 0.0
                    elif u > 1.0:
                        u = 1.0
                    q0 = w0 - u * g0
                    q1 = w1 - u * g1
                    q2 = w2 - u * g2
                    r2 = q0 * q0 + q1 * q1 + q2 * q2
                    if r2 < cut:
                        v = a * math.exp(-r2 * inv2s2)
                        if v > out[z, y, x]:
                            out[z, y, x] = v
