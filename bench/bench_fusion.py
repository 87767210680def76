"""Fusion benchmark: throughput of avg_blend, bounded memory, optional Rhapso 0.4.5 comparison.

Prints, for one generated tiled dataset (uint16 tiles with small rotations, written to a
temporary zarr so every contender reads the same chunks):

1. ``ours``: output voxels / s / core of :func:`rhapso_core.fusion.fuse_block`
   (``avg_blend``), single-threaded, over every output block.
2. ``scipy``: the same resampling and cosine blending done with
   ``scipy.ndimage.map_coordinates(order=1)`` plus NumPy weights, same blocks.
3. ``rhapso 0.4.5`` (``--rhapso``): the published ``FuseCell.render_fused_block`` (its
   per-block core, linear ramps, map_coordinates) driven over the same blocks from its
   own virtualenv ``bench/_venvs/rhapso045`` (made with ``python -m venv`` and
   ``pip install rhapso==0.4.5``; planning and XML parsing are not timed).
4. Peak resident memory of a worker process fusing a 1x and an 8x larger dataset (2x
   tiles per axis) from zarr on disk into zarr on disk with the same block size: the
   worker's ``VmHWM`` (``resource.getrusage`` maxrss survives ``execve`` on Linux, so in
   a child it would report the parent's peak).

Usage::

    python bench/bench_fusion.py            # short run (about a minute on 2 cores)
    python bench/bench_fusion.py --rhapso   # add the Rhapso 0.4.5 column
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhapso_core import transforms as tf  # noqa: E402
from rhapso_core.fusion import (  # noqa: E402
    FusionParams,
    FusionView,
    fuse_block,
    fuse_to_zarr,
    make_output_grid,
    output_to_view,
    plan_blocks,
)
from rhapso_core.multiscale import mean_downsample  # noqa: E402

RHAPSO_PY = ROOT / "bench" / "_venvs" / "rhapso045" / "bin" / "python"


# --------------------------------------------------------------------------- dataset
def make_dataset(root: Path, grid_xyz, tile_xyz, overlap=0.15, seed=0) -> dict:
    """Write uint16 tiles (smooth texture) as 5D zarr arrays ``<root>/tile_k/0`` and a
    level 1; returns the poses. Memory: one tile at a time."""
    rng = np.random.default_rng(seed)
    step = [int(t * (1 - overlap)) for t in tile_xyz]
    centre = (np.asarray(tile_xyz) - 1) / 2
    tiles = []
    for k in range(grid_xyz[2]):
        for j in range(grid_xyz[1]):
            for i in range(grid_xyz[0]):
                ang = np.deg2rad(rng.uniform(-1, 1))
                rot = np.eye(4)
                rot[:2, :2] = [[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]
                pose = (tf.translation([i * step[0], j * step[1], k * step[2]] + rng.uniform(-2, 2, 3))
                        @ tf.translation(centre) @ rot @ tf.translation(-centre))
                coarse = rng.random(tuple(max(2, n // 8) for n in tile_xyz[::-1]))
                img = ndimage.zoom(coarse, [n / c for n, c in zip(tile_xyz[::-1], coarse.shape)], order=1)
                img = (img * 3000 + 200).astype(np.uint16)
                name = f"tile_{len(tiles)}"
                g = zarr.open_group(str(root / name), mode="w")
                for lv, data in enumerate([img, mean_downsample(img, (2, 2, 2))]):
                    a = g.create_array(str(lv), shape=(1, 1) + data.shape, chunks=(1, 1, 64, 64, 64),
                                       dtype="uint16")
                    a[0, 0] = data
                tiles.append({"path": str(root / name), "pose": pose.tolist(), "size_xyz": list(tile_xyz)})
    meta = {"tiles": tiles}
    (root / "dataset.json").write_text(json.dumps(meta))
    return meta


class ZarrTileSource:
    """ImageSource over ``<tile>/<level>`` 5D (t, c, z, y, x) zarr arrays."""

    def __init__(self, path: str):
        g = zarr.open_group(path, mode="r")
        self.levels = [g[str(i)] for i in range(len(list(g.array_keys())))]

    dtype = property(lambda self: np.dtype(self.levels[0].dtype))
    n_levels = property(lambda self: len(self.levels))

    def level_shape(self, level):
        return tuple(self.levels[level].shape[2:])

    def level_factors(self, level):
        return (2**level,) * 3

    def read(self, box, level=0):
        return self.levels[level][(0, 0) + tuple(slice(a, b) for a, b in box)]


def load_views(root: Path) -> list[FusionView]:
    meta = json.loads((root / "dataset.json").read_text())
    return [FusionView(ZarrTileSource(t["path"]), np.array(t["pose"]), tuple(t["size_xyz"]), k)
            for k, t in enumerate(meta["tiles"])]


# --------------------------------------------------------------------------- contenders
def run_ours(views, grid, blocks, params):
    fuse_block(blocks[0], grid, views, params)  # numba warm-up (cached compile)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in blocks:
        fuse_block(b, grid, views, params)
    return time.perf_counter() - t0, time.process_time() - c0


def _cos_weight(v, n, rng):
    d = np.minimum(v, n - 1 - v)
    rel = np.clip(d / rng, 0, 1)
    return np.where(d <= 0, 0.0, (np.cos((1 - rel) * np.pi) + 1) / 2).astype(np.float32)


def run_scipy(views, grid, blocks, params):
    rng = params.blending_range[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for b in blocks:
        shape = tuple(e - a for a, e in b)
        num = np.zeros(shape, np.float32)
        den = np.zeros(shape, np.float32)
        zz, yy, xx = np.meshgrid(*[np.arange(a, e, dtype=np.float64) for a, e in b], indexing="ij")
        for v in views:
            m = output_to_view(grid, v)
            p = [m[r, 0] * xx + m[r, 1] * yy + m[r, 2] * zz + m[r, 3] for r in range(3)]
            n = np.asarray(v.size_xyz, np.float64)
            inside = (p[0] >= 0) & (p[0] <= n[0] - 1) & (p[1] >= 0) & (p[1] <= n[1] - 1) & (p[2] >= 0) & (p[2] <= n[2] - 1)
            if not inside.any():
                continue
            lo = [max(int(np.floor(q[inside].min())) - 1, 0) for q in p]
            hi = [min(int(np.ceil(q[inside].max())) + 2, int(s)) for q, s in zip(p, n)]
            src = v.source.read(((lo[2], hi[2]), (lo[1], hi[1]), (lo[0], hi[0])), 0).astype(np.float32)
            val = ndimage.map_coordinates(src, [p[2] - lo[2], p[1] - lo[1], p[0] - lo[0]], order=1,
                                          mode="nearest", prefilter=False, output=np.float32)
            w = _cos_weight(p[0], n[0], rng) * _cos_weight(p[1], n[1], rng) * _cos_weight(p[2], n[2], rng)
            w = np.where(inside, np.maximum(w, 1e-12), 0).astype(np.float32)
            num += w * val
            den += w
        np.divide(num, den, out=num, where=den > 0)
        np.clip(np.rint(num), 0, 65535).astype(np.uint16)
    return time.perf_counter() - t0, time.process_time() - c0


RHAPSO_DRIVER = r"""
import json, sys, time
import numpy as np
from Rhapso.affine_fusion.fuse_cell import FuseCell
cfg = json.loads(open(sys.argv[1]).read())
per_view = {k: {"path": t["path"]} for k, t in enumerate(cfg["tiles"])}
images = {}
for k, t in enumerate(cfg["tiles"]):
    n = np.asarray(t["size_xyz"], float) - 1
    r = cfg["blend"]
    images[k] = {"inv_t": np.asarray(t["out_to_view"]), "b0": [0, 0, 0], "b1": [r, r, r],
                 "b2": (n - r).tolist(), "b3": n.tolist()}
fc = FuseCell(images, {k: None for k in images}, per_view, None, None, None, None, "avg_blend")
blocks = cfg["blocks"]
def fuse(b):
    # Rhapso's block_min / block_max are inclusive output voxel indices (x, y, z).
    (z0, z1), (y0, y1), (x0, x1) = b
    fb = {k: None for k in cfg["block_views"][str(tuple(map(tuple, b)))]}
    out = fc.render_fused_block(images, fb, [x0, y0, z0], [x1 - 1, y1 - 1, z1 - 1])
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
fuse(blocks[0])
t0, c0 = time.perf_counter(), time.process_time()
for b in blocks:
    fuse(b)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""


def run_rhapso(root: Path, views, grid, blocks, params):
    if not RHAPSO_PY.exists():
        return None, f"not found: {RHAPSO_PY} (python -m venv it; pip install rhapso==0.4.5)"
    meta = json.loads((root / "dataset.json").read_text())
    from rhapso_core.fusion import source_box

    for t, v in zip(meta["tiles"], views):
        t["out_to_view"] = output_to_view(grid, v).tolist()
    # Rhapso's planner hands each block only the views that overlap it; do the same.
    meta["block_views"] = {
        str(tuple(map(tuple, b))): [k for k, v in enumerate(views) if source_box(b, grid, v, 0) is not None]
        for b in blocks
    }
    meta["blocks"] = [list(map(list, b)) for b in blocks]
    meta["blend"] = params.blending_range[0]
    cfg = root / "rhapso_cfg.json"
    cfg.write_text(json.dumps(meta))
    drv = root / "rhapso_driver.py"
    drv.write_text(RHAPSO_DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    res = subprocess.run([str(RHAPSO_PY), str(drv), str(cfg)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return None, res.stderr.strip().splitlines()[-1] if res.stderr else "failed"
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return (r["wall"], r["cpu"]), ""


# --------------------------------------------------------------------------- memory worker
def worker(root: Path, out: Path, block: int) -> None:
    views = load_views(root)
    params = FusionParams(block_size=(block,) * 3)
    grid = make_output_grid(views)
    arr = zarr.create_array(str(out), shape=grid.shape_zyx, chunks=(block,) * 3, dtype="uint16")
    t0 = time.perf_counter()
    fuse_to_zarr(views, grid, params, arr)
    wall = time.perf_counter() - t0
    print(json.dumps({"voxels": int(np.prod(grid.shape_zyx)), "wall": wall, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB).

    Linux keeps ``getrusage(...).ru_maxrss`` across ``execve``, so a worker started by a
    big parent would report the parent's peak; ``VmHWM`` belongs to the new address space.
    ``ru_maxrss`` is the fallback where ``/proc`` is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_run(root: Path, block: int) -> dict:
    out = root.parent / (root.name + "_fused.zarr")
    res = subprocess.run([sys.executable, __file__, "--worker", str(root), str(out), str(block)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def baseline_rss() -> float:
    code = ("import sys; sys.path.insert(0, 'bench'); import bench_fusion; "
            "print(bench_fusion.peak_rss_mb())")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, cwd=ROOT).stdout.strip().splitlines()[-1])


def dataset_mb(meta_root: Path) -> float:
    meta = json.loads((meta_root / "dataset.json").read_text())
    return sum(np.prod(t["size_xyz"]) * 2 for t in meta["tiles"]) / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, nargs=3, default=(192, 192, 96), metavar=("X", "Y", "Z"))
    ap.add_argument("--block", type=int, default=128, help="block size for the throughput runs")
    ap.add_argument("--mem-block", type=int, default=64, help="block size for the memory runs")
    ap.add_argument("--rhapso", action="store_true", help="also time Rhapso 0.4.5's FuseCell")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(Path(a.worker[0]), Path(a.worker[1]), int(a.worker[2]))
        return
    with tempfile.TemporaryDirectory(prefix="bench_fusion_") as tmp:
        tmp = Path(tmp)
        d1 = tmp / "ds1"
        make_dataset(d1, (2, 2, 1), tuple(a.tile))
        views = load_views(d1)
        params = FusionParams(block_size=(a.block,) * 3)
        grid = make_output_grid(views)
        blocks = plan_blocks(grid.shape_zyx, (a.block,) * 3, (a.block,) * 3)
        nvox = int(np.prod(grid.shape_zyx))
        print(f"dataset: 2x2x1 tiles of {tuple(a.tile)} (x, y, z) uint16, output {grid.shape_zyx} "
              f"(z, y, x) = {nvox / 1e6:.1f} Mvoxels, {len(blocks)} blocks of {a.block}^3, avg_blend")
        rows = [("ours (numba kernel)", run_ours(views, grid, blocks, params))]
        rows.append(("scipy map_coordinates", run_scipy(views, grid, blocks, params)))
        if a.rhapso:
            r, why = run_rhapso(d1, views, grid, blocks, params)
            if r is None:
                print(f"rhapso 0.4.5: skipped ({why})")
            else:
                rows.append(("rhapso 0.4.5 FuseCell", r))
        print(f"{'contender':<24}{'wall s':>9}{'cpu s':>9}{'Mvox/s/core':>13}{'ours x':>9}")
        ours_rate = nvox / rows[0][1][1]
        for name, (wall, cpu) in rows:
            rate = nvox / cpu
            print(f"{name:<24}{wall:>9.2f}{cpu:>9.2f}{rate / 1e6:>13.2f}{ours_rate / rate:>9.2f}")

        d8 = tmp / "ds8"
        make_dataset(d8, (4, 4, 2), tuple(a.tile), seed=1)
        base = baseline_rss()
        print(f"\nmemory: worker fusing all blocks of {a.mem_block}^3 into a zarr on disk "
              f"(interpreter + imports alone: {base:.0f} MB)")
        print(f"{'dataset':<10}{'input MB':>10}{'output Mvox':>13}{'wall s':>9}{'peak RSS MB':>13}")
        for name, root in (("1x", d1), ("8x", d8)):
            m = memory_run(root, a.mem_block)
            print(f"{name:<10}{dataset_mb(root):>10.0f}{m['voxels'] / 1e6:>13.1f}{m['wall']:>9.2f}"
                  f"{m['peak_rss_mb']:>13.0f}")


if __name__ == "__main__":
    main()
