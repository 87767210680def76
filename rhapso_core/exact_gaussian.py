"""scipy's ``gaussian_filter`` (float32 output), same bits, many lines at a time.

scipy filters one line at a time: it copies the line into a double buffer extended at both
ends by the boundary mode, and computes each output voxel as

    out[l] = in[l] * w[r];  for d = r, r - 1, ..., 1:  out[l] += (in[l - d] + in[l + d]) * w[r - d]

in double precision, one voxel after the other, then rounds it to float32 (scipy's
``NI_Correlate1D``, symmetric branch). The loops below
do exactly these operations, in this order, for each output voxel (no fused multiply-add,
no reordered sum), but with the loop over voxels innermost, so the compiler runs several
voxels per instruction (four doubles with AVX2); the passes along z and y take whole rows of x at once, so they
read memory in order instead of one strided voxel at a time. Written here rather than
taken from a library because bit-identity with scipy's result is the point: the values built
on these filters (content-based fusion's weights, the overlap fits' smoothed crops, the
resolved feature size) must not change (``tests/test_exact_gaussian.py`` compares with scipy
on every shape, radius, boundary mode and repeated extension).

Content-based fusion smooths each view's box with two Gaussians of radius 60 and 120 voxels
(BigStitcher's sigmas 20 and 40): through scipy that was four fifths of a ``content_based``
fusion's time. The overlap fits smooth every crop they compare (sigma 1), and parameter
resolution blurs its sample crops at eight scales.

Only what those use: 3-D input of float32 or of integers of up to 16 bits (converted to
double exactly, as scipy converts them, so no float32 copy of a uint16 box is needed), order
0, the boundary modes ``mirror``, ``reflect`` and ``nearest``, explicit radii (:func:`scipy_radius`
gives scipy's from its ``truncate``), float32 output that may be the input (in place, as scipy
allows).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["EXACT_INPUTS", "MODES", "gaussian_filter", "scipy_radius"]

# Input dtypes whose every value a double (and a float32) holds exactly.
EXACT_INPUTS = (np.dtype(np.float32), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.uint8), np.dtype(np.int8))
# scipy skips an axis whose sigma is not above this (its gaussian_filter).
_SIGMA_SKIP = 1e-15
#: Boundary modes, as scipy names them, and their codes in the compiled loops.
MODES = {"mirror": 0, "reflect": 1, "nearest": 2}
# Columns of x filtered together in the z and y passes. The tile holds its rows as doubles
# (converted once, not at every tap: 10-20 % faster than float32 rows of 256 columns in a
# one-off timing of the z and y passes alone)
# and stays near the level-2 cache (96-600 rows x 1 KB).
_TILE = 128


def _kernel(sigma: float, radius: int) -> np.ndarray:
    """scipy's order-0 kernel (``_gaussian_kernel1d``), the same float64 operations, reversed
    for correlation as ``gaussian_filter1d`` does. Symmetric, so the loops below take scipy's
    symmetric branch."""
    x = np.arange(-int(radius), int(radius) + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    phi = phi / phi.sum()
    return np.ascontiguousarray(phi[::-1], np.float64)


@numba.njit(cache=True, nogil=True)
def _extended_index(i, n, mode):
    """The line's voxel that scipy's extension (``NI_ExtendLine``) puts at index ``i`` of a
    line of ``n`` voxels, ``i`` possibly outside ``[0, n)``; repeated for lines shorter than
    the radius, as scipy's extension then copies its own extended values."""
    if mode == 2 or n == 1:  # nearest (a a | a b c d | d d); scipy's mirror of one voxel is this too
        return min(max(i, 0), n - 1)
    if mode == 0:  # mirror (d c b | a b c d | c b a)
        period = 2 * (n - 1)
        i = i % period
        if i < 0:
            i += period
        if i >= n:
            i = period - i
        return i
    # reflect (c b a | a b c d | d c b)
    period = 2 * n
    i = i % period
    if i < 0:
        i += period
    if i >= n:
        i = period - 1 - i
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _four(w, j):
    # The weights of one four-tap sweep (taps r - d .. r - d + 3 of the reversed kernel).
    return w[j], w[j + 1], w[j + 2], w[j + 3]


@numba.njit(cache=True, nogil=True)
def _pass_outer(src, dst, w, mode):
    """Filter ``src`` (A, L, M) along axis 1 into ``dst`` (same shape; may be ``src``)."""
    na, nl, nm = src.shape
    r = (w.shape[0] - 1) // 2
    idx = np.empty(nl + 2 * r, np.int64)
    for i in range(nl + 2 * r):
        idx[i] = _extended_index(i - r, nl, mode)
    tile = np.empty((nl, _TILE), np.float64)
    acc = np.empty(_TILE, np.float64)
    w0 = w[r]
    for a in range(na):
        for m0 in range(0, nm, _TILE):
            mt = min(_TILE, nm - m0)
            # A copy of the input columns: the output may overwrite them.
            for l in range(nl):
                for m in range(mt):
                    tile[l, m] = src[a, l, m0 + m]
            for l in range(nl):
                # Rows by index, not as slices: a slice costs two atomic reference-count
                # updates, as much as the work of a short row.
                c = idx[l + r]
                for m in range(mt):
                    acc[m] = tile[c, m] * w0
                # Four taps per sweep, as in _pass_last.
                d = r
                while d >= 4:
                    w1, w2, w3, w4 = _four(w, r - d)
                    a1 = idx[l + r - d]
                    a2 = idx[l + r - d + 1]
                    a3 = idx[l + r - d + 2]
                    a4 = idx[l + r - d + 3]
                    b1 = idx[l + r + d]
                    b2 = idx[l + r + d - 1]
                    b3 = idx[l + r + d - 2]
                    b4 = idx[l + r + d - 3]
                    for m in range(mt):
                        acc[m] = (
                            ((acc[m] + (tile[a1, m] + tile[b1, m]) * w1) + (tile[a2, m] + tile[b2, m]) * w2)
                            + (tile[a3, m] + tile[b3, m]) * w3
                        ) + (tile[a4, m] + tile[b4, m]) * w4
                    d -= 4
                while d >= 1:
                    a1 = idx[l + r - d]
                    b1 = idx[l + r + d]
                    wd = w[r - d]
                    for m in range(mt):
                        acc[m] += (tile[a1, m] + tile[b1, m]) * wd
                    d -= 1
                for m in range(mt):
                    dst[a, l, m0 + m] = np.float32(acc[m])


@numba.njit(cache=True, nogil=True)
def _pass_last(src, dst, w, mode):
    """Filter ``src`` (A, L) along its last (contiguous) axis into ``dst`` (may be ``src``)."""
    na, nl = src.shape
    r = (w.shape[0] - 1) // 2
    line = np.empty(nl + 2 * r, np.float64)
    acc = np.empty(nl, np.float64)
    w0 = w[r]
    idx = np.empty(nl + 2 * r, np.int64)
    for i in range(nl + 2 * r):
        idx[i] = _extended_index(i - r, nl, mode)
    for a in range(na):
        for i in range(nl + 2 * r):
            line[i] = src[a, idx[i]]
        for l in range(nl):
            acc[l] = line[l + r] * w0
        # Four taps per sweep over the line: the same additions in the same order as one
        # tap per sweep, with a quarter of the accumulator's loads and stores.
        d = r
        while d >= 4:
            w1, w2, w3, w4 = _four(w, r - d)
            # Views, so that the loop indexes from 0 (numba cannot vectorise a loop whose
            # index might be negative).
            lo1 = line[r - d:]
            lo2 = line[r - d + 1:]
            lo3 = line[r - d + 2:]
            lo4 = line[r - d + 3:]
            hi1 = line[r + d:]
            hi2 = line[r + d - 1:]
            hi3 = line[r + d - 2:]
            hi4 = line[r + d - 3:]
            for l in range(nl):
                acc[l] = (
                    ((acc[l] + (lo1[l] + hi1[l]) * w1) + (lo2[l] + hi2[l]) * w2)
                    + (lo3[l] + hi3[l]) * w3
                ) + (lo4[l] + hi4[l]) * w4
            d -= 4
        while d >= 1:
            wd = w[r - d]
            lo = line[r - d:]
            hi = line[r + d:]
            for l in range(nl):
                acc[l] += (lo[l] + hi[l]) * wd
            d -= 1
        for l in range(nl):
            dst[a, l] = np.float32(acc[l])


def scipy_radius(sigma: float, truncate: float = 4.0) -> int:
    """The kernel half-width scipy's ``gaussian_filter1d`` takes for ``sigma`` and ``truncate``."""
    return int(float(truncate) * float(sigma) + 0.5)


def gaussian_filter(
    image_zyx: np.ndarray, sigma_zyx, radius_zyx, mode: str, output: np.ndarray | None = None
) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode=mode, radius=radius, output=float32)``.

    Parameters
    ----------
    image_zyx : ndarray (z, y, x), C-contiguous, a dtype of :data:`EXACT_INPUTS`
        Not modified unless it is ``output``.
    sigma_zyx : (3,) floats
        Gaussian sigmas in the array's voxels; an axis whose sigma is not above 1e-15 is
        skipped, as scipy does.
    radius_zyx : (3,) non-negative ints
        Kernel half-widths (scipy's ``radius``; :func:`scipy_radius` for its ``truncate``).
    mode : one of :data:`MODES`
        scipy's boundary mode, the same on every axis (no default: scipy's is ``reflect``,
        content-based fusion's ``mirror``).
    output : ndarray (z, y, x) float32, C-contiguous, optional
        Where to write; may be ``image_zyx`` itself (float32). A new array if omitted.

    Returns
    -------
    ndarray (z, y, x) float32
        Bit-identical to scipy's result.
    """
    img = np.asarray(image_zyx)
    if img.ndim != 3 or img.dtype not in EXACT_INPUTS or not img.flags.c_contiguous:
        raise ValueError(
            f"gaussian_filter: need a C-contiguous 3-D array of float32 or 8/16-bit integers, "
            f"got {img.dtype} {img.shape}"
        )
    if mode not in MODES:
        raise ValueError(f"gaussian_filter: mode {mode!r} is not one of {sorted(MODES)}")
    code = MODES[mode]
    out = np.empty(img.shape, np.float32) if output is None else output
    if out.shape != img.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"gaussian_filter: output must be C-contiguous float32 {img.shape}")
    src = img
    nz, ny, nx = img.shape
    for axis in range(3):
        sigma = float(sigma_zyx[axis])
        if not sigma > _SIGMA_SKIP:
            continue
        w = _kernel(sigma, int(radius_zyx[axis]))
        if axis == 0:
            _pass_outer(src.reshape(1, nz, ny * nx), out.reshape(1, nz, ny * nx), w, code)
        elif axis == 1:
            _pass_outer(src, out, w, code)
        else:
            _pass_last(src.reshape(nz * ny, nx), out.reshape(nz * ny, nx), w, code)
        src = out
    if src is not out:  # every sigma skipped
        out[...] = img  # exact for every dtype of EXACT_INPUTS
    return out
