"""Numba kernels: trilinear sampling of one view into a block's accumulators.

Why a custom kernel rather than ``scipy.ndimage.map_coordinates``: the output->view
map is affine, so the source coordinate of each output voxel is a row base plus
``i * step``; no coordinate arrays (3 float64 per voxel) are materialised, the
blending weight and the overlap rule are applied in the same pass, and voxels
outside the view are skipped per row. Determinism across block sizes: coordinates
are always evaluated as ``t + k * c_z + j * c_y`` (per row) ``+ i * c_x`` from
*absolute* output indices, so a voxel gets bit-identical coordinates whichever block
computes it; views are always visited in the same (ascending id) order.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["MODES", "accumulate_view", "finalize", "trilinear_sample"]

MODES = {
    "avg": 0, "avg_blend": 1, "max": 2, "lowest_view_wins": 3, "closest_pixel_wins": 4,
    "content_based": 5,
}

# A voxel whose view coordinate lies this far (view voxels) outside [0, n - 1] still
# counts as covered: absorbs rounding of the composed world/view affines.
COVER_EPS = 1e-4
# Floor of an avg_blend weight, so voxels where every covering view has weight 0
# (a view's outermost plane) get the plain mean instead of 0; it shifts a blend with
# any view of weight >= 1e-3 by less than 1e-9 relative.
W_FLOOR = 1e-12


@numba.njit(cache=True, nogil=True, inline="always")
def _clamped_cell(lz, ly, lx, nz, ny, nx):
    """The interpolation cell of a level coordinate: its lower corner and fractions (z, y, x)."""
    # Clamp into the level's voxel-centre range [0, n - 1] (edge extension for the
    # half voxel between a coarse level's first centre and the view's edge).
    lz = min(max(lz, 0.0), nz - 1.0)
    ly = min(max(ly, 0.0), ny - 1.0)
    lx = min(max(lx, 0.0), nx - 1.0)
    z0 = min(int(math.floor(lz)), max(nz - 2, 0))
    y0 = min(int(math.floor(ly)), max(ny - 2, 0))
    x0 = min(int(math.floor(lx)), max(nx - 2, 0))
    return z0, y0, x0, lz - z0, ly - y0, lx - x0


@numba.njit(cache=True, nogil=True, inline="always")
def _interp(src, lz, ly, lx, oz, oy, ox, nz, ny, nx):
    z0, y0, x0, fz, fy, fx = _clamped_cell(lz, ly, lx, nz, ny, nx)
    z1 = min(z0 + 1, nz - 1) - oz
    y1 = min(y0 + 1, ny - 1) - oy
    x1 = min(x0 + 1, nx - 1) - ox
    z0 -= oz
    y0 -= oy
    x0 -= ox
    c00 = src[z0, y0, x0] * (1.0 - fx) + src[z0, y0, x1] * fx
    c01 = src[z0, y1, x0] * (1.0 - fx) + src[z0, y1, x1] * fx
    c10 = src[z1, y0, x0] * (1.0 - fx) + src[z1, y0, x1] * fx
    c11 = src[z1, y1, x0] * (1.0 - fx) + src[z1, y1, x1] * fx
    c0 = c00 * (1.0 - fy) + c01 * fy
    c1 = c10 * (1.0 - fy) + c11 * fy
    return c0 * (1.0 - fz) + c1 * fz


# BigStitcher's blending profile (cos((1 - r) * pi) + 1) / 2 == sin(pi r / 2)^2 tabulated on
# [0, 1] and interpolated linearly: at most 6e-7 from the exact value, and about 3x
# cheaper than a cosine per voxel and axis (most voxels of a thin tile lie in some ramp).
_LUT_N = 1024
BLEND_LUT = np.sin(np.linspace(0.0, 1.0, _LUT_N + 1) * (np.pi / 2)) ** 2


@numba.njit(cache=True, nogil=True, inline="always")
def _axis_weight(v, n, border, inv_rng):
    dist = min(v - border, (n - 1.0) - v - border)
    if dist <= 0.0:
        return 0.0
    t = dist * inv_rng * _LUT_N
    if t >= _LUT_N:
        return 1.0
    k = int(t)
    f = t - k
    return BLEND_LUT[k] + (BLEND_LUT[k + 1] - BLEND_LUT[k]) * f


@numba.njit(cache=True, nogil=True, inline="always")
def _row_estimate(r0, r1, r2, cx0, cx1, cx2, sx, sy, sz, i0, X):
    # The block-local x range [a, b] where a row (view coordinate r + i * c per axis) can be
    # inside the view, widened by one voxel; ok False when no voxel of the row can be.
    # Shared with row_kernels, which trims this estimate to the exact interval.
    lo = -COVER_EPS
    a = 0.0
    b = float(X - 1)
    ok = True
    for r, c, n in ((r0, cx0, sx), (r1, cx1, sy), (r2, cx2, sz)):
        if c == 0.0:
            if r < lo or r > n - 1.0 + COVER_EPS:
                ok = False
        else:
            t1 = (lo - r) / c - i0
            t2 = (n - 1.0 + COVER_EPS - r) / c - i0
            if t1 > t2:
                t1, t2 = t2, t1
            a = max(a, math.floor(t1) - 1.0)
            b = min(b, math.ceil(t2) + 1.0)
    return ok and b >= a, a, b


@numba.njit(cache=True, nogil=True, inline="always")
def _cover_distance(vx, vy, vz, sx, sy, sz):
    # closest_pixel_wins' rank of a view at a voxel: distance to the view's nearest face,
    # + 1 so that an accumulator of 0 still means "not covered".
    d = min(min(vx, sx - 1.0 - vx), min(vy, sy - 1.0 - vy), min(vz, sz - 1.0 - vz))
    return max(d, 0.0) + 1.0


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate_voxel(a, b, mode, val, w):
    """A voxel's accumulators ``(a, b)`` after adding ``val`` per overlap mode (``w``: the voxel's
    weight for blending (1, 5; before the floor) and closest_pixel_wins (4), else ignored).

    The one update of both fusion kernels (here and row_kernels' two loops). It takes and
    returns scalars on purpose: the same helper taking the accumulator rows and the index
    made the kernels 1.8-2.4x slower (numba 0.68, inlined or not: an array passed per voxel);
    this form, one exit, runs within the timing noise (+-5 %) of the update written out in
    place (bench/bench_fusion_core.py; tests/fusion/test_row_kernel.py keeps the kernels
    bit-identical).
    """
    if mode == 1 or mode == 5:
        w = max(w, W_FLOOR)
        a += w * val
        b += w
    elif mode == 0:
        a += val
        b += 1.0
    elif mode == 2:
        if b == 0.0 or val > a:
            a = val
            b = 1.0
    elif mode == 3:
        if b == 0.0:
            a = val
            b = 1.0
    elif w > b:
        a = val
        b = w
    return a, b


@numba.njit(cache=True, nogil=True, inline="always")
def _view_constants(level_f_xyz, blend_range_xyz):
    """Per view and level: the level-voxel offsets ``h`` and reciprocal factors ``g`` (x, y, z)
    of the pyramid level read, and the blending ramps' reciprocal widths ``ir`` (x, y, z)."""
    fx, fy, fz = level_f_xyz[0], level_f_xyz[1], level_f_xyz[2]
    hx, hy, hz = (fx - 1.0) / 2.0, (fy - 1.0) / 2.0, (fz - 1.0) / 2.0
    # Pyramid factors are small integers; their reciprocals are exact for powers of two.
    gx, gy, gz = 1.0 / fx, 1.0 / fy, 1.0 / fz
    # A zero blending range means no ramp: weight 1 right after the border.
    irx = 1.0 / blend_range_xyz[0] if blend_range_xyz[0] > 0 else np.inf
    iry = 1.0 / blend_range_xyz[1] if blend_range_xyz[1] > 0 else np.inf
    irz = 1.0 / blend_range_xyz[2] if blend_range_xyz[2] > 0 else np.inf
    return hx, hy, hz, gx, gy, gz, irx, iry, irz


@numba.njit(cache=True, nogil=True, inline="always")
def _row_base(m, k, j):
    """View coordinates (x, y, z) of output row (z ``k``, y ``j``) at x = 0, from absolute
    indices: identical for every block containing the row."""
    return (m[0, 3] + k * m[0, 2] + j * m[0, 1], m[1, 3] + k * m[1, 2] + j * m[1, 1],
            m[2, 3] + k * m[2, 2] + j * m[2, 1])


@numba.njit(cache=True, nogil=True)
def accumulate_view(
    acc_a, acc_b, block_start_zyx, m_out_to_view, size_xyz,
    src, src_off_zyx, level_f_xyz, level_shape_zyx, blend_range_xyz, blend_border_xyz, mode,
    wsrc,
):
    """Add one view's contribution to a block's accumulators (in place).

    Parameters
    ----------
    acc_a, acc_b : (Z, Y, X) float32
        Accumulators of the block (their meaning depends on ``mode``, see ``finalize``).
    block_start_zyx : (3,) int64
        Absolute output voxel index of ``acc[0, 0, 0]``.
    m_out_to_view : (3, 4) float64
        Output voxel (x, y, z, 1) -> view voxel (x, y, z), level 0.
    size_xyz : (3,) float64
        View size (x, y, z) at level 0 (voxels).
    src : (z, y, x) array
        Source sub-box read from the chosen pyramid level.
    src_off_zyx : (3,) int64
        Level voxel index of ``src[0, 0, 0]``.
    level_f_xyz : (3,) float64
        The level's downsampling factor (x, y, z).
    level_shape_zyx : (3,) int64
        The level's full shape.
    blend_range_xyz, blend_border_xyz : (3,) float64
        Cosine ramp width and zero border (view voxels, level 0).
    mode : int
        Index from ``MODES``.
    wsrc : (z, y, x) float32
        ``content_based`` only: the view's content weights on the same box as ``src``
        (:func:`rhapso_core.fusion.content.content_weights`), interpolated like ``src``;
        other modes ignore it (pass any 3D float32 array).
    """
    Z, Y, X = acc_a.shape
    k0, j0, i0 = block_start_zyx[0], block_start_zyx[1], block_start_zyx[2]
    oz, oy, ox = src_off_zyx[0], src_off_zyx[1], src_off_zyx[2]
    nz, ny, nx = level_shape_zyx[0], level_shape_zyx[1], level_shape_zyx[2]
    hx, hy, hz, gx, gy, gz, irx, iry, irz = _view_constants(level_f_xyz, blend_range_xyz)
    sx, sy, sz = size_xyz[0], size_xyz[1], size_xyz[2]
    cx0, cx1, cx2 = m_out_to_view[0, 0], m_out_to_view[1, 0], m_out_to_view[2, 0]
    lo = -COVER_EPS
    for bz in range(Z):
        k = float(k0 + bz)
        for by in range(Y):
            r0, r1, r2 = _row_base(m_out_to_view, k, float(j0 + by))
            # The block-local x range where the row can be inside the view (widened by
            # one voxel; the per-voxel test below decides).
            ok, a, b = _row_estimate(r0, r1, r2, cx0, cx1, cx2, sx, sy, sz, i0, X)
            if not ok:
                continue
            arow = acc_a[bz, by]
            brow = acc_b[bz, by]
            for bx in range(int(a), int(b) + 1):
                i = float(i0 + bx)
                vx = r0 + i * cx0
                vy = r1 + i * cx1
                vz = r2 + i * cx2
                if (vx < lo or vy < lo or vz < lo or vx > sx - 1.0 + COVER_EPS
                        or vy > sy - 1.0 + COVER_EPS or vz > sz - 1.0 + COVER_EPS):
                    continue
                val = _interp(src, (vz - hz) * gz, (vy - hy) * gy, (vx - hx) * gx,
                              oz, oy, ox, nz, ny, nx)
                w = 0.0
                if mode == 1 or mode == 5:
                    w = (_axis_weight(vx, sx, blend_border_xyz[0], irx)
                         * _axis_weight(vy, sy, blend_border_xyz[1], iry)
                         * _axis_weight(vz, sz, blend_border_xyz[2], irz))
                    if mode == 5:
                        w *= _interp(wsrc, (vz - hz) * gz, (vy - hy) * gy, (vx - hx) * gx,
                                     oz, oy, ox, nz, ny, nx)
                elif mode == 4:
                    w = _cover_distance(vx, vy, vz, sx, sy, sz)
                arow[bx], brow[bx] = _accumulate_voxel(arow[bx], brow[bx], mode, val, w)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def finalize(acc_a, acc_b, out, mode, lo, hi, max_value, is_int):
    """Turn accumulators into output values (in place into ``out``; all three C-contiguous).

    Covered voxels (``acc_b > 0``) get ``acc_a / acc_b`` (avg, avg_blend, content_based)
    or ``acc_a``; for
    integer outputs ``(v - lo) / (hi - lo) * max_value`` clipped to ``[0, max_value]``
    and rounded half to even; voxels covered by no view are 0.

    One flat loop per case, every voxel computed and the uncovered ones (``acc_b <= 0``; a
    NaN weight, from content weights of NaN pixels, counts as covered, as before) then set
    to 0 by a select: the compiler vectorises it (numpy's error model: a division by an empty voxel's
    0 gives inf or nan instead of raising, and is discarded). A test per voxel kept the
    loop scalar: 25 % slower on a 99 x 256 x 256 block (8.1 -> 6.1 ms), where the two
    divisions per voxel are most of the time.
    """
    a_ = acc_a.reshape(-1)
    b_ = acc_b.reshape(-1)
    o_ = out.reshape(-1)
    span = hi - lo
    divide = mode <= 1 or mode == 5
    if is_int and divide:
        for p in range(a_.shape[0]):
            b = b_[p]
            v = float(a_[p]) / float(b)
            v = min(max((v - lo) / span * max_value, 0.0), max_value)
            o_[p] = 0.0 if b <= 0.0 else np.rint(v)
    elif is_int:
        for p in range(a_.shape[0]):
            v = min(max((float(a_[p]) - lo) / span * max_value, 0.0), max_value)
            o_[p] = 0.0 if b_[p] <= 0.0 else np.rint(v)
    elif divide:
        for p in range(a_.shape[0]):
            b = b_[p]
            v = float(a_[p]) / float(b)
            o_[p] = 0.0 if b <= 0.0 else v
    else:
        for p in range(a_.shape[0]):
            o_[p] = 0.0 if b_[p] <= 0.0 else float(a_[p])


def trilinear_sample(volume_zyx: np.ndarray, coords_zyx: np.ndarray) -> np.ndarray:
    """Sample ``volume`` at ``(3, N)`` coordinates (z, y, x) with the fusion kernel's
    trilinear interpolation (edge-clamped). Exposed for tests and benchmarks."""
    return _sample_points(np.ascontiguousarray(volume_zyx), np.asarray(coords_zyx, np.float64))


@numba.njit(cache=True)
def _sample_points(vol, coords):
    n = coords.shape[1]
    out = np.empty(n, np.float64)
    nz, ny, nx = vol.shape
    for p in range(n):
        out[p] = _interp(vol, coords[0, p], coords[1, p], coords[2, p], 0, 0, 0, nz, ny, nx)
    return out
