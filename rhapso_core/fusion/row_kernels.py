"""Row-exact fusion kernel: the arithmetic of :func:`rhapso_core.fusion.kernels.accumulate_view`
with the per-voxel overheads moved out of the inner loop.

Every voxel's value and weight come from the same floating-point operations, in the
same order, as in the reference kernel (no fast-math, no incremental coordinates: a
voxel's view coordinate is still ``row_base + i * step`` from absolute output indices),
so the accumulators, and hence the fused output, are bit-identical to it for every
overlap strategy (up to the sign of an exact zero). What changes is where work happens:

* the voxels of a row inside the view are found once per row instead of testing six
  bounds per voxel: each bound test is monotone in ``i`` (IEEE rounding is monotone),
  so the voxels that pass form one interval, found by trimming the reference kernel's
  widened estimate from both ends;
* the same monotonicity gives, per row, the sub-interval where the trilinear taps need
  no clamping at the level's edges (``0 <= l < n - 1`` on every axis, where the clamps
  are no-ops and ``floor == trunc``) and, per axis, the sub-interval where the axis's
  blending weight is exactly 1 (past its ramps: ``w * 1.0`` is exact). Each such
  interval is an estimate whose two ends are checked with the exact test: an interval
  whose ends pass lies inside the true one, and voxels left outside take the general
  path, which is exact as well;
* interior pieces run in two passes over the row: coordinates, tap offsets, fractions and
  blending weights first (straight-line arithmetic, which the compiler vectorises, and the
  weights' table loads in a loop of their own), then the eight taps and the accumulation;
  loops index from 0 or with unsigned offsets, as numba's test for negative indices on a
  loop from a runtime start kept them scalar (2x on the weights); an axis whose weight is
  exactly 1 over part of the row, or whose coordinate does not move along the row (step
  exactly 0), contributes no per-voxel work there;
* the taps are read from the flattened source box at one offset plus the neighbour
  strides, and at level 0 (factor 1) ``(v - 0.0) * 1.0 == v`` is skipped;
* on views whose row step is close to one level voxel along x (registered tiles: small
  rotations, no pyramid level), consecutive voxels mostly fall in consecutive cells. Such a
  run's eight taps are four contiguous slices of the box, so its loop has no gathers and
  vectorises, with the accumulation in the same loop (``avg_blend``) or right after it.
  Runs are found from the voxels' own cell offsets (exact), not predicted;
* on planar views (x-y kept apart from z: translations, scalings, rotations and shears
  within the xy plane, i.e. what stitching by translation gives), every plane of a block
  has the same x and y coordinates on its row ``j``, bit for bit (``k * 0.0`` is the same
  zero on every plane). Each block row's x-y part (range, interior interval, cells,
  fractions, x and y weights) is computed once and every plane adds its own z term, z
  fraction and z weight (:func:`_planar_rows`);
* what the machine does per voxel, checked with ``perf`` on the JIT code: the coordinate
  pass converts between double and int32 (four at a time on AVX2, where double <-> int64
  is one at a time), and the hot loops take no array slices and few array arguments per
  row piece, because each slice or array argument costs numba two atomic reference-count
  updates (they were a fifth of the kernel's time).

Measured (``bench/bench_fusion_kernel.py``: one fusion's sampling calls replayed, one
thread, AVX2, 2026-12-07 evening): 6.7x the reference kernel on tiles rotated in-plane
(planar), 2.9x on tiles tilted by 1 degree, 1.8x on tiles rotated 20 degrees about a tilted
axis, where the taps' scattered loads dominate (3.2x, 2.5x and 1.6x before the planar rows
and the unsigned loads; 1.7x, 1.3x and 1.1x before the int32 pass, the slice-free loops,
the two-loop weights and the borrowed arrays).

The reference kernel stays in :mod:`rhapso_core.fusion.kernels`; tests compare the two.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rhapso_core.fusion.borrowed_arrays import borrowed

# The reference kernel's own helpers, so both do the same operations by construction.
from rhapso_core.fusion.kernels import (
    BLEND_LUT, COVER_EPS, MODES, W_FLOOR, _LUT_N, _accumulate_voxel, _axis_weight, _clamped_cell, _cover_distance, _row_base,
    _row_estimate, _view_constants, accumulate_view,
)

__all__ = ["accumulate_view_rows"]

# BLEND_LUT and two entries of 1.0, so that the weight loops need no branch: a voxel past
# the ramp reads index _LUT_N + 1 with fraction 0 (1.0 + 0.0 * 0.0 == 1.0), one before it
# index 0 with fraction 0 (sin(0) ** 2 == 0.0 exactly), as _axis_weight returns there.
_LUT = np.append(BLEND_LUT, [1.0, 1.0])
_PAST_RAMP = _LUT_N + 1
assert _LUT[0] == 0.0

MODE_CLOSEST = MODES["closest_pixel_wins"]

# Largest flat offset (and level extent) the int32 coordinate pass handles.
_I32_MAX = 2**31 - 1


@numba.njit(cache=True, nogil=True, inline="always")
def _row_ok(i, r0, r1, r2, cx0, cx1, cx2, lo, sx1, sy1, sz1):
    # The reference kernel's per-voxel coverage test.
    vx = r0 + i * cx0
    vy = r1 + i * cx1
    vz = r2 + i * cx2
    return not (vx < lo or vy < lo or vz < lo or vx > sx1 or vy > sy1 or vz > sz1)


@numba.njit(cache=True, nogil=True, inline="always")
def _voxel_i(fs, q):
    # float(i0 + s + q) for fs = float(i0 + s): a sum of integers below 2**53 is exact, so
    # the same value, with q converted from int32 (vectorised; int64 -> double is not on
    # AVX2). q < the block's width.
    return fs + float(np.int32(q))


@numba.njit(cache=True, nogil=True, inline="always")
def _axis_one(v, n, border, inv_rng):
    # True exactly where _axis_weight returns 1.0.
    dist = min(v - border, (n - 1.0) - v - border)
    if dist <= 0.0:
        return False
    return dist * inv_rng * _LUT_N >= _LUT_N


@numba.njit(cache=True, nogil=True, inline="always")
def _level(v, h, g, lvl0):
    return v if lvl0 else (v - h) * g


@numba.njit(cache=True, nogil=True, inline="always")
def _interior(i, r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz, nx1, ny1, nz1, lvl0):
    lx = _level(r0 + i * cx0, hx, gx, lvl0)
    ly = _level(r1 + i * cx1, hy, gy, lvl0)
    lz = _level(r2 + i * cx2, hz, gz, lvl0)
    return lx >= 0.0 and lx < nx1 and ly >= 0.0 and ly < ny1 and lz >= 0.0 and lz < nz1


@numba.njit(cache=True, nogil=True, inline="always")
def _sample(flat, lz, ly, lx, oz, oy, ox, nz, ny, nx, sz_, sy_):
    # kernels._interp on the flattened box: the same cell, fractions and lerp order.
    z0, y0, x0, fz, fy, fx = _clamped_cell(lz, ly, lx, nz, ny, nx)
    dz = (min(z0 + 1, nz - 1) - z0) * sz_
    dy = (min(y0 + 1, ny - 1) - y0) * sy_
    dx = min(x0 + 1, nx - 1) - x0
    p = (z0 - oz) * sz_ + (y0 - oy) * sy_ + (x0 - ox)
    gx = 1.0 - fx
    c00 = flat[p] * gx + flat[p + dx] * fx
    c01 = flat[p + dy] * gx + flat[p + dy + dx] * fx
    c10 = flat[p + dz] * gx + flat[p + dz + dx] * fx
    c11 = flat[p + dz + dy] * gx + flat[p + dz + dy + dx] * fx
    c0 = c00 * (1.0 - fy) + c01 * fy
    c1 = c10 * (1.0 - fy) + c11 * fy
    return c0 * (1.0 - fz) + c1 * fz


@numba.njit(cache=True, nogil=True)
def _interior_interval(ia, ib, i0, r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz, nx, ny, nz, lvl0):
    """Voxels of ``[ia, ib]`` whose level coordinates satisfy ``0 <= l < n - 1`` on all axes."""
    if nx < 2 or ny < 2 or nz < 2:
        return 1, 0
    ca = float(ia)
    cb = float(ib)
    for r, c, n, h, g in ((r0, cx0, nx, hx, gx), (r1, cx1, ny, hy, gy), (r2, cx2, nz, hz, gz)):
        if c == 0.0:
            continue  # decided by the exact test below
        t1 = (h - r) / c - i0
        t2 = ((n - 1.0) / g + h - r) / c - i0
        if t1 > t2:
            t1, t2 = t2, t1
        ca = max(ca, math.ceil(t1) + 1.0)
        cb = min(cb, math.floor(t2) - 1.0)
    if ca > cb:
        return 1, 0
    a = int(ca)
    b = int(cb)
    nx1, ny1, nz1 = nx - 1.0, ny - 1.0, nz - 1.0
    while a <= b and not _interior(float(i0 + a), r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz,
                                   nx1, ny1, nz1, lvl0):
        a += 1
    while b >= a and not _interior(float(i0 + b), r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz,
                                   nx1, ny1, nz1, lvl0):
        b -= 1
    if a > b:
        return a, b
    # The estimate was shrunk by a voxel or two at each end: grow it back to the whole
    # interval (the voxels that pass form one), so that no interior voxel takes the
    # clamped per-voxel path (they were about 1 % of the voxels and 5 % of the time).
    while a > ia and _interior(float(i0 + a - 1), r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz,
                               nx1, ny1, nz1, lvl0):
        a -= 1
    while b < ib and _interior(float(i0 + b + 1), r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz,
                               nx1, ny1, nz1, lvl0):
        b += 1
    return a, b


@numba.njit(cache=True, nogil=True)
def _axis_ones(s, e, i0, r, c, n, border, ir):
    """Voxels of ``[s, e]`` where one axis's weight is exactly 1; ``(s, s - 1)`` if none.

    An estimate from the ramp's width, then both ends checked with the exact test (the
    set is an interval, so ends that pass bound a subset of it)."""
    if c == 0.0:
        if _axis_one(r + float(i0 + s) * c, n, border, ir):
            return s, e
        return s, s - 1
    rng = 1.0 / ir
    t1 = (border + rng - r) / c - i0
    t2 = (n - 1.0 - border - rng - r) / c - i0
    if t1 > t2:
        t1, t2 = t2, t1
    fa = max(float(s), math.ceil(t1) + 1.0)
    fb = min(float(e), math.floor(t2) - 1.0)
    if fa > fb:
        return s, s - 1
    a = int(fa)
    b = int(fb)
    while a <= b and not _axis_one(r + float(i0 + a) * c, n, border, ir):
        a += 1
    while b >= a and not _axis_one(r + float(i0 + b) * c, n, border, ir):
        b -= 1
    if a > b:
        return s, s - 1
    return a, b


@numba.njit(cache=True, nogil=True, inline="always")
def _axis_weights(W, K, F, qa, qb, mul, fs, r, c, size, border, ir):
    """This axis's weight (:func:`_axis_weight`, the same bits) of the row's voxels
    ``qa..qb-1`` into ``W`` (``mul``: ``W[q] *= w``), in two loops: the table index and
    fraction of each voxel first (no loads, vectorised), then the lerps (one table load per
    tap: gathers, which AVX2 machines do one at a time). In one loop the loads kept the
    arithmetic scalar as well: 3.5 against 2.2 ns per weight (a one-off timing of this
    function alone, 200 voxels per call; the kernel's figures are
    ``bench/bench_fusion_kernel.py``'s). Below the ramp the index is
    0 with fraction 0 (weight 0), past it ``_PAST_RAMP`` (weight 1). ``K`` and ``F`` are
    scratch of the row's length (int32, float64)."""
    if qb <= qa:
        return
    fa = fs + float(qa)
    ua = np.uint64(qa)
    for j in range(qb - qa):
        v = r + _voxel_i(fa, j) * c
        dist = min(v - border, (size - 1.0) - v - border)
        t = dist * ir * _LUT_N
        lerp = (dist > 0.0) & (t < _LUT_N)
        k = np.int32(t if lerp else (_PAST_RAMP if dist > 0.0 else 0.0))
        K[j] = k
        F[j] = t - k if lerp else 0.0
    for j in range(qb - qa):
        # Unsigned table indices: a signed one costs numba's test for a negative index (a
        # compare and a select per load); K is never negative.
        k = np.uint64(K[j])
        lo = _LUT[k]
        w = lo + (_LUT[k + np.uint64(1)] - lo) * F[j]
        q = ua + np.uint64(j)
        W[q] = W[q] * w if mul else w


@numba.njit(cache=True, nogil=True, inline="always")
def _mul_axis(W, K, F, n, s, i0, r, c, size, border, ir):
    # W[q] *= this axis's weight for the row's voxels s + q, skipping exact 1.0 factors.
    if c == 0.0:
        w = _axis_weight(r + float(i0 + s) * c, size, border, ir)  # one per row: the reference's own
        if w != 1.0:
            for q in range(n):
                W[q] *= w
        return
    a, b = _axis_ones(s, s + n - 1, i0, r, c, size, border, ir)
    fs = float(i0 + s)
    _axis_weights(W, K, F, 0, min(a - s, n), True, fs, r, c, size, border, ir)
    _axis_weights(W, K, F, max(b - s + 1, 0), n, True, fs, r, c, size, border, ir)


@numba.njit(cache=True, nogil=True, inline="always")
def _coords(P, FZ, FY, FX, n, fs, rc, lv, lvl0, off, with_z):
    """Level coordinates of the row's voxels ``fs + q`` (q < n): tap offsets ``P`` and
    fractions; without z (``with_z`` False: the planar rows of :func:`_planar_rows`) ``P``
    lacks the z term and ``FZ`` is left alone."""
    r0, r1, r2, cx0, cx1, cx2 = rc
    hz, hy, hx, gz, gy, gx = lv
    oz, oy, ox, sz_, sy_ = off
    # Cells and offsets in int32 (the caller checked that they fit): AVX2 converts double
    # <-> int32 four at a time but double <-> int64 one at a time, which kept this loop
    # scalar. Same values as int64, so the same bits.
    oz32, oy32, ox32 = np.int32(oz), np.int32(oy), np.int32(ox)
    sz32, sy32 = np.int32(sz_), np.int32(sy_)
    if with_z:
        for q in range(n):
            i = _voxel_i(fs, q)
            lz = _level(r2 + i * cx2, hz, gz, lvl0)
            ly = _level(r1 + i * cx1, hy, gy, lvl0)
            lx = _level(r0 + i * cx0, hx, gx, lvl0)
            z0 = np.int32(lz)
            y0 = np.int32(ly)
            x0 = np.int32(lx)
            FZ[q] = lz - z0
            FY[q] = ly - y0
            FX[q] = lx - x0
            P[q] = (z0 - oz32) * sz32 + (y0 - oy32) * sy32 + (x0 - ox32)
        return
    # One loop per case: a test of with_z inside the loop cost the general case 5 %.
    for q in range(n):
        i = _voxel_i(fs, q)
        ly = _level(r1 + i * cx1, hy, gy, lvl0)
        lx = _level(r0 + i * cx0, hx, gx, lvl0)
        y0 = np.int32(ly)
        x0 = np.int32(lx)
        FY[q] = ly - y0
        FX[q] = lx - x0
        P[q] = (y0 - oy32) * sy32 + (x0 - ox32)


@numba.njit(cache=True, nogil=True, inline="always")
def _weights(W, K, V, n, s, i0, rc, bl, mode, with_z):
    """The row's blending weights (modes 1, 5) or closest_pixel_wins' ranks (mode 4) into
    ``W``; without z (``with_z`` False) only x and y's factors (blending modes)."""
    r0, r1, r2, cx0, cx1, cx2 = rc
    sx, sy, sz, bbx, bby, bbz, irx, iry, irz = bl
    fs = float(i0 + s)
    e = s + n - 1
    if mode == 1 or mode == 5:
        # (wx * wy) * wz as in the reference, one factor per pass. Where an axis's weight
        # is exactly 1 (its own past-the-ramp interval) its factor is skipped (x * 1.0 ==
        # x); an axis whose coordinate does not move along the row (step exactly 0: v = r
        # + i * 0.0 = r) has one weight per row.
        xa, xb = _axis_ones(s, e, i0, r0, cx0, sx, bbx, irx)
        W[max(xa - s, 0):max(xb - s + 1, 0)] = 1.0
        # V is free in the blending modes (their taps accumulate directly): it holds the
        # weights' fractions.
        _axis_weights(W, K, V, 0, min(xa - s, n), False, fs, r0, cx0, sx, bbx, irx)
        _axis_weights(W, K, V, max(xb - s + 1, 0), n, False, fs, r0, cx0, sx, bbx, irx)
        _mul_axis(W, K, V, n, s, i0, r1, cx1, sy, bby, iry)
        if with_z:
            _mul_axis(W, K, V, n, s, i0, r2, cx2, sz, bbz, irz)
    elif mode == 4:
        for q in range(n):
            i = _voxel_i(fs, q)
            vx = r0 + i * cx0
            vy = r1 + i * cx1
            vz = r2 + i * cx2
            W[q] = _cover_distance(vx, vy, vz, sx, sy, sz)


@numba.njit(cache=True, nogil=True)
def _interior_pass(arow, brow, s, e, mode, i0, rc, flat, wflat, lv, lvl0, off, bl,
                   P, FZ, FY, FX, W, V, K, runs):
    """Voxels ``s..e`` of one row inside the level's interior (no clamps), in two passes:
    coordinates, tap offsets, fractions and weights first (straight-line arithmetic the
    compiler vectorises), then the taps and the accumulation. Same operations per voxel
    as :func:`_sample` / the reference kernel, so the same bits."""
    n = e + 1 - s
    _coords(P, FZ, FY, FX, n, float(i0 + s), rc, lv, lvl0, off, True)
    _weights(W, K, V, n, s, i0, rc, bl, mode, True)
    _accumulate_piece(arow, brow, s, n, mode, flat, wflat, off, P, FZ, FY, FX, W, V, runs)


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate_piece(arow, brow, s, n, mode, flat, wflat, off, P, FZ, FY, FX, W, V, runs):
    """The taps and the accumulation of the row's voxels ``s..s+n-1`` from their offsets,
    fractions and weights."""
    sz_, sy_ = off[3], off[4]
    blend = mode == 1 or mode == 5
    if runs and (mode == 0 or mode == 1 or mode == 2 or mode == 4):
        if mode == 1:
            _runs_blend(arow, brow, s, W, flat, n, sy_, sz_, P, FZ, FY, FX)
            return
        _runs_values(V, flat, n, sy_, sz_, P, FZ, FY, FX)
        _accumulate_values(arow, brow, s, n, mode, V, W)
        return
    for q in range(n):
        bx = np.uint64(s + q)  # unsigned: no test for a negative index per access
        if mode == 3 and brow[bx] != 0.0:
            continue
        val = _gather_value(flat, P[q], sy_, sz_, FZ[q], FY[q], FX[q])
        w = 0.0
        if blend:
            w = W[q]
            if mode == 5:
                w *= _gather_value(wflat, P[q], sy_, sz_, FZ[q], FY[q], FX[q])
        elif mode == 4:
            w = W[q]
        arow[bx], brow[bx] = _accumulate_voxel(arow[bx], brow[bx], mode, val, w)


# Shortest run of consecutive cells read as contiguous slices (below: per-voxel gathers).
_MIN_RUN = 8
# Largest deviation (level voxels per output voxel) of a view's row step from (1, 0, 0) for
# which runs are looked for: at 1/16 a run lasts 16 voxels or more on average.
_RUN_SLOPE = 1.0 / 16.0


@numba.njit(cache=True, nogil=True, inline="always")
def _gather_value(flat, p_, sy_, sz_, fz, fy, fx):
    # _sample's taps and lerps where no clamp applies (0 <= l < n - 1 on every axis: the
    # clamps are no-ops, floor == trunc and every upper neighbour exists), at a flat offset
    # (unsigned: no wraparound test).
    p = np.uint64(p_)
    u1 = np.uint64(1)
    uy = np.uint64(sy_)
    uz = np.uint64(sz_)
    uzy = np.uint64(sz_ + sy_)
    gx_ = 1.0 - fx
    c00 = flat[p] * gx_ + flat[p + u1] * fx
    c01 = flat[p + uy] * gx_ + flat[p + uy + u1] * fx
    c10 = flat[p + uz] * gx_ + flat[p + uz + u1] * fx
    c11 = flat[p + uzy] * gx_ + flat[p + uzy + u1] * fx
    c0 = c00 * (1.0 - fy) + c01 * fy
    c1 = c10 * (1.0 - fy) + c11 * fy
    return c0 * (1.0 - fz) + c1 * fz


@numba.njit(cache=True, nogil=True, inline="always")
def _run_value(flat, p00, p01, p10, p11, k, fz, fy, fx):
    # _gather_value's lerps for the k-th voxel of a run whose four source rows start at the
    # flat offsets p00..p11: the same operations in the same order. Offsets are unsigned
    # (no wraparound test) and indexed directly: slicing the rows, as an earlier version
    # did, costs two atomic reference-count updates per slice and run.
    u1 = np.uint64(1)
    gx_ = 1.0 - fx
    c00 = flat[p00 + k] * gx_ + flat[p00 + k + u1] * fx
    c01 = flat[p01 + k] * gx_ + flat[p01 + k + u1] * fx
    c10 = flat[p10 + k] * gx_ + flat[p10 + k + u1] * fx
    c11 = flat[p11 + k] * gx_ + flat[p11 + k + u1] * fx
    c0 = c00 * (1.0 - fy) + c01 * fy
    c1 = c10 * (1.0 - fy) + c11 * fy
    return c0 * (1.0 - fz) + c1 * fz


@numba.njit(cache=True, nogil=True, inline="always")
def _run_rows(base, qa, sy_, sz_):
    # Flat offsets of the four source rows of the run's first voxel qa (cells consecutive
    # from flat[base + qa]).
    p00 = np.uint64(base + qa)
    p01 = p00 + np.uint64(sy_)
    p10 = p00 + np.uint64(sz_)
    return p00, p01, p10, p10 + np.uint64(sy_)


@numba.njit(cache=True, nogil=True, inline="always")
def _run_values(V, flat, base, qa, qb, sy_, sz_, FZ, FY, FX):
    # Voxels qa..qb-1 of a run: the eight taps are four contiguous source rows, loaded
    # without gathers (vectorised).
    p00, p01, p10, p11 = _run_rows(base, qa, sy_, sz_)
    uqa = np.uint64(qa)
    for k_ in range(qb - qa):
        k = np.uint64(k_)
        q = uqa + k
        V[q] = _run_value(flat, p00, p01, p10, p11, k, FZ[q], FY[q], FX[q])


@numba.njit(cache=True, nogil=True, inline="always")
def _run_end(P, q, n, d):
    """End (exclusive) of the run of voxels from ``q`` whose cells continue consecutively
    (``P[r] - r == d``), tested sixteen at a time while it lasts."""
    r = q + 1
    dr = d + r
    while r + 16 <= n:
        # Zero exactly where all sixteen continue the run: an OR of differences, with unsigned
        # indices (numba tests a signed one for a negative value, a compare and a select per
        # load), is branch-free; the earlier AND of comparisons took 2.7 cycles per voxel.
        diff = 0
        ur = np.uint64(r)
        for t in range(16):
            diff |= (P[ur + np.uint64(t)] - t) ^ dr
        if diff != 0:
            break
        r += 16
        dr += 16
    while r < n and P[np.uint64(r)] - r == d:
        r += 1
    return r


@numba.njit(cache=True, nogil=True, inline="always")
def _run_blend(arow, brow, s, W, flat, base, qa, qb, sy_, sz_, FZ, FY, FX):
    # _run_values with avg_blend's accumulation in the same loop (no pass over V).
    p00, p01, p10, p11 = _run_rows(base, qa, sy_, sz_)
    uqa = np.uint64(qa)
    us = np.uint64(s + qa)
    for k_ in range(qb - qa):
        k = np.uint64(k_)
        q = uqa + k
        val = _run_value(flat, p00, p01, p10, p11, k, FZ[q], FY[q], FX[q])
        w = max(W[q], W_FLOOR)
        arow[us + k] += w * val
        brow[us + k] += w


@numba.njit(cache=True, nogil=True, inline="always")
def _runs_blend(arow, brow, s, W, flat, n, sy_, sz_, P, FZ, FY, FX):
    q = 0
    while q < n:
        d = P[q] - q
        r = _run_end(P, q, n, d)
        if r - q >= _MIN_RUN:
            _run_blend(arow, brow, s, W, flat, d, q, r, sy_, sz_, FZ, FY, FX)
        else:
            for t_ in range(q, r):
                t = np.uint64(t_)
                val = _gather_value(flat, P[t], sy_, sz_, FZ[t], FY[t], FX[t])
                w = max(W[t], W_FLOOR)
                x = np.uint64(s) + t
                arow[x] += w * val
                brow[x] += w
        q = r


@numba.njit(cache=True, nogil=True, inline="always")
def _runs_values(V, flat, n, sy_, sz_, P, FZ, FY, FX):
    q = 0
    while q < n:
        d = P[q] - q
        r = _run_end(P, q, n, d)
        if r - q >= _MIN_RUN:
            _run_values(V, flat, d, q, r, sy_, sz_, FZ, FY, FX)
        else:
            # Short runs (tiles rotated by more than a few degrees): one gather per tap is
            # cheaper than setting up a vector loop for a few voxels.
            for t_ in range(q, r):
                t = np.uint64(t_)
                V[t] = _gather_value(flat, P[t], sy_, sz_, FZ[t], FY[t], FX[t])
        q = r


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate_values(arow, brow, s, n, mode, V, W):
    a_ = arow[s:s + n]
    b_ = brow[s:s + n]
    if mode == 1:
        for q in range(n):
            w = max(W[q], W_FLOOR)
            a_[q] += w * V[q]
            b_[q] += w
    elif mode == 0:
        for q in range(n):
            a_[q] += V[q]
            b_[q] += 1.0
    else:
        for q in range(n):
            w = W[q] if mode == 4 else 0.0
            a_[q], b_[q] = _accumulate_voxel(a_[q], b_[q], mode, V[q], w)


@numba.njit(cache=True, nogil=True)
def _segment(arow, brow, s, e, mode, i0, rc, flat, wflat, lv, lvl0, off, nzyx, bl):
    """Voxels ``s..e`` of one row, all inside the view but outside the level's interior (a
    voxel or two at a row's ends; whole rows on a level's first and last planes and on
    one-plane levels): the reference kernel's clamped taps, one voxel at a time."""
    r0, r1, r2, cx0, cx1, cx2 = rc
    hz, hy, hx, gz, gy, gx = lv
    oz, oy, ox, sz_, sy_ = off
    nz, ny, nx = nzyx
    sx, sy, sz, bbx, bby, bbz, irx, iry, irz = bl
    for bx in range(s, e + 1):
        i = float(i0 + bx)
        vx = r0 + i * cx0
        vy = r1 + i * cx1
        vz = r2 + i * cx2
        if mode == 3 and brow[bx] != 0.0:
            continue  # lowest_view_wins: an earlier view already holds this voxel
        lz = _level(vz, hz, gz, lvl0)
        ly = _level(vy, hy, gy, lvl0)
        lx = _level(vx, hx, gx, lvl0)
        val = _sample(flat, lz, ly, lx, oz, oy, ox, nz, ny, nx, sz_, sy_)
        w = 0.0
        if mode == 1 or mode == 5:
            w = (_axis_weight(vx, sx, bbx, irx) * _axis_weight(vy, sy, bby, iry)
                 * _axis_weight(vz, sz, bbz, irz))
            if mode == 5:
                w *= _sample(wflat, lz, ly, lx, oz, oy, ox, nz, ny, nx, sz_, sy_)
        elif mode == 4:
            w = _cover_distance(vx, vy, vz, sx, sy, sz)
        arow[bx], brow[bx] = _accumulate_voxel(arow[bx], brow[bx], mode, val, w)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_ranges(rc, i0, X, bounds, lv, nzyx, sxyz, lvl0):
    """The block-local voxels ``[ia, ib]`` of a row inside the view (the reference kernel's
    widened estimate trimmed to its per-voxel test) and, within them, ``[ca, cb]`` whose
    taps need no clamping; ``ia > ib`` where no voxel is inside, ``ca > cb`` where none is
    interior."""
    r0, r1, r2, cx0, cx1, cx2 = rc
    lo, sx1, sy1, sz1 = bounds
    hz, hy, hx, gz, gy, gx = lv
    nz, ny, nx = nzyx
    sx, sy, sz = sxyz
    ok, a, b = _row_estimate(r0, r1, r2, cx0, cx1, cx2, sx, sy, sz, i0, X)
    if not ok:
        return 1, 0, 1, 0
    ia = int(a)
    ib = int(b)
    while ia <= ib and not _row_ok(float(i0 + ia), r0, r1, r2, cx0, cx1, cx2, lo, sx1, sy1, sz1):
        ia += 1
    while ib >= ia and not _row_ok(float(i0 + ib), r0, r1, r2, cx0, cx1, cx2, lo, sx1, sy1, sz1):
        ib -= 1
    if ib < ia:
        return 1, 0, 1, 0
    ca, cb = _interior_interval(ia, ib, i0, r0, r1, r2, cx0, cx1, cx2, hx, hy, hz, gx, gy, gz, nx, ny, nz, lvl0)
    return ia, ib, ca, cb


@numba.njit(cache=True, nogil=True)
def _planar_rows(PC, C, R, acc_a, acc_b, block_start_zyx, m, mode, flat, wflat, bounds, nzyx, lv, lvl0, off, bl,
                 P, FZ, FY, FX, W, V, K, runs):
    """_accumulate_rows for a planar view (see accumulate_view_rows): the same pieces, the
    same operations per voxel, with each block row's x and y part computed once for all
    planes.

    A row's view x and y are ``m[., 3] + k * m[., 2] + j * m[., 1] + i * m[., 0]``; with
    ``m[0, 2]`` and ``m[1, 2]`` zeros, ``k * 0.0`` is the same signed zero on every plane
    (k >= 0), so every plane's row ``j`` has the same x and y coordinates, bit for bit: its
    range inside the view, its interior interval, tap cells and fractions in x and y, and its
    x and y weights. Its z is ``m[2, 3] + k * m[2, 2] + (j * 0.0 + i * 0.0)``: one value per
    plane, the same along the row. So per plane and row what is left is the z tests, the z
    term of the offsets, the z fraction and the z weight (``(wx * wy) * wz``, the reference's
    order), and the taps."""
    Z, Y, X = acc_a.shape
    k0, j0, i0 = block_start_zyx[0], block_start_zyx[1], block_start_zyx[2]
    lo, sz1 = bounds[0], bounds[3]
    nz = nzyx[0]
    hz, gz = lv[0], lv[3]
    oz, sz_ = off[0], off[3]
    sx, sy, sz, bbz, irz = bl[0], bl[1], bl[2], bl[5], bl[8]
    cx0, cx1, cx2 = m[0, 0], m[1, 0], m[2, 0]
    FYC, FXC, WC = C[0], C[1], C[2]
    # Each block row's x and y part, z standing in at hz (inside, level z 0).
    for by in range(Y):
        r0, r1, _r2 = _row_base(m, float(k0), float(j0 + by))  # z stands in at hz
        rc = (r0, r1, hz, cx0, cx1, 0.0)
        ia, ib, ca, cb = _row_ranges(rc, i0, X, bounds, lv, nzyx, (sx, sy, sz), lvl0)
        R[0, by], R[1, by], R[2, by], R[3, by] = ia, ib, ca, cb
        if ia <= ib and ca <= cb:
            n = cb + 1 - ca
            _coords(PC[by], FZ, FYC[by], FXC[by], n, float(i0 + ca), rc, lv, lvl0, off, False)
            _weights(WC[by], K, V, n, ca, i0, rc, bl, mode, False)
    nz1 = nz - 1.0
    for bz in range(Z):
        k = float(k0 + bz)
        for by in range(Y):
            ia, ib, ca, cb = R[0, by], R[1, by], R[2, by], R[3, by]
            if ib < ia:
                continue
            r0, r1, r2 = _row_base(m, k, float(j0 + by))
            vz = r2 + float(i0 + ia) * cx2  # every voxel's view z (cx2 a signed zero)
            if vz < lo or vz > sz1:
                continue
            arow = acc_a[bz, by]
            brow = acc_b[bz, by]
            rc = (r0, r1, r2, cx0, cx1, cx2)
            lz = _level(vz, hz, gz, lvl0)
            if ca > cb or not (lz >= 0.0 and lz < nz1):  # no interior voxel: the whole row clamped
                _segment(arow, brow, ia, ib, mode, i0, rc, flat, wflat, lv, lvl0, off, nzyx, bl)
                continue
            if ia < ca:
                _segment(arow, brow, ia, ca - 1, mode, i0, rc, flat, wflat, lv, lvl0, off, nzyx, bl)
            n = cb + 1 - ca
            z0 = np.int32(lz)
            fz = lz - z0
            zt = (z0 - np.int32(oz)) * np.int32(sz_)
            pc = PC[by]
            for q in range(n):
                P[q] = pc[q] + zt
                FZ[q] = fz
            if mode == 1 or mode == 5:
                wc = WC[by]
                for q in range(n):
                    W[q] = wc[q]
                _mul_axis(W, K, V, n, ca, i0, r2, cx2, sz, bbz, irz)
            _accumulate_piece(arow, brow, ca, n, mode, flat, wflat, off, P, FZ, FYC[by], FXC[by], W, V, runs)
            if cb < ib:
                _segment(arow, brow, cb + 1, ib, mode, i0, rc, flat, wflat, lv, lvl0, off, nzyx, bl)


def planar_view(m_out_to_view) -> bool:
    """Whether the output -> view map keeps x-y and z apart (translations, scalings, shears and
    rotations within the xy plane: what stitching by translation gives): the view's x and y do
    not depend on the output z, nor its z on the output x and y (exact zeros)."""
    m = m_out_to_view
    return bool(m[0, 2] == 0.0 and m[1, 2] == 0.0 and m[2, 0] == 0.0 and m[2, 1] == 0.0)


def accumulate_view_rows(
    acc_a, acc_b, block_start_zyx, m_out_to_view, size_xyz,
    src, src_off_zyx, level_f_xyz, level_shape_zyx, blend_range_xyz, blend_border_xyz, mode,
    wsrc,
):
    """Drop-in for :func:`rhapso_core.fusion.kernels.accumulate_view`: same arguments, same
    accumulators bit for bit. ``src`` (and for ``content_based`` ``wsrc``, of the same
    shape) must be C-contiguous; ``acc_a``, ``acc_b`` C-contiguous rows.

    A Python function in front of the compiled kernel: choosing the reference kernel here
    rather than inside compiled code keeps the reference out of the kernel's compilation
    (2.6 s of the first fusion after installing), and costs a few microseconds per view
    and block."""
    if src.size > _I32_MAX or int(np.max(level_shape_zyx)) > _I32_MAX:
        # Offsets past int32 (a box of more than 2**31 voxels): the reference kernel, which
        # gives the same bits with int64 offsets.
        accumulate_view(acc_a, acc_b, block_start_zyx, m_out_to_view, size_xyz, src, src_off_zyx,
                        level_f_xyz, level_shape_zyx, blend_range_xyz, blend_border_xyz, mode, wsrc)
        return
    # Per-row scratch, allocated here so that _accumulate_rows can borrow it (its arguments
    # live for the whole call): tap offsets P, the weights' table indices K, and in S the
    # fractions FZ, FY, FX, the weights W and the values V.
    Z, Y, X = acc_a.shape
    # Planar views cache each block row's x and y part for every plane (_planar_rows): PC
    # its tap offsets, C its fractions and x-y weights, R its range (28 bytes per voxel of a
    # block face). Not for closest_pixel_wins (its rank mixes z into every voxel) nor
    # single-plane levels (no interior on z).
    planar = planar_view(m_out_to_view) and Z > 1 and mode != MODE_CLOSEST and int(level_shape_zyx[0]) >= 2
    cy, cx = (Y, X) if planar else (1, 1)
    _accumulate_rows(acc_a, acc_b, block_start_zyx, m_out_to_view, size_xyz, src, src_off_zyx, level_f_xyz,
                     level_shape_zyx, blend_range_xyz, blend_border_xyz, mode, wsrc,
                     np.empty(X, np.int32), np.empty(X, np.int32), np.empty((5, X), np.float64), planar,
                     np.empty((cy, cx), np.int32), np.empty((3, cy, cx), np.float64), np.empty((4, cy), np.int64))


@numba.njit(cache=True, nogil=True)
def _accumulate_rows(
    acc_a, acc_b, block_start_zyx, m_out_to_view, size_xyz,
    src, src_off_zyx, level_f_xyz, level_shape_zyx, blend_range_xyz, blend_border_xyz, mode,
    wsrc, P, K, S, planar, PC, C, R,
):
    # The arrays the row functions take, borrowed (no reference counting per call or slice).
    acc_a = borrowed(acc_a)
    acc_b = borrowed(acc_b)
    P = borrowed(P)
    K = borrowed(K)
    S = borrowed(S)
    FZ, FY, FX, W, V = S[0], S[1], S[2], S[3], S[4]
    Z, Y, X = acc_a.shape
    k0, j0, i0 = block_start_zyx[0], block_start_zyx[1], block_start_zyx[2]
    oz, oy, ox = src_off_zyx[0], src_off_zyx[1], src_off_zyx[2]
    nz, ny, nx = level_shape_zyx[0], level_shape_zyx[1], level_shape_zyx[2]
    hx, hy, hz, gx, gy, gz, irx, iry, irz = _view_constants(level_f_xyz, blend_range_xyz)
    # Factor 1 on every axis: (v - 0.0) * 1.0 == v, so the level coordinate is v itself.
    lvl0 = level_f_xyz[0] == 1.0 and level_f_xyz[1] == 1.0 and level_f_xyz[2] == 1.0
    bbx, bby, bbz = blend_border_xyz[0], blend_border_xyz[1], blend_border_xyz[2]
    sx, sy, sz = size_xyz[0], size_xyz[1], size_xyz[2]
    cx0, cx1, cx2 = m_out_to_view[0, 0], m_out_to_view[1, 0], m_out_to_view[2, 0]
    lo = -COVER_EPS
    sx1, sy1, sz1 = sx - 1.0 + COVER_EPS, sy - 1.0 + COVER_EPS, sz - 1.0 + COVER_EPS
    flat = borrowed(src).reshape(-1)
    wflat = borrowed(wsrc).reshape(-1)  # content_based only; other modes pass a 1-voxel stand-in
    sy_ = src.shape[2]
    sz_ = src.shape[1] * src.shape[2]
    # Consecutive output voxels of a row fall in consecutive level cells (long runs read as
    # contiguous slices) only where the level coordinate steps by about +1 in x and hardly
    # moves in y and z; elsewhere runs are a few voxels long and the per-voxel gathers win.
    runs = (abs(cx0 * (1.0 if lvl0 else gx) - 1.0) < _RUN_SLOPE and abs(cx1) * (1.0 if lvl0 else gy) < _RUN_SLOPE
            and abs(cx2) * (1.0 if lvl0 else gz) < _RUN_SLOPE)
    # The per-view constants travel to the row functions as tuples: one argument each
    # instead of twenty scalars measured about 10 % faster in the kernel replay (less to pass
    # per row piece).
    lv = (hz, hy, hx, gz, gy, gx)
    off = (oz, oy, ox, sz_, sy_)
    bl = (sx, sy, sz, bbx, bby, bbz, irx, iry, irz)
    # The planar rows' stand-in for the view z of every voxel: hz lies inside the view
    # and is level z 0 (0 <= 0 < nz - 1 with nz >= 2), so x and y alone decide the tests.
    if planar and lo <= hz <= sz1:
        _planar_rows(borrowed(PC), borrowed(C), borrowed(R), acc_a, acc_b, block_start_zyx, m_out_to_view, mode,
                     flat, wflat, (lo, sx1, sy1, sz1), (nz, ny, nx), lv, lvl0, off, bl, P, FZ, FY, FX, W, V, K, runs)
        return
    for bz in range(Z):
        k = float(k0 + bz)
        for by in range(Y):
            r0, r1, r2 = _row_base(m_out_to_view, k, float(j0 + by))
            rc = (r0, r1, r2, cx0, cx1, cx2)
            ia, ib, ca, cb = _row_ranges(rc, i0, X, (lo, sx1, sy1, sz1), lv, (nz, ny, nx), (sx, sy, sz), lvl0)
            if ib < ia:
                continue
            arow = acc_a[bz, by]
            brow = acc_b[bz, by]
            if ca > cb:  # no interior voxel: the whole row clamped
                _segment(arow, brow, ia, ib, mode, i0, rc, flat, wflat, lv, lvl0, off, (nz, ny, nx), bl)
                continue
            # The row in three pieces: clamped, interior, clamped. The interior is one piece
            # whatever the blending weights do along it: each axis finds its own past-the-ramp
            # voxels in _interior_pass (splitting the row there as well, as an earlier version
            # did, cost 2-3 % of the kernel in calls and interval tests).
            if ia < ca:
                _segment(arow, brow, ia, ca - 1, mode, i0, rc, flat, wflat, lv, lvl0, off, (nz, ny, nx), bl)
            _interior_pass(arow, brow, ca, cb, mode, i0, rc, flat, wflat, lv, lvl0, off, bl,
                           P, FZ, FY, FX, W, V, K, runs)
            if cb < ib:
                _segment(arow, brow, cb + 1, ib, mode, i0, rc, flat, wflat, lv, lvl0, off, (nz, ny, nx), bl)
