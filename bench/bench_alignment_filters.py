"""The alignment's Gaussians and NCC and the fusion's intensity maps, each beside what it replaced (issue 21).

Four uses, each timed against its reference on the same arrays, one thread, the fastest of
``--repeat`` (CPU seconds), with the number of values whose bits differ:

* **overlap fits' smoothing**: ``stitching.overlap_affine._smooth`` (sigma 1, ``nearest``) on
  crops shaped like the fits' (z, y, x) against ``scipy.ndimage.gaussian_filter``;
* **parameter resolution's scale blurs**: ``autoparams.features._blur`` (its eight scales,
  ``reflect``, truncate 3, z sigma a quarter of the in-plane one, as for z voxels 4x longer) on a crop of the size the
  resolution reads, against scipy;
* **peak verification's NCC**: ``stitching._ncc_kernel.ncc_f32`` on the shared voxels of two
  overlap crops under a shift (the slices :func:`rhapso_core.stitching.phase._shared_ncc` passes),
  against the one-chain loop it replaced (:func:`one_chain_ncc`, kept here as the reference); its
  'differ' column is the relative difference of the two r values (rounding only, not bits);
* **intensity maps**: ``ViewIntensity.map_box`` (a fixed interpolation order, plane by plane)
  against the einsum it replaced (:func:`einsum_map_box`, kept here as the reference), with a
  flat-field, plus each one's traced peak memory per voxel (``tracemalloc``).

Usage::

    python bench/bench_alignment_filters.py                 # the shapes of the 6-tile stitch, ~10 s
    python bench/bench_alignment_filters.py --map-box 120 500 600 --cells 2 3 4
"""

from __future__ import annotations

import os

# One core: set before NumPy loads its BLAS (the einsum reference would use a second thread).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhapso_core.autoparams.features import N_SCALES, SCALE_RATIO, TRUNCATE, _blur  # noqa: E402
from rhapso_core.intensity.model import (  # noqa: E402
    FlatField,
    ViewIntensity,
    cell_weights_1d,
    level_voxel_centres,
    normalised_position,
)
from rhapso_core.stitching._ncc_kernel import ncc_f32  # noqa: E402
from rhapso_core.stitching.overlap_affine import _smooth  # noqa: E402
from rhapso_core.stitching.phase import _slices  # noqa: E402


@njit(cache=True, nogil=True)
def one_chain_ncc(a, b):  # pragma: no cover - compiled
    """``ncc_f32`` as it was before 2026-12-07: strided 3-D indexing, one addition chain per sum."""
    n0, n1, n2 = a.shape
    n = n0 * n1 * n2
    sa = 0.0
    sb = 0.0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                sa += a[i, j, k]
                sb += b[i, j, k]
    ma = sa / n
    mb = sb / n
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                da = a[i, j, k] - ma
                db = b[i, j, k] - mb
                saa += da * da
                sbb += db * db
                sab += da * db
    den = math.sqrt(saa * sbb)
    if not (den > 0.0) or not math.isfinite(den):
        return -np.inf
    return sab / den


def einsum_map_box(m: ViewIntensity, src_zyx, box_start_zyx, level_factors_zyx) -> np.ndarray:
    """``map_box`` as it was before 2b8c79d: interpolation matrices contracted by ``np.einsum``."""
    vz, vy, vx = level_voxel_centres(src_zyx.shape, box_start_zyx, level_factors_zyx)
    sx, sy, sz = m.size_xyz
    cx, cy, cz = m.cells_xyz

    def matrix(v, size, cells):
        i0, i1, w = cell_weights_1d(v, size, cells)
        out = np.zeros((len(v), cells))
        rows = np.arange(len(v))
        np.add.at(out, (rows, i0), 1.0 - w)
        np.add.at(out, (rows, i1), w)
        return out

    mz, my, mx = matrix(vz, sz, cz), matrix(vy, sy, cy), matrix(vx, sx, cx)
    a = np.einsum("zk,yj,xi,kji->zyx", mz, my, mx, m.a, optimize=True).astype(np.float32)
    b = np.einsum("zk,yj,xi,kji->zyx", mz, my, mx, m.b, optimize=True).astype(np.float32)
    x = np.asarray(src_zyx, np.float32)
    if m.flatfield is None:
        return a * x + b
    ff = m.flatfield
    fl = ff.evaluate(normalised_position(vx, sx)[None, :], normalised_position(vy, sy)[:, None]).astype(np.float32)
    d = np.float32(ff.dark)
    return a * ((x - d) / fl[None] + d) + b


def _best(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def _differing(a, b) -> int:
    a, b = np.asarray(a), np.asarray(b)
    return int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32))) if a.shape == b.shape else -1


def _scipy_blurs(a, sigmas):
    from scipy import ndimage

    return [ndimage.gaussian_filter(a, s, mode="reflect", truncate=TRUNCATE) for s in sigmas]


def _peak_per_voxel(fn, n) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / n
    finally:
        tracemalloc.stop()


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, nargs=3, action="append", metavar=("Z", "Y", "X"),
                    help="an overlap-fit crop (z, y, x); repeat for several (default 96 256 34 and 96 34 256)")
    ap.add_argument("--feature-crop", type=int, nargs=3, default=[71, 23, 69], metavar=("Z", "Y", "X"))
    ap.add_argument("--map-box", type=int, nargs=3, default=[120, 500, 600], metavar=("Z", "Y", "X"))
    ap.add_argument("--cells", type=int, nargs=3, default=[2, 3, 4], metavar=("CZ", "CY", "CX"))
    ap.add_argument("--repeat", type=int, default=5, help="runs of each; the fastest counts (default 5)")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []

    def row(what, shape, ref_s, ours_s, differ, extra=""):
        print(f"{what:<34} {str(tuple(shape)):>16} {ref_s * 1e3:>9.1f} {ours_s * 1e3:>9.1f} {ref_s / ours_s:>7.2f}x "
              f"{differ:>9}  {extra}")
        rows.append({"what": what, "shape": tuple(shape), "reference_s": ref_s, "ours_s": ours_s, "differing": differ})

    print("one thread, fastest of %d, CPU ms; 'differ' = values whose bits differ from the reference "
          "(NCC: the relative difference of r)" % a.repeat)
    print(f"{'use':<34} {'shape (z,y,x)':>16} {'ref ms':>9} {'ours ms':>9} {'speed':>8} {'differ':>9}")
    from scipy import ndimage

    for shape in a.crop or [(96, 256, 34), (96, 34, 256)]:
        crop = (rng.random(shape) * 4000).astype(np.uint16)
        _smooth(crop[:2, :3, :4], (1.0, 1.0, 1.0))  # the compiled loops loaded first
        ref_s, ref = _best(lambda: ndimage.gaussian_filter(crop.astype(np.float32), 1.0, mode="nearest"), a.repeat)
        ours_s, got = _best(lambda: _smooth(crop, (1.0, 1.0, 1.0)), a.repeat)
        row("overlap fit smoothing (sigma 1)", shape, ref_s, ours_s, _differing(ref, got))

    for shape in a.crop or [(96, 256, 34), (96, 34, 256)]:
        # Two crops of one texture, fixed(x) ~ moving(x - (1, 2, -2)), the moving one with noise;
        # the NCC of their shared voxels at that shift, as peak verification computes it.
        big = rng.random(tuple(n + 4 for n in shape)).astype(np.float32) * 1000
        fixed = big[2:2 + shape[0], 2:2 + shape[1], 2:2 + shape[2]]
        moving = big[3:3 + shape[0], 4:4 + shape[1], :shape[2]] + rng.random(shape).astype(np.float32) * 300
        sf, sm = _slices((1, 2, -2), shape)
        fa, ma = fixed[sf], moving[sm]
        one_chain_ncc(fa[:2, :2, :2], ma[:2, :2, :2])
        ncc_f32(fa[:2, :2, :2], ma[:2, :2, :2])
        ref_s, ref = _best(lambda: one_chain_ncc(fa, ma), a.repeat)
        ours_s, got = _best(lambda: ncc_f32(fa, ma), a.repeat)
        row("peak verification NCC", fa.shape, ref_s, ours_s, f"{abs(got - ref) / abs(ref):.1e}", f"r = {got:.4f}")
        rows[-1]["differing_relative"] = abs(got - ref) / abs(ref)

    fc = (rng.random(a.feature_crop) * 900 - 300).astype(np.float32)
    # The resolution's scales (features._scale_scores), z voxels 4x longer as in the 6-tile stitch.
    scales = SCALE_RATIO ** (np.arange(N_SCALES + 1) - 1.0)
    sigmas = [(s / 4 if s / 4 > 0.3 else 0.0, s, s) for s in scales]
    _blur(fc[:2, :3, :4].copy(), sigmas[0])
    ref_s, ref = _best(lambda: _scipy_blurs(fc, sigmas), a.repeat)
    ours_s, got = _best(lambda: [_blur(fc, s) for s in sigmas], a.repeat)
    row("feature scale blurs (8 scales)", fc.shape, ref_s, ours_s, sum(_differing(r, g) for r, g in zip(ref, got)))

    cells = tuple(a.cells)
    size_xyz = tuple(int(n) for n in a.map_box[::-1])
    m = ViewIntensity(size_xyz, 1 + 0.1 * rng.standard_normal(cells), 5 * rng.standard_normal(cells),
                      FlatField(2, (-0.1, 0.02, -0.12), 90.0))
    src = rng.integers(0, 4000, a.map_box).astype(np.uint16)
    args = (src, (0, 0, 0), (1.0, 1.0, 1.0))
    ref_s, ref = _best(lambda: einsum_map_box(m, *args), min(a.repeat, 3))
    ours_s, got = _best(lambda: m.map_box(*args), min(a.repeat, 3))
    del ref, got
    peak_ref = _peak_per_voxel(lambda: einsum_map_box(m, *args), src.size)
    peak_ours = _peak_per_voxel(lambda: m.map_box(*args), src.size)
    differ = _differing(einsum_map_box(m, *args), m.map_box(*args))
    row(f"intensity map, cells {cells}", src.shape, ref_s, ours_s, differ,
        f"peak {peak_ref:.1f} -> {peak_ours:.1f} bytes per voxel (with flat-field)")
    rows[-1].update(peak_reference=peak_ref, peak_ours=peak_ours)
    return rows


if __name__ == "__main__":
    main()
