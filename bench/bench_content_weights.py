"""Content-based fusion's weights, ours beside the same formula on scipy.ndimage (issue 21).

``content_based`` computes, per view and block, ``G_sigma2 * (I - G_sigma1 * I)^2`` on the
block's source box grown by the filters' halo (:func:`rhapso_core.fusion.content.content_weights`).
Its Gaussians are :mod:`rhapso_core.exact_gaussian` (scipy's arithmetic, vectorised);
the reference is the same formula through ``scipy.ndimage.gaussian_filter``, as fusion
computed it before. For each box size: CPU seconds of each (one thread, the fastest of
``--repeat``), source voxels per second, the ratio, and whether the float32 weights are
identical bit for bit; at the end the process's peak resident memory.

Sigmas default to BigStitcher's and the pipeline's (20 and 40 voxels; radius 60 and 120),
with z divided by ``--z-step`` as ``content_adjust_anisotropy`` does for voxels that long.
Pixel values are uniform noise: the filters' cost does not depend on them.

Usage::

    python bench/bench_content_weights.py                       # two boxes, about a minute
    python bench/bench_content_weights.py --box 96 256 256 --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_fusion as bf  # noqa: E402
from rhapso_core.fusion.content import _radius, content_weights, filter_taps  # noqa: E402


def scipy_weights(src, s1, s2) -> np.ndarray:
    """The formula as content_weights computed it on scipy.ndimage (the reference)."""
    from scipy import ndimage

    img = np.asarray(src, dtype=np.float32)
    w = ndimage.gaussian_filter(img, s1, mode="mirror", radius=_radius(s1), output=np.float32)
    np.subtract(img, w, out=w)
    np.square(w, out=w)
    ndimage.gaussian_filter(w, s2, mode="mirror", radius=_radius(s2), output=w)
    np.maximum(w, 0.0, out=w)
    return w


def _timed(fn, *args) -> tuple[float, np.ndarray]:
    t0 = time.process_time()
    out = fn(*args)
    return time.process_time() - t0, out


def ours_taps_per_s(box=(96, 256, 256), sigma1=20.0, sigma2=40.0, repeat=2) -> float:
    """Voxel-taps per CPU second of ``content_weights`` on one box (the fastest of ``repeat``):
    what ``bench/run_benchmarks.py`` writes as the planner's ``content_filter_taps_per_s``."""
    s1, s2 = np.full(3, float(sigma1)), np.full(3, float(sigma2))
    src = np.random.default_rng(0).integers(200, 4000, tuple(box)).astype(np.uint16)
    content_weights(src[:4, :5, :6].copy(), s1, s2)  # the compiled loops loaded (or compiled) first
    best = min(_timed(content_weights, src, s1, s2)[0] for _ in range(repeat))
    return src.size * filter_taps(s1, s2) / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box", type=int, nargs=3, action="append", metavar=("Z", "Y", "X"),
                    help="source box (z, y, x) level voxels; repeat for several (default 96 256 256 "
                         "and 160 320 320)")
    ap.add_argument("--sigma1", type=float, default=20.0)
    ap.add_argument("--sigma2", type=float, default=40.0)
    ap.add_argument("--z-step", type=float, default=1.0, help="z voxel length / x voxel length")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest counts (default 2)")
    a = ap.parse_args(argv)
    boxes = a.box or [(96, 256, 256), (160, 320, 320)]
    s1 = np.array([a.sigma1 / a.z_step, a.sigma1, a.sigma1])
    s2 = np.array([a.sigma2 / a.z_step, a.sigma2, a.sigma2])
    rng = np.random.default_rng(0)
    # Warm-up: the compiled loops come from numba's on-disk cache (or compile once here).
    content_weights(rng.integers(0, 4000, (4, 5, 6)).astype(np.uint16), s1, s2)
    print(f"content_based weights G2 * (I - G1 * I)^2, sigmas (z, y, x) {tuple(s1.tolist())} / {tuple(s2.tolist())}, "
          f"radii {_radius(s1)} / {_radius(s2)}; one thread, fastest of {a.repeat}; Mvox/s = source voxels / CPU s")
    taps = filter_taps(s1, s2)
    print(f"{'box (z, y, x)':>18} {'Mvox':>6} {'scipy s':>8} {'ours s':>8} {'scipy Mvox/s':>13} "
          f"{'ours Mvox/s':>12} {'ours Gtaps/s':>13} {'speed-up':>9}  identical   ({taps} taps per voxel: "
          f"the planner's content_filter_taps_per_s)")
    rows = []
    for box in boxes:
        src = rng.integers(200, 4000, tuple(box)).astype(np.uint16)
        best = {"scipy": np.inf, "ours": np.inf}
        for _ in range(a.repeat):
            t, ref = _timed(scipy_weights, src, s1, s2)
            best["scipy"] = min(best["scipy"], t)
            t, got = _timed(content_weights, src, s1, s2)
            best["ours"] = min(best["ours"], t)
        same = np.array_equal(ref.view(np.uint32), got.view(np.uint32))
        n = src.size / 1e6
        print(f"{str(tuple(box)):>18} {n:>6.1f} {best['scipy']:>8.2f} {best['ours']:>8.2f} "
              f"{n / best['scipy']:>13.2f} {n / best['ours']:>12.2f} {n * taps / best['ours'] / 1e3:>13.2f} "
              f"{best['scipy'] / best['ours']:>8.2f}x  {same}")
        rows.append({"box": tuple(box), "scipy_s": best["scipy"], "ours_s": best["ours"], "identical": same,
                     "taps_per_s": src.size * taps / best["ours"]})
        del ref, got, src
    print(f"peak RSS of this process: {bf.peak_rss_mb():.0f} MB")
    return rows


if __name__ == "__main__":
    main()
