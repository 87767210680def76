"""The fusion sampling kernel alone, replayed, beside the reference kernel (issue 21).

For each tile rotation asked for, one generated dataset (``bench_fusion_core``'s: 3 x 2 x 1
uint16 tiles, by default of 256 x 256 x 96 (``--tile``), 15 % overlap, rotations under 1
degree in xy, plus the extra rotation about a tilted axis) is fused once with the
pipeline's defaults while every call of the sampling kernel is recorded (its arguments
copied). The recorded calls are then replayed
in this process, one thread, with the reference kernel (:func:`rhapso_core.fusion.kernels.
accumulate_view`) and the current one (:mod:`rhapso_core.fusion.row_kernels`), alternating,
each on fresh copies of the accumulators (copies made outside the timing); the fastest of
``--repeat`` rounds counts. Printed per rotation: seconds of all calls, sampled voxels / s
(voxels whose accumulators a view changed), ratio, and whether the accumulators are equal
bit for bit; at the end, the process's peak resident memory (the recorded calls hold a
copy of every view's box and of the accumulators).

Why a replay: the whole-fusion benchmark times the sampling phase among reads, writes and
other work that move with the machine; here both kernels see the same calls back to back.
Rotation 0 is the generator's in-plane case: planar views (x-y apart from z, as after
stitching by translation), whose x-y part the kernel computes once per block row for all
planes; 0.01 degree about a tilted axis is an affine-refined tile (nearly planar, but every
axis moves along a row, so the general rows); 1 degree about a tilted axis is a tile
turned visibly out of the xy plane; 20 degrees is the worst case (no runs of consecutive
cells).

Usage::

    python bench/bench_fusion_kernel.py                  # rotations 0, 0.01, 1, 20; about a minute
    python bench/bench_fusion_kernel.py --rotate 0 --repeat 9
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_fusion as bf  # noqa: E402
import bench_fusion_core as bc  # noqa: E402
from rhapso_core.fusion import FusionParams, make_output_grid  # noqa: E402
from rhapso_core.fusion.kernels import accumulate_view  # noqa: E402
from rhapso_core.fusion.row_kernels import accumulate_view_rows  # noqa: E402


def record_calls(views, grid, params, out_uri: Path) -> list[tuple]:
    """The sampling kernel's calls of one fusion, arguments copied (accumulators as they
    were before each call)."""
    calls = []

    def recorder(*args):
        calls.append(tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args))
        return accumulate_view_rows(*args)

    bc.fuse_timed(views, grid, params, out_uri, recorder, params.compressor, params.clevel)
    return calls


def replay(kernel, calls) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """Seconds (process CPU) of all calls on fresh accumulator copies, and the results."""
    total, results = 0.0, []
    for call in calls:
        args = list(call)
        args[0], args[1] = call[0].copy(), call[1].copy()
        t0 = time.process_time()
        kernel(*args)
        total += time.process_time() - t0
        results.append((args[0], args[1]))
    return total, results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rotate", type=float, nargs="+", default=[0.0, 0.01, 1.0, 20.0],
                    help="extra rotations about a tilted axis (degrees), one dataset each")
    ap.add_argument("--repeat", type=int, default=5, help="replay rounds; the fastest counts (default 5)")
    ap.add_argument("--tile", type=int, nargs=3, default=(256, 256, 96), metavar=("X", "Y", "Z"))
    a = ap.parse_args(argv)
    params = FusionParams()
    print(f"sampling kernel replayed, one thread, {params.overlap_strategy}; seconds = all calls of one "
          f"fusion, fastest of {a.repeat}; Mvox/s per sampled voxel")
    print(f"{'rotation':>9} {'calls':>6} {'sampled M':>10} {'reference s':>12} {'current s':>10} "
          f"{'ref Mvox/s':>11} {'cur Mvox/s':>11} {'speed-up':>9}  identical")
    with tempfile.TemporaryDirectory(prefix="bench_fusion_kernel_") as tmp:
        tmp = Path(tmp)
        bf.make_dataset(tmp / "ds", (3, 2, 1), tuple(a.tile))
        base_views = bc.load_views(tmp / "ds")
        rows = []
        for deg in a.rotate:
            views = bc.rotate_views(base_views, deg)
            grid = make_output_grid(views)
            calls = record_calls(views, grid, params, tmp / f"out_{deg}")
            best = {"ref": np.inf, "cur": np.inf}
            for _ in range(a.repeat):
                for name, kernel in (("ref", accumulate_view), ("cur", accumulate_view_rows)):
                    t, res = replay(kernel, calls)
                    best[name] = min(best[name], t)
                    if name == "ref":
                        ref_res = res
                    else:
                        cur_res = res
            same = all(np.array_equal(c[0], r[0]) and np.array_equal(c[1], r[1])
                       for c, r in zip(cur_res, ref_res))
            sampled = sum(int(np.count_nonzero(r[1] != call[1])) for r, call in zip(ref_res, calls))
            print(f"{deg:>9g} {len(calls):>6} {sampled / 1e6:>10.1f} {best['ref']:>12.3f} {best['cur']:>10.3f} "
                  f"{sampled / best['ref'] / 1e6:>11.1f} {sampled / best['cur'] / 1e6:>11.1f} "
                  f"{best['ref'] / best['cur']:>8.2f}x  {same}")
            rows.append({"rotation": deg, "reference_s": best["ref"], "current_s": best["cur"],
                         "sampled": sampled, "identical": same})
            del calls, ref_res, cur_res
    print(f"peak RSS of this process: {bf.peak_rss_mb():.0f} MB")
    return rows


if __name__ == "__main__":
    main()
