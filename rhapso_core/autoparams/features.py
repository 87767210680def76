"""The size of the specimen's features, from a scale-normalised DoG scale space of a few crops.

The DoG ``(G(s) - G(r s)) / (r - 1)`` approximates ``-s^2 Laplacian(G(s))``, which is
scale-normalised: for a Gaussian blob its peak over ``s`` sits at a fixed multiple of
the blob's sigma (computed below, not assumed). The scale at which the strongest
responses of the crops peak therefore gives the features' equivalent Gaussian sigma,
for blobs and, approximately, for the cross-section of fibres and the grain of texture.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from rhapso_core.exact_gaussian import gaussian_filter, scipy_radius

__all__ = ["feature_sigma", "peak_scale_ratio", "SCALE_RATIO"]

SCALE_RATIO = 1.5  # between successive scales of the search
N_SCALES = 7  # DoG scales 0.67 .. 7.6 voxels: blob sigmas 1 .. 11.4 voxels, from the finest blob a
# voxel grid holds to nuclei that any downsampling would keep
TOP_PEAKS = 16  # strongest maxima per scale and crop that vote
SIGNIFICANCE = 5.0  # a maximum votes when it exceeds this many robust sd of its scale's response
MAX_VOXELS = 120_000  # per crop; the scale search reads no more
TRUNCATE = 3.0  # the blurs' kernels end at 3 sigma (scipy's truncate)


@lru_cache(maxsize=8)
def peak_scale_ratio(k: float) -> float:
    """``s* / sigma_blob`` where ``(G(s) - G(k s)) / (k - 1)`` peaks at a 3D Gaussian blob's centre.

    The centre value of a blob of sigma b blurred by s is proportional to
    ``b^3 / (b^2 + s^2)^(3/2)``; the ratio is found by a fine search over s (b = 1).
    """
    s = np.linspace(0.05, 5.0, 20_000)
    r = (1.0 + s**2) ** -1.5 - (1.0 + (k * s) ** 2) ** -1.5
    return float(s[int(np.argmax(r))])


def _centre_crop(a: np.ndarray, max_voxels: int) -> np.ndarray:
    if a.size <= max_voxels:
        return a
    f = (max_voxels / a.size) ** (1.0 / 3.0)
    keep = [max(8, min(n, int(math.ceil(n * f)))) for n in a.shape]
    while np.prod(keep) > max_voxels and max(keep) > 8:
        i = int(np.argmax(keep))
        keep[i] = max(8, int(keep[i] * 0.9))
    sl = tuple(slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(a.shape, keep))
    return a[sl]


def _blur(a: np.ndarray, sigma_zyx) -> np.ndarray:
    """scipy's ``gaussian_filter(a, sigma, mode="reflect", truncate=3.0)``, the same bits, for 3-D
    float32 crops (:mod:`rhapso_core.exact_gaussian`; 1.75-2.4x faster here:
    ``bench/bench_alignment_filters.py``)."""
    if a.ndim != 3 or a.dtype != np.float32:
        return ndimage.gaussian_filter(a, sigma_zyx, mode="reflect", truncate=TRUNCATE)
    return gaussian_filter(np.ascontiguousarray(a), sigma_zyx, [scipy_radius(s, TRUNCATE) for s in sigma_zyx], "reflect")


def _scale_scores(img: np.ndarray, anisotropy: float) -> np.ndarray:
    """Mean of the strongest positive maxima of each scale's normalised DoG (bright features)."""
    a = _centre_crop(img, MAX_VOXELS).astype(np.float32)
    a = a - np.float32(np.median(a.ravel()[::7]))
    scales = SCALE_RATIO ** (np.arange(N_SCALES + 1) - 1.0)
    blurred = []
    for s in scales:
        sz = s / anisotropy  # physically isotropic: z voxels are anisotropy times longer
        blurred.append(_blur(a, (sz if sz > 0.3 else 0.0, s, s)))
    scores = np.zeros(N_SCALES)
    for i in range(N_SCALES):
        r = (blurred[i] - blurred[i + 1]) / np.float32(SCALE_RATIO - 1.0)
        # Only maxima well above this scale's own noise vote: the scale-normalised response of noise
        # grows with the scale in 3D, so weak maxima would drag the estimate to coarse scales.
        sub = r.ravel()[::7]
        noise = 1.4826 * float(np.median(np.abs(sub - np.median(sub))))
        peak = (r == ndimage.maximum_filter(r, size=3, mode="nearest")) & (r > SIGNIFICANCE * noise)
        vals = np.sort(r[peak])[::-1][:TOP_PEAKS]
        scores[i] = float(vals.mean()) if vals.size else 0.0
    return scores


def feature_sigma(crops: list[np.ndarray], anisotropy: float) -> tuple[float | None, list[float]]:
    """Equivalent Gaussian sigma of the features (full-resolution xy voxels), and the scale scores.

    None when no crop shows a positive response (a blank or constant image).
    """
    if not crops:
        return None, []
    total = np.zeros(N_SCALES)
    for c in crops:
        sc = _scale_scores(np.asarray(c), anisotropy)
        if sc.max() > 0:
            total += sc / sc.max()  # each crop one vote, whatever its brightness
    if not total.max() > 0:
        return None, total.tolist()
    i = int(np.argmax(total))
    # parabolic refinement in log-scale between neighbouring scales
    x = float(i)
    if 0 < i < N_SCALES - 1:
        y0, y1, y2 = total[i - 1], total[i], total[i + 1]
        den = y0 - 2.0 * y1 + y2
        if den < 0:
            x = i + 0.5 * (y0 - y2) / den
    s_peak = SCALE_RATIO ** (x - 1.0)
    return s_peak / peak_scale_ratio(SCALE_RATIO), total.tolist()
