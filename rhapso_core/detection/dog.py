"""The Difference-of-Gaussian response of one working-grid block (pure array code).

BigStitcher's definition: with the image's own blur of 0.5 voxel accounted for, the two
Gaussians are ``s1 = sqrt(s^2 - 0.5^2)`` and ``s2 = sqrt((s k)^2 - 0.5^2)`` with
``k = 2^(1/4)``, and ``DoG = (G1 - G2) / (k - 1)``. ``G2`` is computed from ``G1`` by a
further blur of ``sqrt(s2^2 - s1^2)`` (Gaussians compose by adding variances), which
needs a smaller kernel than blurring the input again; sampled Gaussians compose only
approximately, and the difference from a direct ``G2`` is about 1e-4 of the blob contrast
(2e-4 of the DoG peak) in the interior, below BigStitcher's own kernel truncation effects. The sigma is isotropic in
the working (downsampled) grid, as in BigStitcher.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rhapso_core.detection._gauss import gauss_inplace, kernel_radius
from rhapso_core.detection.params import IMAGE_SIGMA

__all__ = ["dog_sigmas", "dog_halo", "normalise", "dog_response", "K"]

K = 2.0 ** 0.25


def dog_sigmas(sigma: float) -> tuple[float, float, float]:
    """(s1, s2, s_inc): the two Gaussians and the blur taking G1 to G2 (voxels)."""
    s1 = math.sqrt(sigma**2 - IMAGE_SIGMA**2)
    s2 = math.sqrt((sigma * K) ** 2 - IMAGE_SIGMA**2)
    return s1, s2, math.sqrt(s2**2 - s1**2)


def dog_halo(sigma: float) -> int:
    """Voxels beyond which the input cannot change a DoG value (working grid)."""
    s1, _, sinc = dog_sigmas(sigma)
    return kernel_radius(s1) + kernel_radius(sinc)


@numba.njit(parallel=True, cache=True)
def _affine_sub(values, background, a, b, out):
    nz, ny, nx = values.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                out[z, y, x] = np.float32(values[z, y, x] - background[z, y, x]) * a + b


@numba.njit(parallel=True, cache=True)
def _affine(values, a, b, out):
    nz, ny, nx = values.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                out[z, y, x] = np.float32(values[z, y, x]) * a + b


def normalise(values: np.ndarray, scale: float, offset: float,
              background: np.ndarray | None = None) -> np.ndarray:
    """``float32((values - background) * scale + offset)`` without float64 temporaries."""
    out = np.empty(values.shape, np.float32)
    if values.size:
        if background is None:
            _affine(values, np.float32(scale), np.float32(offset), out)
        else:
            _affine_sub(values, background, np.float32(scale), np.float32(offset), out)
    return out


def dog_response(image: np.ndarray, sigma: float, in_plane: bool = False) -> np.ndarray:
    """DoG of a normalised float32 (z, y, x) block; ``image`` is overwritten with G1.

    Parameters
    ----------
    image : ndarray, float32, C-contiguous (z, y, x)
        Normalised intensities; reused as the G1 buffer to save memory.
    sigma : float
        DoG scale in voxels.
    in_plane : bool, default False
        Gaussians in y and x only, each z plane on its own (2-D detection).

    Returns
    -------
    ndarray, float32, same shape: ``(G1 - G2) / (2^(1/4) - 1)``.
    """
    s1, _, sinc = dog_sigmas(sigma)
    g1 = gauss_inplace(image, s1, in_plane)
    g2 = g1.copy()
    gauss_inplace(g2, sinc, in_plane)
    np.subtract(g1, g2, out=g2)
    g2 *= np.float32(1.0 / (K - 1.0))
    return g2
