"""Synthetic ground truth for detection tests: Gaussian blobs with known sub-voxel centres."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def random_centres(rng, shape_zyx, n, margin, min_dist):
    """Up to n centres (N, 3) zyx, at least ``margin`` voxels from the borders and
    ``min_dist`` voxels (Euclidean, in voxels scaled by ``min_dist`` per axis) apart."""
    margin = np.broadcast_to(np.asarray(margin, float), (3,))
    md = np.broadcast_to(np.asarray(min_dist, float), (3,))
    lo = margin
    hi = np.asarray(shape_zyx, float) - 1 - margin
    out = []
    for _ in range(50 * n):
        c = rng.uniform(lo, hi)
        if all(np.sum(((c - o) / md) ** 2) >= 1.0 for o in out):
            out.append(c)
            if len(out) == n:
                break
    return np.array(out)


def render(shape_zyx, centres_zyx, amps, sigma_zyx, background=100.0):
    """float64 image: background + sum of point-sampled Gaussians (sigma per axis, voxels)."""
    img = np.full(shape_zyx, background, np.float64)
    s = np.broadcast_to(np.asarray(sigma_zyx, float), (3,))
    for c, a in zip(centres_zyx, amps):
        r = np.ceil(5 * s).astype(int)
        lo = np.maximum(np.floor(c).astype(int) - r, 0)
        hi = np.minimum(np.floor(c).astype(int) + r + 2, shape_zyx)
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        d2 = ((zz - c[0]) / s[0]) ** 2 + ((yy - c[1]) / s[1]) ** 2 + ((xx - c[2]) / s[2]) ** 2
        img[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += a * np.exp(-0.5 * d2)
    return img


def add_noise(rng, img, read_sigma=3.0):
    """Poisson shot noise plus Gaussian read noise, rounded to uint16."""
    noisy = rng.poisson(np.maximum(img, 0)).astype(np.float64) + rng.normal(0, read_sigma, img.shape)
    return np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)


def match(true_xyz, found_xyz, radius):
    """For each true point, the distance to the nearest found point (inf if none within radius)."""
    if len(found_xyz) == 0:
        return np.full(len(true_xyz), np.inf), np.full(len(true_xyz), -1)
    d, i = cKDTree(found_xyz).query(true_xyz, distance_upper_bound=radius)
    return d, i


def mean_downsample(a, f_zyx):
    """Block mean (NGFF / BigStitcher geometry), partial blocks dropped, rounded to a's dtype."""
    f = tuple(int(v) for v in f_zyx)
    n = tuple(s // k for s, k in zip(a.shape, f))
    b = a[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]].reshape(n[0], f[0], n[1], f[1], n[2], f[2])
    m = b.mean(axis=(1, 3, 5))
    return np.rint(m).astype(a.dtype) if np.issubdtype(a.dtype, np.integer) else m
