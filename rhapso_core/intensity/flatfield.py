"""Flat field (vignetting) of a channel, estimated from the content of all its tiles.

Where a tile is dimmed by its optics, everything it images above the camera's dark
level ``d`` is dimmed by the same factor ``F(u, w)`` (``u``, ``w``: in-plane position,
-1 to 1 across the tile). With tiles at many places in the specimen, the specimen is
on average the same at every pixel, so the median over tiles and planes of each tile's
normalised signal follows ``F``:

1. each view is read at the finest pyramid level whose planes have at most
   ``max_plane_pixels`` pixels (a smooth profile needs no more, and coarse levels have
   less noise);
2. per view, the signal ``x - d`` is divided by its median (the view's gain cancels) and
   its per-pixel median over planes taken;
3. a centrally symmetric polynomial ``P(u, w)`` (:func:`~rhapso_core.intensity.model.flatfield_terms`)
   is fitted by least squares to all views' pixels (then once more without pixels
   beyond 4 robust deviations); ``F = P / P(0, 0)``.

The dark level is not seen by this (it is a constant under a scaled profile): it is
``dark_level`` when given (the camera's offset), else the ``DARK_PERCENTILE`` percentile of
all pixels, which is right only where tiles hold empty space (measured: true offset
100, estimate 154 on tiles full of specimen, fused error 2 % median, 18 % worst block);
:func:`~rhapso_core.intensity.flatfield_overlap.fit_dark_level` then replaces it by what the
overlaps say, and this estimate is made again above that level.
It assumes the specimen is statistically the same across a tile (true of most tissue
over many tiles, not of one bright object centred in every tile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rhapso_core.intensity.model import FlatField, flatfield_terms, normalised_position
from rhapso_core.intensity.sampling import SampledView
from rhapso_core.qc.sampling import read_level

__all__ = ["ContentEstimate", "content_flatfield", "estimate_flatfield", "flatfield_level", "DARK_PERCENTILE"]

# Without a given dark level: this percentile of all tiles' pixels (the darkest places of a
# specimen with empty space around it; higher than the true level if the tiles have none).
DARK_PERCENTILE = 0.1


def flatfield_level(view: SampledView, max_plane_pixels: int) -> int:
    """Finest level whose (y, x) plane has at most ``max_plane_pixels`` pixels (else the coarsest)."""
    for level in range(view.source.n_levels):
        shape = view.source.level_shape(level)
        if int(shape[1]) * int(shape[2]) <= max_plane_pixels:
            return level
    return view.source.n_levels - 1


def _plane_coords(view: SampledView, level: int, shape) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(view.source.level_factors(level), np.float64)
    vy = f[1] * np.arange(shape[1]) + (f[1] - 1) / 2
    vx = f[2] * np.arange(shape[2]) + (f[2] - 1) / 2
    u = normalised_position(vx, view.size_xyz[0])[None, :]
    w = normalised_position(vy, view.size_xyz[1])[:, None]
    return np.broadcast_to(u, shape[1:]), np.broadcast_to(w, shape[1:])


@dataclass(frozen=True)
class ContentEstimate:
    """The content-based flat field and its uncertainty.

    ``covariance`` (K x K, over the flat field's coefficients) is the scatter of the
    coefficients fitted to each view alone, divided by the number of views: how far
    the pooled estimate may be from the truth because the specimen is not the same
    everywhere. None with fewer than two usable views (no scatter to measure).
    """

    flatfield: FlatField
    covariance: np.ndarray | None
    n_views: int


def estimate_flatfield(
    views: Sequence[SampledView], degree: int = 2, dark_level: float | None = None, max_plane_pixels: int = 4096,
) -> FlatField:
    """One flat field for ``views`` (all of one channel); see the module docstring."""
    return content_flatfield(views, degree, dark_level, max_plane_pixels).flatfield


def _fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    keep = np.ones(y.shape, bool)
    for _ in range(2):
        coef = np.linalg.lstsq(X[keep], y[keep], rcond=None)[0]
        res = y - X @ coef
        mad = 1.4826 * float(np.median(np.abs(res[keep])))
        keep = np.abs(res) <= 4.0 * max(mad, 1e-12)
    return coef


def content_flatfield(
    views: Sequence[SampledView], degree: int = 2, dark_level: float | None = None, max_plane_pixels: int = 4096,
) -> ContentEstimate:
    """:func:`estimate_flatfield` with the uncertainty of its coefficients (see :class:`ContentEstimate`)."""
    terms = flatfield_terms(degree)
    levels = []
    for view in views:
        level = flatfield_level(view, max_plane_pixels)
        levels.append((view, level, read_level(view.source, level)))
    if dark_level is None:
        dark = float(np.percentile(np.concatenate([d.ravel() for _, _, d in levels]), DARK_PERCENTILE))
    else:
        dark = float(dark_level)
    per_view = []
    for view, level, data in levels:
        signal = data - np.float32(dark)
        norm = float(np.median(signal))
        if not norm > 0:
            continue
        profile = np.median(signal, axis=0) / norm  # per pixel over planes; the view's gain cancels
        u, w = _plane_coords(view, level, data.shape)
        u, w = u.ravel(), w.ravel()
        per_view.append((np.column_stack([np.ones_like(u)] + [u ** i * w ** j for i, j in terms]), profile.ravel()))
    if not per_view:
        return ContentEstimate(FlatField(degree, tuple(0.0 for _ in terms), dark), None, 0)
    coef = _fit(np.concatenate([X for X, _ in per_view]), np.concatenate([y for _, y in per_view]))
    cov = None
    if len(per_view) >= 2:
        each = []
        for X, y in per_view:
            c = _fit(X, y)
            each.append(c[1:] / c[0])
        cov = np.atleast_2d(np.cov(np.asarray(each), rowvar=False)) / len(per_view)
    return ContentEstimate(FlatField(degree, tuple(float(v) for v in coef[1:] / coef[0]), dark), cov, len(per_view))
