"""Benchmark: DoG interest-point detection throughput (voxels / s / core) and chunk memory.

Compares, on the same synthetic uint16 block of Gaussian blobs + Poisson and read noise:

1. ours: ``rhapso_core.detection.detect_dog`` (numba, single thread);
2. a plain scipy.ndimage reference: block-mean downsampling, ``median_filter`` background
   (when asked), ``gaussian_filter`` for G1 and G2 from the input, ``maximum_filter`` /
   ``minimum_filter`` 3x3x3 candidates, the same quadratic localisation;
3. with ``--rhapso``: the published ``rhapso==0.4.5`` ``DifferenceOfGaussian.run`` on the
   already-downsampled block, in its own virtual environment ``bench/_venvs/rhapso045``
   (created with ``python -m venv`` + ``pip install rhapso==0.4.5`` on first use). Its
   time excludes reading and downsampling, which favours it.

Throughput counts full-resolution input voxels. Runs are single-threaded
(``NUMBA_NUM_THREADS=1`` and one BLAS/OpenMP thread, unless the environment sets them), so the
figure is per core.

Usage::

    python bench/bench_detection.py                 # 128 x 512 x 512, median_filter 0 and 5
    python bench/bench_detection.py --size 64 256 256 --rhapso
"""

from __future__ import annotations

import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # a caller's own setting (a test process's numba threads) is kept

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhapso_core.detection import DetectionParams, detect_dog, plan_detection  # noqa: E402
from rhapso_core.detection._extrema import localize_candidates  # noqa: E402
from rhapso_core.detection.dog import K, dog_sigmas  # noqa: E402
from rhapso_core.detection.params import MAX_MOVES  # noqa: E402
from rhapso_core.detection.view import detect_chunk  # noqa: E402
from rhapso_core.image_source import ArraySource  # noqa: E402

VENV = ROOT / "bench" / "_venvs" / "rhapso045"


def make_block(shape, density=2e-4, seed=0):
    """uint16 (z, y, x) block: background 100, Gaussian blobs (sigma 1.5-3 voxels,
    amplitude 50-2000), Poisson shot noise and read noise of 3 counts."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    img = np.full(shape, 100.0, np.float32)
    n = int(density * nz * ny * nx)
    cz, cy, cx = (rng.uniform(0, s - 1, n) for s in shape)
    sig = rng.uniform(1.5, 3.0, n)
    amp = rng.uniform(50, 2000, n)
    for i in range(n):
        r = int(np.ceil(3.5 * sig[i]))
        z0, z1 = max(0, int(cz[i]) - r), min(nz, int(cz[i]) + r + 2)
        y0, y1 = max(0, int(cy[i]) - r), min(ny, int(cy[i]) + r + 2)
        x0, x1 = max(0, int(cx[i]) - r), min(nx, int(cx[i]) + r + 2)
        zz, yy, xx = np.ogrid[z0:z1, y0:y1, x0:x1]
        d2 = (zz - cz[i]) ** 2 + (yy - cy[i]) ** 2 + (xx - cx[i]) ** 2
        img[z0:z1, y0:y1, x0:x1] += amp[i] * np.exp(-d2 / (2 * sig[i] ** 2))
    img = rng.poisson(img).astype(np.float32) + rng.normal(0, 3, shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)


def scipy_reference(block, p: DetectionParams):
    """Plain scipy.ndimage DoG with the same semantics (float32 arrays, G1 and G2 from the input)."""
    fz, fy, fx = p.factors_zyx()
    nz, ny, nx = (s // f for s, f in zip(block.shape, (fz, fy, fx)))
    work = block[: nz * fz, : ny * fy, : nx * fx].reshape(nz, fz, ny, fy, nx, fx)
    work = work.mean(axis=(1, 3, 5), dtype=np.float32)
    if p.median_filter > 0:
        k = 2 * p.median_filter + 1
        work = work - ndimage.median_filter(work, size=(1, k, k), mode="reflect")
    img = (work - np.float32(p.min_intensity)) / np.float32(p.max_intensity - p.min_intensity)
    s1, s2, _ = dog_sigmas(p.sigma)
    g1 = ndimage.gaussian_filter(img, s1, mode="reflect")
    g2 = ndimage.gaussian_filter(img, s2, mode="reflect")
    dog = (g1 - g2) / np.float32(K - 1)
    t3 = np.float32(p.threshold / 3)
    cands, signs = [], []
    if p.peak_type in ("max", "both"):
        c = (dog == ndimage.maximum_filter(dog, size=3)) & (dog >= t3)
        cands.append(np.argwhere(c))
        signs.append(np.ones(len(cands[-1])))
    if p.peak_type in ("min", "both"):
        c = (dog == ndimage.minimum_filter(dog, size=3)) & (dog <= -t3)
        cands.append(np.argwhere(c))
        signs.append(-np.ones(len(cands[-1])))
    cand = np.concatenate(cands).astype(np.int64)
    loc, val = localize_candidates(dog, cand, np.concatenate(signs), p.threshold, MAX_MOVES)
    f = np.array([fz, fy, fx], float)
    return (f * loc + (f - 1) / 2)[:, ::-1], val


RHAPSO_SCRIPT = r"""
import json, sys, time
import numpy as np
from Rhapso.detection.difference_of_gaussian import DifferenceOfGaussian
work = np.load(sys.argv[1])            # (z, y, x) float32, already downsampled
a = json.loads(sys.argv[2])
img_xyz = np.ascontiguousarray(work.transpose(2, 1, 0))  # Rhapso's chunks are (x, y, z)
dog = DifferenceOfGaussian(a["min"], a["max"], a["sigma"], a["threshold"], a["median"], np.eye(4))
t0 = time.perf_counter()
out = dog.run(img_xyz, [0, 0, 0], [0, 0, 0])
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "n": int(len(out["interest_points"]))}))
"""


def ensure_rhapso_venv() -> Path | None:
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", "import Rhapso.detection.difference_of_gaussian"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"creating {VENV} and installing rhapso==0.4.5 ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "rhapso==0.4.5"])
    if r.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        print("rhapso 0.4.5 could not be installed; skipping that comparison")
        return None
    return py


def run_rhapso(block, p: DetectionParams):
    py = ensure_rhapso_venv()
    if py is None:
        return None
    fz, fy, fx = p.factors_zyx()
    nz, ny, nx = (s // f for s, f in zip(block.shape, (fz, fy, fx)))
    work = block[: nz * fz, : ny * fy, : nx * fx].reshape(nz, fz, ny, fy, nx, fx)
    work = work.mean(axis=(1, 3, 5), dtype=np.float32)
    with tempfile.TemporaryDirectory() as td:
        f = Path(td) / "work.npy"
        np.save(f, work)
        args = json.dumps({"min": p.min_intensity, "max": p.max_intensity, "sigma": p.sigma,
                           "threshold": p.threshold, "median": p.median_filter})
        env = dict(os.environ)
        r = subprocess.run([str(py), "-c", RHAPSO_SCRIPT, str(f), args], capture_output=True,
                           text=True, env=env)
    if r.returncode != 0:
        print("rhapso run failed:", r.stderr.strip().splitlines()[-1:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def timed(fn, repeat):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def chunk_memory(block, p: DetectionParams):
    """Peak traced allocation of one detect_chunk call vs the chunk's float32 size (with halo).

    The source copies on read, as a zarr / TIFF source does, so the raw read is counted.
    """

    class CopyingSource(ArraySource):
        def read(self, box, level=0):
            return np.array(super().read(box, level))

    src = CopyingSource([block])
    plan = plan_detection(src, p.model_copy(update={"chunks_per_bound": 8}))
    t = plan.tasks[0]
    from rhapso_core.detection.view import chunk_halo, working_shape
    halo = chunk_halo(plan.params)
    ws = working_shape(src, t.level, t.in_memory_factor)
    n = 1
    for (a, b), h, s in zip(t.core_box, halo, ws):
        n *= min(s, b + h) - max(0, a - h)
    detect_chunk(src, t.level, t.in_memory_factor, t.core_box, plan.params)  # warm
    tracemalloc.start()
    detect_chunk(src, t.level, t.in_memory_factor, t.core_box, plan.params)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, 4 * n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs=3, default=(128, 512, 512), metavar=("Z", "Y", "X"))
    ap.add_argument("--median", type=int, nargs="+", default=(0, 5),
                    help="median_filter radii to run (default 0 5)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rhapso", action="store_true", help="also time rhapso 0.4.5 (own venv)")
    a = ap.parse_args(argv)
    shape = tuple(a.size)
    block = make_block(shape)
    nvox = block.size
    print(f"block {shape} uint16, {nvox / 1e6:.1f} Mvoxels, single thread")
    base = DetectionParams(dsxy=2, dsz=1, sigma=1.8, threshold=0.008, min_intensity=0,
                           max_intensity=2500)
    detect_dog(block[:32, :64, :64], base.model_copy(update={"median_filter": 2}))  # JIT warm-up
    for r in a.median:
        p = base.model_copy(update={"median_filter": r})
        t_ours, pts = timed(lambda: detect_dog(block, p), a.repeat)
        t_ref, (ref_loc, _) = timed(lambda: scipy_reference(block, p), 1)
        line = (f"median_filter={r}: ours {nvox / t_ours / 1e6:7.1f} Mvox/s/core ({t_ours:.2f} s, "
                f"{len(pts)} pts) | scipy ref {nvox / t_ref / 1e6:7.1f} Mvox/s/core ({t_ref:.2f} s, "
                f"{len(ref_loc)} pts) | ours/ref {t_ref / t_ours:5.1f}x")
        if a.rhapso:
            rr = run_rhapso(block, p)
            if rr is not None:
                line += (f" | rhapso 0.4.5 {nvox / rr['seconds'] / 1e6:7.2f} Mvox/s/core "
                         f"({rr['seconds']:.2f} s, {rr['n']} pts) | ours/rhapso "
                         f"{rr['seconds'] / t_ours:5.1f}x")
        print(line, flush=True)
    peak, f32 = chunk_memory(block, base.model_copy(update={"median_filter": 5}))
    print(f"one chunk (median_filter=5): peak traced memory {peak / 2**20:.1f} MiB = "
          f"{peak / f32:.2f}x the chunk's float32 size ({f32 / 2**20:.1f} MiB, working grid incl. halo)")


if __name__ == "__main__":
    main()
