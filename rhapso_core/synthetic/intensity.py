"""Tile brightness errors of a synthetic acquisition: a gain per view and a vignetting profile.

Both multiply the *signal* (photons) before the camera adds noise and its offset, as
on a microscope: laser power, exposure or bleaching scale what a tile collects, and
the objective's vignetting dims a tile's edges. The specimen (and so the ground truth)
keeps its true relative intensities; a correct intensity correction undoes both.

* gain: view ``(timepoint, setup)`` is multiplied by ``g`` drawn uniformly in
  ``[1 - tile_gain_spread, 1 + tile_gain_spread]`` (seeded per view; none drawn at 0).
* vignetting: voxel ``(x, y)`` of a tile is multiplied by ``1 - v (u^2 + w^2)``,
  ``u = 2 x / (nx - 1) - 1`` and ``w = 2 y / (ny - 1) - 1`` the in-plane position
  (-1 at one edge, +1 at the other); ``v`` is the fall-off at the middle of an edge
  (``2 v`` at the corners), the same for every tile and plane.
"""

from __future__ import annotations

import numpy as np

from rhapso_core.synthetic.geometry import seed_sequence

__all__ = ["STREAM_GAIN", "view_gain", "vignetting_profile"]

# After multiview.py's stream keys (4, 5).
STREAM_GAIN = 6


def view_gain(seed: int, spread: float, timepoint: int, setup: int) -> float:
    """The signal gain of one view (1 when ``spread`` is 0, without drawing)."""
    if spread <= 0.0:
        return 1.0
    rng = np.random.default_rng(seed_sequence(seed, STREAM_GAIN, setup, timepoint))
    return float(rng.uniform(1.0 - spread, 1.0 + spread))


def vignetting_profile(ny: int, nx: int, falloff: float) -> np.ndarray:
    """Relative transmission ``(ny, nx)`` float32 of the in-plane vignetting (1 at the centre)."""
    u = 2.0 * np.arange(nx, dtype=np.float64) / max(nx - 1, 1) - 1.0
    w = 2.0 * np.arange(ny, dtype=np.float64) / max(ny - 1, 1) - 1.0
    return (1.0 - falloff * (u[None, :] ** 2 + w[:, None] ** 2)).astype(np.float32)
