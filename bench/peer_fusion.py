"""Rhapso 0.4.5 and multiview-stitcher fusing the fusion-core benchmark's dataset onto our grid (issue 21).

Used by ``bench/bench_fusion_core.py --peers``. Each peer runs in a fresh process of its own
virtual environment (``bench/_venvs/rhapso045`` from :mod:`rhapso_env`,
``bench/_venvs/mvstitcher`` as :mod:`bench_phase` makes it), on the same zarr tiles, the
same poses and the same output grid as ours, writing the same output chunks (128^3 by
default) with the same Blosc codec as ours (``FusionParams.compressor`` / ``clevel``,
bitshuffle), one thread (BLAS, OpenMP, Blosc and zarr's codec threads limited to 1; Dask's
synchronous scheduler; Rhapso's serial loop, no Ray):

* **Rhapso 0.4.5**: ``bench/rhapso_driver.py fuse`` (its ``affine_fusion`` classes in its
  pipeline's order: bounding box from the XML, grid of ``block_size`` cells, per cell the
  overlapping views, ``FuseCell`` = ``scipy.ndimage.map_coordinates`` order 1 per view,
  ``avg_blend`` with *linear* ramps of 40 view voxels (product over axes), float32
  accumulation, rounded to uint16, written through zarr). Input: an XML written here (one
  ``ViewTransform`` per view: its pose), tiles read in place (Rhapso 0.4.5 reads zarr v3).
  Its output grid is fixed by the XML: one world unit per voxel, origin ``floor`` of the
  views' world box, so ours is given that same box (:func:`peer_grid`).
* **multiview-stitcher**: ``bench/mvs_fuse_driver.py`` (``fusion.fuse`` with its default
  ``weighted_average_fusion``: cosine blending weights from a distance transform of each
  view's box, ``blending_widths`` set to our blending range; linear interpolation; values
  truncated, not rounded, to uint16), given our grid as ``output_stack_properties`` and the
  tiles as Dask arrays over their zarr arrays (why not as ``zarr.Array``: see that driver).

:func:`agreement` checks that each output is the same image as ours: NCC, mean / max absolute
difference and mean difference over the voxels both cover, how many of ours it covers, and
the differences inside single views, where blending weights cannot matter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_stitch_peers import _last_json, _tail, measured  # noqa: E402  (one subprocess harness for both)
from rhapso_core.fusion import FusionParams, make_output_grid, output_to_view  # noqa: E402
from rhapso_core.fusion.geometry import OutputGrid  # noqa: E402

# One thread per peer process: their figures are per core like ours.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BLOSC_NTHREADS": "1",
              "NUMBA_NUM_THREADS": "1", "ZARR_THREADING__MAX_WORKERS": "1"}
PEERS = ("rhapso", "mvs")
NAMES = {"rhapso": "Rhapso", "mvs": "multiview-stitcher"}
MODES = {"rhapso": "avg_blend, linear ramps 40 vox, map_coordinates order 1",
         "mvs": "weighted_average_fusion, cosine widths 40, order 1"}
_SWAP = np.eye(4)[[2, 1, 0, 3]]  # (x, y, z, 1) <-> (z, y, x, 1)


@dataclass
class PeerRun:
    """One peer's fusion: seconds of the fusion call in its process (imports excluded), the
    whole process from outside (``os.wait4``: it and its children), and where its output is."""

    tool: str
    version: str = "?"
    wall_s: float = float("nan")
    cpu_s: float = float("nan")
    process_wall_s: float = float("nan")
    process_cpu_s: float = float("nan")
    peak_rss_mb: float = float("nan")
    shape_zyx: tuple[int, ...] = ()
    output: str = ""
    error: str = ""


@dataclass
class Agreement:
    """A peer's fused image against ours over the voxels both cover (value > 0: every tile
    voxel is >= 200, so 0 means no view); ``single_*``: the same over the voxels inside exactly
    one view, where blending weights cannot matter (the sampling alone is compared)."""

    ncc: float
    mean_abs: float
    max_abs: float
    mean_diff: float  # theirs - ours
    both: int  # voxels covered by both
    ours_only: int  # covered by ours, 0 in theirs
    theirs_only: int
    single_mean_abs: float = float("nan")
    single_max_abs: float = float("nan")
    single: int = 0


class _Sums:
    """Running sums for NCC and absolute differences."""

    def __init__(self):
        self.n = self.a = self.b = self.aa = self.bb = self.ab = self.abs = self.d = self.max = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if not a.size:
            return
        d = b - a
        self.n += a.size
        self.a, self.b = self.a + a.sum(), self.b + b.sum()
        self.aa, self.bb, self.ab = self.aa + a @ a, self.bb + b @ b, self.ab + a @ b
        self.abs, self.d = self.abs + np.abs(d).sum(), self.d + d.sum()
        self.max = max(self.max, float(np.abs(d).max()))

    def ncc(self) -> float:
        n = self.n
        cov = self.ab / n - (self.a / n) * (self.b / n)
        va, vb = self.aa / n - (self.a / n) ** 2, self.bb / n - (self.b / n) ** 2
        return float(cov / np.sqrt(va * vb)) if va > 0 and vb > 0 else float("nan")


def peer_grid(views) -> OutputGrid:
    """The output grid Rhapso 0.4.5 derives from an XML: one world unit per voxel, from
    ``floor`` of the union of the views' world boxes (voxel centres) to its ``ceil``."""
    boxes = [v.world_box() for v in views]
    lo = np.floor(np.min([b[0] for b in boxes], axis=0))
    hi = np.ceil(np.max([b[1] for b in boxes], axis=0))
    return make_output_grid(views, voxel_size_xyz=(1.0, 1.0, 1.0), bounding_box=(lo, hi))


def views_covering(views, grid: OutputGrid):
    """``count(z0, z1)``: how many views hold each output voxel of planes ``z0:z1`` (a voxel
    maps inside ``[0, size - 1]`` of the view, level 0)."""
    mats = [output_to_view(grid, v) for v in views]
    sizes = [np.asarray(v.size_xyz, np.float64) - 1 for v in views]
    _, ny, nx = grid.shape_zyx

    def count(z0: int, z1: int) -> np.ndarray:
        z, y, x = np.meshgrid(np.arange(z0, z1, dtype=np.float64), np.arange(ny, dtype=np.float64),
                              np.arange(nx, dtype=np.float64), indexing="ij")
        n = np.zeros(z.shape, np.uint8)
        for m, hi in zip(mats, sizes):
            inside = np.ones(z.shape, bool)
            for r in range(3):
                p = m[r, 0] * x + m[r, 1] * y + m[r, 2] * z + m[r, 3]
                inside &= (p >= 0) & (p <= hi[r])
            n += inside
        return n

    return count


def agreement(ours, theirs, count=None, slab: int = 8) -> Agreement:
    """Compare two fused uint (z, y, x) images of one grid, ``slab`` z-planes at a time
    (memory: a few slabs of float64). ``count``: :func:`views_covering` of the grid, for the
    single-view figures."""
    if tuple(ours.shape) != tuple(theirs.shape):
        raise ValueError(f"fused shapes differ: ours {tuple(ours.shape)}, theirs {tuple(theirs.shape)}")
    all_, one = _Sums(), _Sums()
    ours_only = theirs_only = 0
    for z in range(0, ours.shape[0], slab):
        a = np.asarray(ours[z:z + slab], dtype=np.float64)
        b = np.asarray(theirs[z:z + slab], dtype=np.float64)
        ca, cb = a > 0, b > 0
        both = ca & cb
        ours_only += int(np.count_nonzero(ca & ~cb))
        theirs_only += int(np.count_nonzero(cb & ~ca))
        all_.add(a[both], b[both])
        if count is not None:
            sel = both & (count(z, z + a.shape[0]) == 1)
            one.add(a[sel], b[sel])
    if all_.n == 0:
        return Agreement(float("nan"), float("nan"), float("nan"), float("nan"), 0, ours_only, theirs_only)
    return Agreement(all_.ncc(), all_.abs / all_.n, all_.max, all_.d / all_.n, int(all_.n), ours_only, theirs_only,
                     one.abs / one.n if one.n else float("nan"), one.max if one.n else float("nan"), int(one.n))


# --------------------------------------------------------------------------- running a peer
def _run(cmd: list[str], log: Path) -> dict:
    return measured(cmd, log, env=ONE_THREAD)


def _version(py: Path, pkg: str) -> str:
    r = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def write_rhapso_xml(views, tile_paths: dict[int, str], path: Path) -> Path:
    """A BigStitcher XML of the views (one ``ViewTransform`` each: its pose, voxel -> world),
    the ``bdv.multimg.zarr`` loader pointing at the tiles where they are."""
    from rhapso_core.spimdata import ViewSetup, ZarrImageLoader, make_spimdata, save_xml

    roots = {str(Path(p).parent) for p in tile_paths.values()}
    if len(roots) != 1:
        raise ValueError(f"tiles must share one folder, got {sorted(roots)}")
    setups = [ViewSetup(id=int(v.view_id), name=Path(tile_paths[v.view_id]).name, size=tuple(int(n) for n in v.size_xyz),
                        voxel_size=(1.0, 1.0, 1.0), voxel_unit="micrometer") for v in views]
    regs = {(0, int(v.view_id)): [("fusion benchmark pose", np.asarray(v.view_to_world, np.float64))] for v in views}
    loader = ZarrImageLoader.from_paths(roots.pop(), {(0, int(v.view_id)): Path(tile_paths[v.view_id]).name
                                                      for v in views})
    save_xml(make_spimdata(setups=setups, registrations=regs, image_loader=loader), str(path))
    return path


def run_rhapso(tile_paths: dict[int, str], views, grid: OutputGrid, params: FusionParams, work: Path) -> PeerRun:
    from rhapso_env import rhapso_python

    run = PeerRun("rhapso")
    py = rhapso_python()
    if py is None:
        run.error = "bench/_venvs/rhapso045 could not be made"
        return run
    run.version = _version(py, "rhapso")
    w = work / "rhapso"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    xml = write_rhapso_xml(views, tile_paths, w / "dataset.xml")
    out = w / "fused.zarr"
    cfg = {"xml": str(xml), "image_prefix": str(Path(next(iter(tile_paths.values()))).parent), "out": str(out),
           "params": {"block_size": list(params.block_size), "output_block_size": list(params.chunks),
                      "overlap_strategy": "avg_blend", "compressor": params.compressor, "clevel": params.clevel,
                      "shuffle": "bitshuffle"}}
    (w / "fuse.json").write_text(json.dumps(cfg))
    log = w / "fuse.log"
    r = _run([str(py), str(BENCH / "rhapso_driver.py"), "fuse", str(w / "fuse.json")], log)
    res = _last_json(log)
    if r["rc"] != 0 or "wall_s" not in res:
        run.error = f"exit {r['rc']}: {_tail(log)}"
        return run
    run.wall_s, run.cpu_s, run.peak_rss_mb = res["wall_s"], res["cpu_s"], res["peak_rss_mb"]
    run.process_wall_s, run.process_cpu_s = r["wall_s"], r["cpu_s"]
    run.output = str(out / "0")
    run.shape_zyx = tuple(zarr.open_array(run.output, mode="r").shape[2:])
    return run


def run_mvs(tile_paths: dict[int, str], views, grid: OutputGrid, params: FusionParams, work: Path) -> PeerRun:
    from bench_phase import _mvs_python

    run = PeerRun("mvs")
    try:
        py = _mvs_python()
    except subprocess.CalledProcessError as exc:
        py, run.error = None, f"bench/_venvs/mvstitcher could not be made: {exc}"
    if py is None:
        run.error = run.error or "bench/_venvs/mvstitcher could not be made"
        return run
    run.version = _version(py, "multiview-stitcher")
    w = work / "mvs"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    out = w / "fused.zarr"
    vox = np.asarray(grid.voxel_size_xyz, np.float64)
    job = {"tiles": [{"zarr": str(Path(tile_paths[v.view_id]) / "0"),
                      "affine_zyx": (_SWAP @ np.asarray(v.view_to_world, np.float64) @ _SWAP).tolist()} for v in views],
           "grid": {"origin_zyx": list(map(float, np.asarray(grid.origin_xyz)[::-1])),
                    "spacing_zyx": list(map(float, vox[::-1])), "shape_zyx": list(map(int, grid.shape_zyx))},
           "chunks_zyx": list(params.chunks[::-1]),
           # Our blending range is in view voxels; the views' voxels are one world unit here.
           "blending_widths_zyx": list(map(float, params.blending_range[::-1])),
           "codec": {"cname": params.compressor, "clevel": params.clevel, "shuffle": "bitshuffle"},
           "out": str(out)}
    (w / "job.json").write_text(json.dumps(job))
    log, res_path = w / "fuse.log", w / "result.json"
    r = _run([str(py), str(BENCH / "mvs_fuse_driver.py"), str(w / "job.json"), str(res_path)], log)
    if r["rc"] != 0 or not res_path.exists():
        run.error = f"exit {r['rc']}: {_tail(log)}"
        return run
    res = json.loads(res_path.read_text())
    run.wall_s, run.cpu_s, run.peak_rss_mb = res["wall_s"], res["cpu_s"], res["peak_rss_mb"]
    run.process_wall_s, run.process_cpu_s = r["wall_s"], r["cpu_s"]
    run.output = str(out)
    run.shape_zyx = tuple(zarr.open_array(run.output, mode="r").shape[2:])
    return run


RUNNERS = {"rhapso": run_rhapso, "mvs": run_mvs}


def fused_zyx(run: PeerRun):
    """The peer's level-0 image as a lazy (z, y, x) view of its 5-D zarr array."""
    arr = zarr.open_array(run.output, mode="r")
    return _Plane(arr)


class _Plane:
    """``arr[0, 0, ...]`` sliced lazily (agreement reads it a slab at a time)."""

    def __init__(self, arr):
        self.arr = arr
        self.shape = tuple(arr.shape[2:])

    def __getitem__(self, key):
        return self.arr[(0, 0) + (key if isinstance(key, tuple) else (key,))]


def parse_tools(text: str) -> tuple[str, ...]:
    """``--peers`` value: comma-separated names among :data:`PEERS`."""
    tools = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tools if t not in PEERS]
    if bad or not tools:
        raise ValueError(f"--peers: unknown tool(s) {bad or text!r}; choose among {', '.join(PEERS)}")
    return tools


def compare(tools, ds_root: Path, views, grid: OutputGrid, params: FusionParams, ours, ours_cpu_s: float,
            ours_wall_s: float, scipy_rate: float, work: Path) -> dict:
    """Run each peer once on the dataset at ``ds_root`` and print the table: their fusion's
    seconds and rate per core beside ours (``ours``: our fused (z, y, x) array on ``grid``;
    ``ours_cpu_s`` / ``ours_wall_s``: our whole fusion, encode and write included, as theirs)
    and scipy's, then how closely each output matches ours."""
    meta = json.loads((ds_root / "dataset.json").read_text())
    tile_paths = {k: t["path"] for k, t in enumerate(meta["tiles"])}
    nvox = int(np.prod(grid.shape_zyx))
    ours_rate = nvox / ours_cpu_s
    rows, out = [], {}
    count = views_covering(views, grid)
    for tool in tools:
        r = RUNNERS[tool](tile_paths, views, grid, params, work)
        ag = None
        if not r.error:
            if tuple(r.shape_zyx) != tuple(grid.shape_zyx):
                r.error = f"fused shape {r.shape_zyx} is not the grid's {tuple(grid.shape_zyx)}"
            else:
                ag = agreement(ours, fused_zyx(r), count)
        rows.append((r, ag))
        out[tool] = {"run": r.__dict__, "agreement": ag.__dict__ if ag else None}
    print(f"\npeers: the same tiles, poses, grid {tuple(grid.shape_zyx)} (z, y, x) = {nvox / 1e6:.1f} Mvox, "
          f"{tuple(params.chunks)} chunks, blosc {params.compressor} {params.clevel} bitshuffle; each a fresh "
          f"process of its own venv, one thread; seconds of the fusion call (planning, read, sample, blend, "
          f"write; imports excluded), Mvox/s per core = output voxels / CPU s")
    print(f"{'tool':<28}{'mode':<56}{'wall s':>8}{'cpu s':>8}{'Mvox/s/core':>13}{'ours x':>8}{'process cpu s':>15}"
          f"{'peak MB':>9}")
    print(f"{'ours':<28}{'avg_blend, cosine ramps 40 vox, numba row kernel':<56}{ours_wall_s:>8.2f}"
          f"{ours_cpu_s:>8.2f}{ours_rate / 1e6:>13.1f}{1.0:>8.2f}")
    for r, _ in rows:
        name = f"{NAMES[r.tool]} {r.version}"
        if r.error:
            print(f"{name:<28}skipped: {r.error}")
            continue
        rate = nvox / r.cpu_s
        print(f"{name:<28}{MODES[r.tool]:<56}{r.wall_s:>8.2f}{r.cpu_s:>8.2f}{rate / 1e6:>13.1f}"
              f"{ours_rate / rate:>8.1f}{r.process_cpu_s:>15.1f}{r.peak_rss_mb:>9.0f}")
    print(f"{'scipy affine_transform':<28}{'order 1, one view, no blending, every voxel inside':<56}{'':>8}{'':>8}"
          f"{scipy_rate / 1e6:>13.1f}{ours_rate / scipy_rate:>8.2f}")
    print("same image as ours? over the voxels both cover (tile values 200..3200); inside one view only, "
          "blending cannot matter:")
    for r, ag in rows:
        if ag is None:
            continue
        print(f"  {NAMES[r.tool]:<26} NCC {ag.ncc:.5f}, mean |d| {ag.mean_abs:.2f}, max |d| {ag.max_abs:.0f}, "
              f"mean d (theirs - ours) {ag.mean_diff:+.2f}; voxels both {ag.both / 1e6:.2f} M, "
              f"ours only {ag.ours_only}, theirs only {ag.theirs_only}; inside one view only "
              f"({ag.single / 1e6:.2f} M): mean |d| {ag.single_mean_abs:.2f}, max |d| {ag.single_max_abs:.0f}")
    out["ours"] = {"cpu_s": ours_cpu_s, "wall_s": ours_wall_s, "rate": ours_rate}
    return out


def check_strategy(strategy: str) -> None:
    """The peers are compared on avg_blend only (the one mode all three have)."""
    if strategy != "avg_blend":
        raise SystemExit(f"--peers: the peers are compared with --strategy avg_blend only, got {strategy!r}")


__all__ = ["Agreement", "PeerRun", "PEERS", "NAMES", "MODES", "RUNNERS", "agreement", "check_strategy", "compare",
           "fused_zyx", "parse_tools", "peer_grid", "views_covering", "write_rhapso_xml"]
