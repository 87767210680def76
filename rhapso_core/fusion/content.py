"""Content-based fusion weights: each view's local contrast (Preibisch et al. 2008).

A view's weight at a voxel is the local variance of its detail,
``c = G_sigma2 * (I - G_sigma1 * I)^2``, computed on the pyramid level the block reads
(sigmas scaled to that level) with mirror extension at the view's own edges (as
BigStitcher does). In the kernel it is interpolated trilinearly like the pixels and
multiplied by the cosine blending weight; the fused value is
``sum(w * I) / sum(w)``. A blurred view has little detail, so where a sharp view
overlaps it the sharp one dominates.

Block-size independence: the weights are computed on the block's source box grown by a
halo of ``r1 + r2`` level voxels per side (``r = round(3 sigma)``, the filters' radii).
Every weight the block samples then comes from taps that lie inside the grown box
(or are mirrored at the view's edge exactly as on the whole view), so it is
bit-identical to the weight computed on the whole view, whichever block asks.
BigStitcher divides its weights by a constant (2048) to keep them in float range; the
ratio ``sum(w * I) / sum(w)`` does not depend on it, so no scale is applied here.
"""

from __future__ import annotations

import numpy as np

from rhapso_core.exact_gaussian import EXACT_INPUTS, gaussian_filter, scipy_radius
from rhapso_core.fusion.geometry import FusionView, view_voxel_size
from rhapso_core.fusion.params import FusionParams
from rhapso_core.image_source import Box, clip_box

__all__ = ["TRUNCATE", "level_sigmas", "halo_voxels", "filter_taps", "grow_box", "content_weights"]

# Filter extent in sigmas; imglib2's Gauss3 (used by BigStitcher) also cuts at about 3 sigma.
TRUNCATE = 3.0


def level_sigmas(view: FusionView, level: int, params: FusionParams) -> tuple[np.ndarray, np.ndarray]:
    """``content_sigma1`` and ``content_sigma2`` in the level's voxels, (z, y, x).

    Parameters
    ----------
    view : FusionView
    level : int
        Pyramid level the block reads.
    params : FusionParams
        ``content_sigma1``, ``content_sigma2`` (x, y, z, view voxels at level 0) and
        ``content_adjust_anisotropy``.

    Returns
    -------
    (3,) float64, (3,) float64
        Sigmas (z, y, x) in level voxels.
    """
    s1 = np.asarray(params.content_sigma1, np.float64)
    s2 = np.asarray(params.content_sigma2, np.float64)
    if params.content_adjust_anisotropy:
        step = view_voxel_size(view)
        rel = step / step.min()
        s1, s2 = s1 / rel, s2 / rel
    f = np.asarray(view.source.level_factors(level)[::-1], np.float64)
    return (s1 / f)[::-1].copy(), (s2 / f)[::-1].copy()


def _radius(sigma_zyx: np.ndarray) -> tuple[int, ...]:
    # scipy's own rule for the kernel half-width, passed explicitly so the halo below is exact.
    return tuple(scipy_radius(s, TRUNCATE) for s in sigma_zyx)


def halo_voxels(sigma1_zyx: np.ndarray, sigma2_zyx: np.ndarray) -> tuple[int, int, int]:
    """Level voxels (z, y, x) a box must grow by so the weights inside it are exact."""
    return tuple(a + b for a, b in zip(_radius(sigma1_zyx), _radius(sigma2_zyx)))  # type: ignore[return-value]


def filter_taps(sigma1_zyx: np.ndarray, sigma2_zyx: np.ndarray) -> int:
    """Kernel taps per voxel of :func:`content_weights`' two separable Gaussians, as the
    symmetric loops of :mod:`rhapso_core.exact_gaussian` count them (radius + 1 per
    axis and filter): the unit of the planner's ``content_filter_taps_per_s``."""
    return sum(r + 1 for r in _radius(sigma1_zyx)) + sum(r + 1 for r in _radius(sigma2_zyx))


def grow_box(box_zyx: Box, halo_zyx, level_shape_zyx) -> Box:
    """``box`` grown by ``halo`` on every side and clipped to the level."""
    grown = tuple((a - h, b + h) for (a, b), h in zip(box_zyx, halo_zyx))
    return clip_box(grown, level_shape_zyx)  # type: ignore[arg-type]


def content_weights(src_zyx: np.ndarray, sigma1_zyx, sigma2_zyx) -> np.ndarray:
    """Local-contrast weights ``G_sigma2 * (I - G_sigma1 * I)^2`` of a source box.

    Parameters
    ----------
    src_zyx : ndarray (z, y, x)
        Pixels of one view's level (any real dtype); not modified.
    sigma1_zyx, sigma2_zyx : (3,) floats
        Gaussian sigmas in the array's voxels (z, y, x).

    Returns
    -------
    ndarray (z, y, x) float32
        Non-negative weights in squared intensity units. The array's faces are
        mirror-extended (without repeating the edge voxel), so only faces that are the
        view's own edges give the whole-view result; callers grow the box by
        :func:`halo_voxels` elsewhere.
    """
    img = np.ascontiguousarray(src_zyx)
    if img.dtype not in EXACT_INPUTS:
        img = img.astype(np.float32)
    s1 = np.asarray(sigma1_zyx, np.float64)
    s2 = np.asarray(sigma2_zyx, np.float64)
    # scipy's gaussian_filter arithmetic, vectorised (exact_gaussian: same bits, 4x faster).
    # One float32 buffer beside the pixels: the smoothed image becomes the squared detail in
    # place, then is smoothed again in place. uint16 pixels are filtered and subtracted as
    # they are (exact in float32, so the same values as a float32 copy, without its memory).
    w = gaussian_filter(img, s1, _radius(s1), "mirror")
    np.subtract(img, w, out=w, dtype=np.float32)
    np.square(w, out=w)
    gaussian_filter(w, s2, _radius(s2), "mirror", output=w)
    # Rounding can leave -0.0 or a negative ulp after the filters; weights must be >= 0.
    np.maximum(w, 0.0, out=w)
    return w
