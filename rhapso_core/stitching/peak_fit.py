"""The sub-voxel bias of a correlation peak, measured on the crops themselves.

A correlation peak's sub-voxel position (:func:`rhapso_core.stitching.phase._refine`: a
Gaussian through the peak and its two neighbours per axis) is pulled toward the nearest
integer shift wherever the images are not smooth on the voxel grid: an axis sampled at
the scale of its structures (the z of a light-sheet stack), or images resampled on
different sub-voxel grids. The pull repeats with the voxel ("pixel locking"): to first
order the estimate of a true offset ``d`` is ``g(d) = d + b(d)`` with ``b(d) = -a
sin(2 pi d)``. Every block of an overlap sits at the same sub-voxel offset, so the spread
of block shifts (:mod:`rhapso_core.stitching.precision`) does not show it, nor does a
loop of links (a pull toward zero scales every link alike and still closes loops).

It is measured here from the overlap: the moving crop resampled half a voxel further
along every axis (Fourier shift of the mirrored crop) must move the estimate by exactly half a voxel; under the
model above it moves by ``1/2 - 2 b(d)`` one way and ``1/2 + 2 b(d)`` the other, so the
two half-voxel steps give ``b(d)`` at the measured offset with no constant to choose. On
the accuracy matrix's real-texture cell (z sampled at 2.5 world units, tiles resampled
from the real volume) the phase's z shifts were pulled toward zero by 0.1-0.5 world units
while their blocks agreed to 0.03; on analytically rendered fibres the same measure along
z is under a twentieth of a voxel.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from rhapso_core.stitching.blocks import refit_block

__all__ = ["locking_bias", "bias_from_steps"]


def fourier_shift_mirrored(a: np.ndarray, shift) -> np.ndarray:
    """``a`` resampled ``shift`` voxels further on per axis (``out[x] = a[x - shift]``), band-limited.

    Each axis is extended by its mirror image first, so the periodic signal the FFT sees is continuous at
    both ends (no ringing from the wrap) and no interpolation kernel blurs it: a cubic spline costs 10x more
    on an overlap's crop and attenuates fine structure, the very thing being measured.
    """
    out = np.asarray(a, dtype=np.float32)
    for ax, h in enumerate(np.asarray(shift, dtype=np.float64)):
        if h == 0.0:
            continue
        n = out.shape[ax]
        ext = np.concatenate([out, np.flip(out, axis=ax)], axis=ax)
        phase = np.exp(-2j * np.pi * sfft.rfftfreq(2 * n) * h).astype(np.complex64)
        spec = sfft.rfft(ext, axis=ax, workers=-1) * phase.reshape([-1 if i == ax else 1 for i in range(out.ndim)])
        out = np.take(sfft.irfft(spec, n=2 * n, axis=ax, workers=-1), np.arange(n), axis=ax).astype(np.float32)
    return out


def _estimate(fixed: np.ndarray, moving: np.ndarray, shift: np.ndarray) -> np.ndarray | None:
    fit = refit_block(fixed, moving, shift)
    return None if fit is None else fit[1]


def locking_bias(fixed: np.ndarray, moving: np.ndarray, shift, estimate=None) -> tuple[np.ndarray, np.ndarray]:
    """Sub-voxel bias of the NCC peak near integer ``shift`` (array axes z, y, x; voxels): (``b``, bound).

    ``b``: the estimate minus the true offset under the first-harmonic model. The bound: half the
    larger deviation of the two half-voxel steps from half a voxel, ``|b|`` under the model and more
    where the model fails (an estimate that does not follow a resampling along an axis at all, whose
    steps are both near 0, has no sub-voxel information there: bound about a quarter voxel). Use the
    bound as the error every part of the overlap shares. 0 on an axis the crops are flat along (2
    voxels or fewer); NaN on every axis where a resampled crop has no finite correlation.
    ``estimate``: the sub-voxel shift already fitted to these crops near ``shift`` (None: fitted here).
    """
    f = np.asarray(fixed, dtype=np.float32)
    m = np.asarray(moving, dtype=np.float32)
    s = np.asarray(shift, dtype=np.int64)
    axes = np.asarray(f.shape) > 2
    half = np.where(axes, 0.5, 0.0)
    e0 = _estimate(f, m, s) if estimate is None else np.asarray(estimate, dtype=np.float64)
    # The moving crop's content resampled h further on: the true offset becomes d - h (d + h for -h).
    ep = _estimate(f, fourier_shift_mirrored(m, half), s)
    em = _estimate(f, fourier_shift_mirrored(m, -half), s)
    if e0 is None or ep is None or em is None:
        return np.full(f.ndim, np.nan), np.full(f.ndim, np.nan)
    b, bound = bias_from_steps(e0, ep, em, half)
    return np.where(axes, b, 0.0), np.where(axes, bound, 0.0)


def bias_from_steps(e0, e_back, e_on, half=0.5) -> tuple[np.ndarray, np.ndarray]:
    """(``b``, bound) from the estimates at the true offset ``d`` (``e0``), ``d - half`` and ``d + half``."""
    e0, e_back, e_on, half = (np.asarray(x, dtype=np.float64) for x in (e0, e_back, e_on, half))
    # With b(d +- 1/2) = -b(d): g(d) - g(d - 1/2) = 1/2 + 2 b(d) and g(d + 1/2) - g(d) = 1/2 - 2 b(d).
    step_back, step_on = (e0 - e_back) - half, (e_on - e0) - half
    return (step_back - step_on) / 4.0, np.maximum(np.abs(step_back), np.abs(step_on)) / 2.0
