"""End-to-end benchmark: this project against the published Rhapso 0.4.5, stage by stage, on the same data.

One command::

    python bench/run_benchmarks.py                          # --sizes small
    python bench/run_benchmarks.py --sizes small,medium,large,real --flow medium

Datasets (generated once under ``--work``, reused; uint16 tiles, seeded, with ground truth):

========  ==============================  =========================================
size      tiles (x y z) x grid            data
========  ==============================  =========================================
small     384 x 384 x 64, 3 x 2 x 1       113 MB  (about 0.1 GB)
medium    512 x 512 x 80, 4 x 3 x 2       1.0 GB
large     768 x 768 x 112, 4 x 4 x 2      4.2 GB
real      320 x 256 x 26, 2 x 2 x 1       cut from ../shared/fixtures/real/cellfinder_crop_planes (ch0)
========  ==============================  =========================================

For each dataset and each stage (detection; matching and solve of the rigid round,
then of the affine round; fusion; multiscale pyramid) the stage runs in its own
process, so its peak memory is that process's ``VmHWM``:

* **ours**: the stage functions of ``rhapso_core.pipeline`` called in-process, one
  after another (no Prefect, no Ray), exactly the units of work the flows submit;
* **rhapso 0.4.5**: its public component classes in the order its Ray pipelines
  call them, as serial loops (``bench/rhapso_driver.py``), on a copy of the data in
  the layout it reads (``bench/rhapso_driver_layout.py``: 5-D arrays, ``_ch_`` names).

Both get the same parameters (printed below the table) and one thread each
(``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1``; ``--threads`` changes it), so times are
per core. Wall and CPU time exclude interpreter start and imports. Throughput is
input voxels / s for detection, output voxels / s for fusion and multiscale, pairs / s
for matching, matches / s for the solver. The alignment error is
``rhapso_core.synthetic.scoring.score`` of the final (affine) XML against the ground
truth (affine gauge removed), in voxels of the finest axis.

Detection uses ``dsxy = dsz = 2``: Rhapso 0.4.5 mislocates its points when the two
factors differ on an OME-Zarr input (see ``bench/rhapso_driver_layout.py``).

Rhapso's RANSAC is a Python loop (about 160 s per pair at 10,000 iterations). It
runs ``--rhapso-iterations`` iterations (default 200) and its matching time is
**scaled** to the full count (RANSAC time x 10,000 / iterations run, plus the rest as
measured); the table marks such figures with ``*``. Its alignment error is that of the
capped run.

``--flow [SIZE]`` also runs the Prefect + Ray ``stitch`` flow on SIZE (default: the first
dataset) with ``runtime.num_cpus`` 1 and 2 and prints the speed-up. ``--no-rhapso`` skips Rhapso.
The measured throughputs of ours go to ``bench/throughputs.json`` (read by
``rhapso_core.planner``).

Before anything is timed, our stages run once, untimed, on a tiny dataset: that compiles
the numba kernels into their on-disk cache, a one-off cost per installation that would
otherwise land on the first dataset's figures. Detection then runs once more per dataset,
outside the pipeline total, with chunks bounded to ``--bounded-chunk-voxels``: its peak
memory shows what a task needs when the chunk, not the tile, sets the size.

All figures are saved after each dataset (``--json``, default ``WORK/results.json``);
``--resume`` reuses them and runs only the stages missing there, and ``--report JSON``
prints a saved run's report without measuring anything.
"""

from __future__ import annotations

import os

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

SHARED = ROOT.parent / "shared"
REAL_PLANES = SHARED / "fixtures" / "real" / "cellfinder_crop_planes" / "ch0"
THROUGHPUTS = BENCH / "throughputs.json"

SIZES: dict[str, dict] = {
    "small": {"grid": (3, 2, 1), "tile_size_xyz": (384, 384, 64)},
    "medium": {"grid": (4, 3, 2), "tile_size_xyz": (512, 512, 80)},
    "large": {"grid": (4, 4, 2), "tile_size_xyz": (768, 768, 112)},
    "real": {"grid": (2, 2, 1), "tile_size_xyz": (320, 256, 26), "voxel_size_xyz": (2.0, 2.0, 5.0),
             "jitter_voxels": (3.0, 3.0, 0.0), "overlap": 0.15},
    # Untimed: run once first so numba's compiled kernels are on disk (cache=True) before any
    # stage is timed; otherwise the first dataset would carry seconds of one-off compilation.
    "warmup": {"grid": (2, 1, 1), "tile_size_xyz": (128, 128, 32)},
}

STAGES = ("detect", "match_rigid", "solve_rigid", "match_affine", "solve_affine", "fuse", "multiscale")
# Detection once more, outside the pipeline total, with every chunk held to this many working
# voxels (default 2 Mi, e.g. 32 x 256 x 256): its peak memory must then be the same for every
# dataset size, whereas the pipeline's run (chunks_per_bound 1, as Rhapso) grows with the tile.
BOUNDED_CHUNK_VOXELS = 2**21
RANSAC_ITERATIONS = 10_000
SEARCH_RADIUS = 100.0  # world units; Rhapso always gates candidates, so ours gets the same radius


# --------------------------------------------------------------------------- datasets
def ensure_dataset(work: Path, name: str):
    """Generate (or reuse) the dataset ``name``; returns its ``DatasetPaths``-like dict."""
    from rhapso_core.synthetic import SyntheticParams, VolumeSpecimen, load_tiff_planes, write_dataset

    root = work / name / "data"
    if (root / "ground_truth.json").exists():
        return {"xml": str(root / "dataset.xml"), "truth": str(root / "ground_truth.json"), "root": str(root)}
    spec = dict(SIZES[name])
    params = SyntheticParams(**spec, n_levels=3, seed=1)
    specimen = None
    if name == "real":
        if not REAL_PLANES.is_dir():
            raise FileNotFoundError(f"{REAL_PLANES}: the real specimen is absent (../shared not mounted)")
        # 30 planes of 510 x 667, voxel 5 x 2 x 2 um (z, y, x); tiles use the same voxel size.
        specimen = VolumeSpecimen.centred_on_grid(load_tiff_planes(REAL_PLANES), (5.0, 2.0, 2.0), params)
    t0 = time.perf_counter()
    paths = write_dataset(root, params, specimen=specimen, overwrite=True)
    print(f"[{name}] generated in {time.perf_counter() - t0:.0f} s: {paths.xml}", file=sys.stderr, flush=True)
    return {"xml": str(paths.xml), "truth": str(paths.ground_truth), "root": str(root)}


def dataset_voxels(xml: str) -> tuple[int, int]:
    """(number of views, total input voxels) from the XML."""
    from rhapso_core.pipeline.dataset import load_dataset

    sd = load_dataset(xml)
    n = 0
    for v in sd.views():
        sx, sy, sz = sd.setup_of(v).size
        n += int(sx) * int(sy) * int(sz)
    return len(sd.views()), n


def intensity_range(xml: str) -> tuple[float, float]:
    """Fixed [min, max] for both tools: 0.05 / 99.95 percentiles of the first view's coarsest level."""
    import numpy as np

    from rhapso_core.pipeline.dataset import load_dataset, open_view

    sd = load_dataset(xml)
    src = open_view(sd, sd.views()[0])
    lvl = src.n_levels - 1
    data = np.asarray(src.read(tuple((0, n) for n in src.level_shape(lvl)), lvl), dtype=np.float64)
    lo, hi = np.percentile(data, [0.05, 99.95])
    return float(np.floor(lo)), float(np.ceil(hi))


# --------------------------------------------------------------------------- parameters
def shared_params(lo: float, hi: float) -> dict:
    """The parameters both tools get (our names; Rhapso's are derived in rhapso_config)."""
    return {
        "detection": {"dsxy": 2, "dsz": 2, "sigma": 1.8, "threshold": 0.008, "min_intensity": lo,
                      "max_intensity": hi, "median_filter": 0, "combine_distance": 0.5, "max_spots": 0,
                      "chunks_per_bound": 1, "overlap_only": False},
        "matching": {"num_neighbors": 3, "redundancy": 1, "significance": 3.0, "num_required_neighbors": 3,
                     "max_epsilon": 5.0, "min_inlier_ratio": 0.1, "model_min_matches": 12,
                     "num_iterations": RANSAC_ITERATIONS, "search_radius": SEARCH_RADIUS, "lambda_value": 0.1},
        "solver": {"relative_threshold": 3.5, "absolute_threshold": 7.0, "min_matches": 3, "damp": 1.0,
                   "max_iterations": 10000, "max_allowed_error": float("inf"), "max_plateauwidth": 200,
                   "lambda_value": 0.1},
        # Rhapso fuses on a grid of one world unit per voxel; ours does the same with isotropic.
        "fusion": {"block_size": (256, 256, 256), "chunks": (128, 128, 128), "overlap_strategy": "avg_blend",
                   "isotropic": True},
        "multiscale": {"n_lvls": 5, "scale_factor": (2, 2, 2), "chunk_size": (128, 128, 128)},
    }


def our_stage_params(stage: str, sp: dict) -> dict:
    from rhapso_core.config import PipelineParams

    kind = "affine" if stage.endswith("affine") else "rigid"
    if stage == "detect":
        return sp["detection"]
    if stage.startswith("match"):
        m = dict(sp["matching"])
        m["model"] = kind
        m["lambda_value"] = m["lambda_value"] if kind == "affine" else 0.0
        return PipelineParams(matching={k: v for k, v in m.items()}).matching.model_dump(mode="json")
    if stage.startswith("solve"):
        s = dict(sp["solver"])
        s["model"] = kind
        s["lambda_value"] = s["lambda_value"] if kind == "affine" else 0.0
        s["method"] = "iterative"  # outlier removal as Rhapso's (relative / absolute thresholds)
        return s
    f = dict(sp["fusion"])
    f["multiscale"] = {"n_lvls": sp["multiscale"]["n_lvls"], "scale_factor": sp["multiscale"]["scale_factor"],
                       "multiscale_chunk_size": sp["multiscale"]["chunk_size"]}
    return f


def rhapso_config(stage: str, sp: dict, rh: dict, work: Path, iterations: int) -> dict:
    """The Rhapso driver's config of one stage (Rhapso's parameter names)."""
    kind = "affine" if stage.endswith("affine") else "rigid"
    store = str(work / "rhapso_store")
    prev = {"detect": rh["xml"], "match_rigid": str(work / "rh_detected.xml"),
            "solve_rigid": str(work / "rh_detected.xml"), "match_affine": str(work / "rh_rigid.xml"),
            "solve_affine": str(work / "rh_rigid.xml"), "fuse": str(work / "rh_affine.xml")}
    if stage == "detect":
        return {"xml": rh["xml"], "image_prefix": rh["image_prefix"], "store": store,
                "out_xml": str(work / "rh_detected.xml"), "params": sp["detection"]}
    if stage.startswith("match"):
        m = sp["matching"]
        return {"xml": prev[stage], "image_prefix": rh["image_prefix"], "store": store,
                "rhapso_iterations": iterations,
                "params": {"match_type": kind, "num_neighbors": m["num_neighbors"], "redundancy": m["redundancy"],
                           "significance": m["significance"], "num_required_neighbors": m["num_required_neighbors"],
                           "inlier_threshold": m["max_epsilon"], "min_inlier_ratio": m["min_inlier_ratio"],
                           "num_iterations": m["num_iterations"], "model_min_inliers": m["model_min_matches"],
                           "regularization_weight": m["lambda_value"] if kind == "affine" else 0.0,
                           "search_radius": m["search_radius"], "ransac_sample_size": 4}}
    if stage.startswith("solve"):
        s = sp["solver"]
        return {"xml": prev[stage], "store": store, "out_xml": str(work / f"rh_{kind}.xml"),
                "params": {"run_type": kind, "relative_threshold": s["relative_threshold"],
                           "absolute_threshold": s["absolute_threshold"], "min_matches": s["min_matches"],
                           "damp": s["damp"], "regularization_weight": s["lambda_value"] if kind == "affine" else 0.0,
                           "max_iterations": s["max_iterations"], "max_allowed_error": s["max_allowed_error"],
                           "max_plateauwidth": s["max_plateauwidth"], "fixed_tile": None}}
    f = sp["fusion"]
    out = str(work / "rh_fused.zarr")
    if stage == "fuse":
        return {"xml": prev["fuse"], "image_prefix": rh["image_prefix"], "out": out,
                "params": {"block_size": list(f["block_size"]), "output_block_size": list(f["chunks"]),
                           "overlap_strategy": f["overlap_strategy"]}}
    ms = sp["multiscale"]
    return {"out": out, "params": {"chunk_size": [1, 1, *ms["chunk_size"]], "voxel_size": [1.0, 1.0, 1.0],
                                   "n_lvls": ms["n_lvls"],
                                   "scale_factor": [list(ms["scale_factor"])] * (ms["n_lvls"] - 1)}}


# --------------------------------------------------------------------------- our stage worker
def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(stage: str, cfg: dict) -> dict:
    """Run one of our stages in this process (stage functions of rhapso_core.pipeline only)."""
    from rhapso_core.detection import DetectionParams
    from rhapso_core.fusion import FusionParams
    from rhapso_core.matching import MatchingParams
    from rhapso_core.pipeline import detect, fuse, match, solve
    from rhapso_core.solver import SolverParams

    xml, store, label = cfg.get("xml"), cfg.get("store"), "beads"
    out: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if stage.startswith("detect"):
        params = DetectionParams(**cfg["params"])
        plans = detect.plan_views(xml, params)
        total = 0
        for plan in plans:
            parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
            total += detect.store_view(store, plan, detect.merge_view(plan, parts))
        detect.write_detected_xml(xml, store, label, cfg["out_xml"])
        out = {"tasks": sum(len(p.tasks) for p in plans), "total_points": total}
    elif stage.startswith("match"):
        params = MatchingParams(**cfg["params"])
        pairs = match.plan_pairs(xml)
        recs = [match.match_pair(xml, store, a, b, label, params) for a, b in pairs]
        out = {"pairs": len(pairs), "pairs_matched": sum(r.ok for r in recs),
               "matches": sum(r.n_inliers for r in recs if r.ok)}
    elif stage.startswith("solve"):
        rep = solve.solve_dataset(xml, store, label, SolverParams(**cfg["params"]), cfg["out_xml"])
        out = {"links": rep.n_links}
    elif stage == "fuse":
        params = FusionParams(**cfg["params"])
        plan = fuse.plan_fusion(xml, cfg["out"], params, overwrite=True)
        blocks = sum(fuse.fuse_unit(xml, plan, i, params) for i in range(len(plan.units)))
        n = 1
        for s in plan.shape_zyx:
            n *= int(s)
        out = {"units": len(plan.units), "blocks": blocks, "output_voxels": n}
    elif stage == "multiscale":
        params = FusionParams(**cfg["params"])
        out = {"levels": len(fuse.build_levels(cfg["out"], params))}
    out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# --------------------------------------------------------------------------- running stages
def _env(threads: int) -> dict:
    env = dict(os.environ)
    for v in _THREAD_VARS:
        env[v] = str(threads)
    return env


def _run(cmd: list[str], cfg: dict, cfg_path: Path, threads: int, timeout: float | None) -> dict:
    cfg_path.write_text(json.dumps(cfg))
    try:
        r = subprocess.run(cmd + [str(cfg_path)], capture_output=True, text=True, env=_env(threads),
                           timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        return {"error": tail[:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _done(r: dict | None) -> bool:
    return bool(r) and "wall_s" in r


def run_ours(name: str, ds: dict, sp: dict, work: Path, args, quiet: bool = False, prior: dict | None = None) -> dict:
    """Our stages in order; with ``prior`` (an earlier run's figures) only the missing ones run."""
    import shutil

    w = work / "ours"
    w.mkdir(parents=True, exist_ok=True)
    store = str(w / "interestpoints.zarr")
    inputs = {"detect": ds["xml"], "match_rigid": ds["xml"], "solve_rigid": ds["xml"],
              "match_affine": str(w / "rigid.xml"), "solve_affine": str(w / "rigid.xml"),
              "fuse": str(w / "affine.xml")}
    prior = prior or {}
    res = {}
    for stage in STAGES:
        if _done(prior.get(stage)):
            res[stage] = prior[stage]
            continue
        if stage == "detect" and Path(store).exists():
            shutil.rmtree(store)
        cfg = {"xml": inputs.get(stage), "store": store, "params": our_stage_params(stage, sp),
               "out_xml": str(w / ("detected.xml" if stage == "detect" else f"{stage.split('_')[-1]}.xml")),
               "out": str(w / "fused.ome.zarr")}
        res[stage] = _run([sys.executable, __file__, "--worker", stage], cfg, w / f"{stage}.json", args.threads,
                          args.timeout)
        if not quiet or "error" in res[stage]:
            print(f"[{name}] ours {stage}: {_brief(res[stage])}", file=sys.stderr, flush=True)
        if "error" in res[stage]:
            break
    if not quiet and "error" not in res.get(STAGES[-1], {"error": 1}):
        if _done(prior.get("detect_bounded")):
            res["detect_bounded"] = prior["detect_bounded"]
        else:
            bounded = w / "interestpoints_bounded.zarr"
            if bounded.exists():
                shutil.rmtree(bounded)
            cfg = {"xml": ds["xml"], "store": str(bounded), "out_xml": str(w / "detected_bounded.xml"),
                   "params": {**our_stage_params("detect", sp), "max_chunk_voxels": args.bounded_chunk_voxels}}
            res["detect_bounded"] = _run([sys.executable, __file__, "--worker", "detect_bounded"], cfg,
                                         w / "detect_bounded.json", args.threads, args.timeout)
            res["detect_bounded"]["max_chunk_voxels"] = args.bounded_chunk_voxels
            print(f"[{name}] ours detection, chunks <= {args.bounded_chunk_voxels} working voxels: "
                  f"{_brief(res['detect_bounded'])}", file=sys.stderr, flush=True)
    final = w / "affine.xml"
    res["score"] = _score(ds["truth"], final)
    res["score_rigid"] = _score(ds["truth"], w / "rigid.xml", gauge="rigid")
    return res


def run_rhapso(name: str, ds: dict, sp: dict, work: Path, args, prior: dict | None = None) -> dict:
    """Rhapso's stages in order; with ``prior`` only the missing ones run."""
    import shutil

    prior = prior or {}
    if all(_done(prior.get(s)) for s in STAGES):
        return prior
    from rhapso_driver_layout import rhapso_copy
    from rhapso_env import rhapso_python

    py = rhapso_python()
    if py is None:
        return {"error": "rhapso 0.4.5 venv unavailable"}
    w = work / "rhapso"
    w.mkdir(parents=True, exist_ok=True)
    rh = rhapso_copy(ds["xml"], work / "rhapso_layout")
    res = {}
    for stage in STAGES:
        if _done(prior.get(stage)):
            res[stage] = prior[stage]
            continue
        # A stage that runs again starts from nothing of its own.
        for p, first in (("rhapso_store", "detect"), ("rh_fused.zarr", "fuse")):
            if stage == first and (w / p).exists():
                shutil.rmtree(w / p)
        drv = "multiscale" if stage == "multiscale" else stage.split("_")[0]
        cfg = rhapso_config(stage, sp, rh, w, args.rhapso_iterations)
        res[stage] = _run([str(py), str(BENCH / "rhapso_driver.py"), drv], cfg, w / f"{stage}.json", args.threads,
                          args.timeout)
        r = res[stage]
        if stage.startswith("match") and "ransac_s" in r and r["ransac_iterations"] < RANSAC_ITERATIONS:
            scale = RANSAC_ITERATIONS / r["ransac_iterations"]
            r["scaled"] = True
            r["wall_measured_s"], r["cpu_measured_s"] = r["wall_s"], r["cpu_s"]
            r["wall_s"] += r["ransac_s"] * (scale - 1)
            r["cpu_s"] += r["ransac_s"] * (scale - 1)
        print(f"[{name}] rhapso {stage}: {_brief(r)}", file=sys.stderr, flush=True)
        if "error" in r:
            break
    res["score"] = _score(ds["truth"], w / "rh_affine.xml")
    res["score_rigid"] = _score(ds["truth"], w / "rh_rigid.xml", gauge="rigid")
    return res


def _brief(r: dict) -> str:
    if "error" in r:
        return "FAILED " + r["error"]
    return f"{r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s cpu, {r['peak_rss_mb']:.0f} MB"


def _score(truth: str, xml: Path, gauge: str = "affine") -> dict | None:
    from rhapso_core.synthetic import score

    if not xml.exists():
        return None
    try:
        s = score(truth, str(xml), gauge=gauge)
    except Exception as exc:  # a solve that lost views: say so in the table
        return {"error": str(exc)[:120]}
    return {"rms_voxels": s.rms_voxels, "max_voxels": s.max_voxels, "nominal_rms_voxels": s.nominal_rms_voxels}


# --------------------------------------------------------------------------- flow scaling
FLOW_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from flows.runtime import prefect_api
from flows.stitch import stitch
from rhapso_core.config import PipelineParams
p = PipelineParams.model_validate(json.loads(sys.argv[4]))  # plain json: keeps Infinity
with prefect_api():
    t0 = time.perf_counter()
    stitch(sys.argv[2], sys.argv[3], params=p, overwrite=True)
    print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""


def flow_speedup(name: str, ds: dict, sp: dict, work: Path, args) -> dict:
    """Wall time of the Prefect + Ray stitch flow on one dataset with 1 and 2 Ray workers."""
    from rhapso_core.config import PipelineParams

    out = {}
    for n in (1, 2):
        p = PipelineParams(
            detection=our_stage_params("detect", sp),
            matching={k: v for k, v in our_stage_params("match_affine", sp).items() if k != "model"},
            solver={k: v for k, v in our_stage_params("solve_affine", sp).items() if k != "model"},
            fusion=our_stage_params("fuse", sp), runtime={"num_cpus": n},
        )
        dest = work / f"flow_{n}cpu"
        # model_dump_json would write max_allowed_error=inf as null; json.dumps keeps Infinity.
        r = subprocess.run([sys.executable, "-c", FLOW_SCRIPT, str(ROOT), ds["xml"], str(dest),
                            json.dumps(p.model_dump())], capture_output=True, text=True,
                           # a temporary API per run: a kept one would outlive the benchmark by 10 minutes
                           env={**_env(1), "RHAPSO_LOCAL_API_IDLE_S": "0"},
                           timeout=args.timeout, cwd=ROOT)
        if r.returncode != 0:
            out[n] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]}
        else:
            out[n] = json.loads(r.stdout.strip().splitlines()[-1])
        out[n]["dataset"] = name
        print(f"[{name}] flow with {n} Ray worker(s): {out[n]}", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------- table
ROW_NAMES = {"detect": "detection", "match_rigid": "matching rigid", "solve_rigid": "solve rigid",
             "match_affine": "matching affine", "solve_affine": "solve affine", "fuse": "fusion",
             "multiscale": "multiscale"}


def throughput(stage: str, r: dict, n_vox: int, ours: dict) -> tuple[float | None, str]:
    """(value, unit) of a stage's throughput from a result row."""
    w = r.get("wall_s")
    if not w:
        return None, ""
    if stage == "detect":
        return n_vox / w / 1e6, "Mvox/s"
    if stage in ("fuse", "multiscale"):
        n = ours.get("fuse", {}).get("output_voxels")
        return (n / w / 1e6, "Mvox/s") if n else (None, "")
    if stage.startswith("match"):
        return r.get("pairs", 0) / w, "pairs/s"
    m = ours.get(stage.replace("solve", "match"), {}).get("matches")
    return (m / w, "matches/s") if m else (None, "")


def _fmt(v, spec: str, width: int) -> str:
    return f"{v:{width}{spec}}" if isinstance(v, (int, float)) else f"{'-':>{width}}"


def print_table(results: dict, args) -> str:
    lines = []
    head = (f"{'dataset':<8}{'stage':<17}{'ours s':>9}{'cpu s':>8}{'MB':>7}{'thru':>9}  "
            f"{'rhapso s':>10}{'cpu s':>9}{'MB':>7}{'thru':>9}  {'ratio':>7}")
    lines.append(head)
    lines.append("-" * len(head))
    for name, res in results.items():
        ours, rh = res["ours"], res.get("rhapso") or {}
        tot_o = tot_r = 0.0
        complete = True
        for stage in STAGES:
            o, r = ours.get(stage, {}), rh.get(stage, {})
            to, unit = throughput(stage, o, res["voxels"], ours)
            tr, _ = throughput(stage, r, res["voxels"], ours)
            mark = "*" if r.get("scaled") else " "
            ratio = (r["wall_s"] / o["wall_s"]) if ("wall_s" in r and "wall_s" in o) else None
            tot_o += o.get("wall_s", 0.0)
            tot_r += r.get("wall_s", 0.0)
            complete &= "wall_s" in o and "wall_s" in r
            rtxt = (r.get("error", "")[:40] if "error" in r else None)
            line = (f"{name:<8}{ROW_NAMES[stage]:<17}{_fmt(o.get('wall_s'), '.2f', 9)}{_fmt(o.get('cpu_s'), '.2f', 8)}"
                    f"{_fmt(o.get('peak_rss_mb'), '.0f', 7)}{_fmt(to, '.3g', 9)}  ")
            if rtxt:
                line += f"  rhapso failed: {rtxt}"
            else:
                line += (f"{_fmt(r.get('wall_s'), '.2f', 9)}{mark}{_fmt(r.get('cpu_s'), '.2f', 9)}"
                         f"{_fmt(r.get('peak_rss_mb'), '.0f', 7)}{_fmt(tr, '.3g', 9)}  "
                         f"{(f'{ratio:6.1f}x' if ratio else '      -')}")
            lines.append(line + (f"   ({unit})" if unit and name == next(iter(results)) else ""))
        ratio = tot_r / tot_o if complete and tot_o else None
        star = "*" if any(rh.get(s, {}).get("scaled") for s in STAGES) else " "
        lines.append(f"{name:<8}{'whole pipeline':<17}{tot_o:9.2f}{'':24}  {tot_r:9.2f}{star}"
                     f"{'':25}  {(f'{ratio:6.1f}x' if ratio else '      -')}")
        so, sr = res["ours"].get("score"), rh.get("score")
        nominal = (so or {}).get("nominal_rms_voxels", float("nan"))
        lines.append(f"{name:<8}{'alignment error':<17}" + _err(so) + "  " + _err(sr)
                     + f"   (affine XML vs truth, RMS / max voxels; nominal {nominal:.2f})")
        lines.append("")
    lines.append("ratio = rhapso wall / ours wall (higher: ours faster). MB = peak resident memory of the stage's process.")
    if any(res.get("rhapso", {}).get(s, {}).get("scaled") for res in results.values() for s in STAGES):
        lines.append(f"* scaled: Rhapso's RANSAC ran {args.rhapso_iterations} of {RANSAC_ITERATIONS} iterations; its "
                     f"RANSAC time is multiplied by {RANSAC_ITERATIONS / args.rhapso_iterations:g} (the rest as measured). "
                     f"Its alignment error is that of the capped run.")
    return "\n".join(lines)


def _err(s) -> str:
    if not s:
        return f"{'-':>31}"
    if "error" in s:
        return f"{'failed: ' + s['error'][:22]:>31}"
    return f"{s['rms_voxels']:>20.3f} / {s['max_voxels']:<8.3f}"


def scaling_text(results: dict) -> str:
    names = [n for n in ("small", "medium", "large") if n in results]
    if len(names) < 2:
        return "scaling: needs two or more of small/medium/large (run with --sizes small,medium,large)"
    import math

    steps = list(zip(names, names[1:])) + ([(names[0], names[-1])] if len(names) > 2 else [])
    lines = []
    for na, nb in steps:
        a, b = results[na], results[nb]
        lines.append(f"scaling {na} -> {nb} (ours; exponent k in time ~ size^k, 1 = linear):")
        for stage, what in (("detect", "voxels"), ("fuse", "output voxels"), ("multiscale", "output voxels"),
                            ("solve_affine", "links"), ("match_affine", "pairs")):
            ta, tb = a["ours"].get(stage, {}).get("wall_s"), b["ours"].get(stage, {}).get("wall_s")
            if what == "voxels":
                sa, sb = a["voxels"], b["voxels"]
            elif what == "output voxels":
                sa, sb = (r["ours"].get("fuse", {}).get("output_voxels") for r in (a, b))
            elif what == "links":
                sa, sb = a["ours"].get(stage, {}).get("links"), b["ours"].get(stage, {}).get("links")
            else:
                sa, sb = a["ours"].get(stage, {}).get("pairs"), b["ours"].get(stage, {}).get("pairs")
            if not (ta and tb and sa and sb) or sa == sb:
                lines.append(f"  {ROW_NAMES[stage]:<16} n/a")
                continue
            k = math.log(tb / ta) / math.log(sb / sa)
            lines.append(f"  {ROW_NAMES[stage]:<16} time x{tb / ta:7.2f} for {what} x{sb / sa:7.2f}: exponent {k:.2f}")
    # Block-wise stages should need the same memory whatever the dataset's size.
    lines.append("peak memory (MB) by dataset size, ours [rhapso]:  " + "  ".join(
        f"{n} {results[n]['bytes'] / 1e9:.2f} GB" for n in names))
    bound = next((results[n]["ours"]["detect_bounded"].get("max_chunk_voxels") for n in names
                  if "detect_bounded" in results[n]["ours"]), None)
    names_mem = {**ROW_NAMES, "detect_bounded": f"detection, chunks <= {(bound or 0) / 2**20:g} Mi"}
    for stage in ("detect", "detect_bounded", "fuse", "multiscale"):
        if not any(results[n]["ours"].get(stage) for n in names):
            continue
        cells = []
        for n in names:
            o = results[n]["ours"].get(stage, {}).get("peak_rss_mb")
            r = (results[n].get("rhapso") or {}).get(stage, {}).get("peak_rss_mb")
            cells.append(f"{_fmt(o, '.0f', 6)} [{_fmt(r, '.0f', 5)}]")
        lines.append(f"  {names_mem[stage]:<28}" + "  ".join(cells))
    return "\n".join(lines)


def write_throughputs(results: dict, flow: dict | None, sp: dict) -> None:
    """Per-core throughputs from the largest dataset measured: the planner's inputs (ours), Rhapso's beside."""
    order = [n for n in ("large", "medium", "small", "real") if n in results]
    if not order:
        return
    name = order[0]
    res = results[name]
    d = sp["detection"]
    working = res["voxels"] / (d["dsxy"] ** 2 * d["dsz"])
    data: dict = {"measured_on": name, "date": time.strftime("%Y-%m-%d"), "machine": machine_text(),
                  "threads_per_stage": 1, "detection_dsxy_dsz": [d["dsxy"], d["dsz"]]}
    for who, key in (("ours", None), ("rhapso", "rhapso_045")):
        o = res.get(who) or {}
        t: dict = {}
        if o.get("detect", {}).get("cpu_s"):
            t["detection_working_voxels_per_s"] = working / o["detect"]["cpu_s"]
            t["detection_peak_mb"] = o["detect"]["peak_rss_mb"]
            if o["detect"].get("total_points"):
                t["points_per_mvoxel"] = o["detect"]["total_points"] / (working / 1e6)
        ma, mr = o.get("match_affine", {}), o.get("match_rigid", {})
        if ma.get("cpu_s") and mr.get("cpu_s") and ma.get("pairs"):
            t["matching_s_per_pair"] = (ma["cpu_s"] + mr["cpu_s"]) / (ma["pairs"] + mr["pairs"])
            if o.get("detect", {}).get("total_points"):
                t["matching_points_per_pair"] = 2 * o["detect"]["total_points"] / res["views"]
        links = (res["ours"].get("solve_affine") or {}).get("links")
        if links and o.get("solve_affine", {}).get("cpu_s") and o.get("solve_rigid", {}).get("cpu_s"):
            t["solver_s_per_link"] = (o["solve_affine"]["cpu_s"] + o["solve_rigid"]["cpu_s"]) / (2 * links)
        n_out = res["ours"].get("fuse", {}).get("output_voxels")
        if n_out and o.get("fuse", {}).get("cpu_s"):
            t["fusion_voxels_per_s"] = n_out / o["fuse"]["cpu_s"]
            t["fusion_peak_mb"] = o["fuse"]["peak_rss_mb"]
        if n_out and o.get("multiscale", {}).get("cpu_s"):
            t["multiscale_voxels_per_s"] = n_out / o["multiscale"]["cpu_s"]
        if key is None:
            data.update(t)
        elif t:
            data[key] = t
    if flow and all("wall_s" in flow.get(n, {}) for n in (1, 2)):
        data["ray_speedup_1_to_2"] = flow[1]["wall_s"] / flow[2]["wall_s"]
    # content_based's filters: a rate of their own (the planner adds them to the fusion's CPU),
    # measured here on one box rather than per dataset (their cost does not depend on the data).
    import bench_content_weights

    data["content_filter_taps_per_s"] = bench_content_weights.ours_taps_per_s()
    # What this run did not measure keeps its figure from the file, dated: a peer skipped
    # (--no-rhapso), the Ray speed-up without --flow.
    try:
        previous = json.loads(THROUGHPUTS.read_text())
    except (OSError, ValueError):
        previous = {}
    if "rhapso_045" not in data and isinstance(previous.get("rhapso_045"), dict):
        data["rhapso_045"] = dict(previous["rhapso_045"])
        data["rhapso_045"].setdefault("date", previous.get("date"))
        data["rhapso_045"].setdefault("measured_on", previous.get("measured_on"))
    if "ray_speedup_1_to_2" not in data and "ray_speedup_1_to_2" in previous:
        data["ray_speedup_1_to_2"] = previous["ray_speedup_1_to_2"]
        data["ray_speedup_1_to_2_date"] = previous.get("ray_speedup_1_to_2_date", previous.get("date"))
    tmp = THROUGHPUTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, THROUGHPUTS)


def machine_text() -> str:
    import psutil

    return (f"{cpu_model()}, {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")


def cpu_model() -> str:
    """The processor's name (Linux's /proc/cpuinfo), else the architecture: figures from two runs
    compare only on the same processor, and "x86_64" does not say which."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def params_text(sp: dict) -> str:
    d, m, s, f = sp["detection"], sp["matching"], sp["solver"], sp["fusion"]
    return (f"parameters (both): detection dsxy={d['dsxy']} dsz={d['dsz']} sigma={d['sigma']} threshold={d['threshold']} "
            f"intensity = 0.05/99.95 percentiles of each dataset's first tile (last: [{d['min_intensity']:g}, "
            f"{d['max_intensity']:g}]) chunks_per_bound={d['chunks_per_bound']}; "
            f"matching num_neighbors={m['num_neighbors']} redundancy={m['redundancy']} significance={m['significance']} "
            f"search_radius={m['search_radius']:g} max_epsilon={m['max_epsilon']} min_inlier_ratio={m['min_inlier_ratio']} "
            f"model_min_matches={m['model_min_matches']} iterations={m['num_iterations']} lambda(affine)={m['lambda_value']}; "
            f"solver iterative, relative/absolute threshold {s['relative_threshold']}/{s['absolute_threshold']}, "
            f"max_iterations={s['max_iterations']}, plateau {s['max_plateauwidth']}; fusion avg_blend, 1 world unit "
            f"voxels, blocks {f['block_size'][0]}^3, chunks {f['chunks'][0]}^3; multiscale "
            f"{sp['multiscale']['n_lvls']} levels x2")


# --------------------------------------------------------------------------- main
def report(results: dict, flow: dict | None, sp: dict, rhapso_iterations: int) -> str:
    """The whole printed report: machine, table, parameters, scaling, Ray speed-up."""
    lines = [f"machine: {machine_text()}; one thread per stage process; datasets: " + ", ".join(
        f"{n} {r['views']} tiles {r['bytes'] / 1e9:.2f} GB" for n, r in results.items())]
    lines.append(print_table(results, argparse.Namespace(rhapso_iterations=rhapso_iterations)))
    lines.append(params_text(sp))
    lines.append(scaling_text(results))
    if flow:
        w1, w2 = flow.get(1, {}), flow.get(2, {})
        name = w1.get("dataset", next(iter(results)))
        if "wall_s" in w1 and "wall_s" in w2:
            inproc = sum(results.get(name, {}).get("ours", {}).get(s, {}).get("wall_s", 0.0) for s in STAGES)
            lines.append(f"Prefect + Ray stitch flow on {name}: 1 worker {w1['wall_s']:.1f} s, "
                         f"2 workers {w2['wall_s']:.1f} s, speed-up {w1['wall_s'] / w2['wall_s']:.2f}x "
                         f"(the same stages in-process, one after another: {inproc:.1f} s)")
        else:
            lines.append(f"Prefect + Ray flow: {flow}")
    return "\n".join(lines)


def save_results(path: Path, results: dict, flow: dict | None, sp: dict | None, args) -> None:
    """All figures so far, atomically: a long run that dies keeps the datasets it finished."""
    doc = {"machine": machine_text(), "date": time.strftime("%Y-%m-%d %H:%M"), "rhapso_iterations":
           args.rhapso_iterations, "params": sp, "flow": flow, "results": results}
    tmp = path.with_suffix(path.suffix + ".tmp")
    # json.dumps keeps inf (max_allowed_error) as Infinity, which json.loads reads back.
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def load_results(path: Path) -> tuple[dict, dict | None, dict, int]:
    doc = json.loads(path.read_text())
    flow = doc.get("flow")
    if flow:
        flow = {int(k): v for k, v in flow.items()}
    return doc["results"], flow, doc["params"], int(doc.get("rhapso_iterations", 200))


def warm_up(work: Path, args) -> None:
    """Run our stages once on a tiny dataset, untimed (compiles and caches numba kernels)."""
    ds = ensure_dataset(work, "warmup")
    lo, hi = intensity_range(ds["xml"])
    t0 = time.perf_counter()
    run_ours("warmup", ds, shared_params(lo, hi), work / "warmup", args, quiet=True)
    print(f"[warmup] our stages once, untimed, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small", help="comma list of small, medium, large, real (default small)")
    ap.add_argument("--work", default=str(ROOT / "bench" / "_data"),
                    help="datasets and outputs (default bench/_data, git-ignored)")
    ap.add_argument("--rhapso-iterations", type=int, default=200,
                    help=f"RANSAC iterations Rhapso runs; its time is scaled to {RANSAC_ITERATIONS} (default 200)")
    ap.add_argument("--no-rhapso", action="store_true", help="ours only")
    ap.add_argument("--flow", nargs="?", const="", metavar="SIZE",
                    help="also the Prefect/Ray stitch flow with 1 and 2 Ray workers, on SIZE (default: the first)")
    ap.add_argument("--threads", type=int, default=1, help="threads per stage process (default 1)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per stage process (s, default 3600)")
    ap.add_argument("--json", help="all figures, rewritten after each dataset (default WORK/results.json)")
    ap.add_argument("--bounded-chunk-voxels", type=int, default=BOUNDED_CHUNK_VOXELS,
                    help="working voxels per chunk of the extra, memory-bounded detection run "
                    f"(default {BOUNDED_CHUNK_VOXELS})")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the figures already in the --json file; run only the stages missing there")
    ap.add_argument("--report", metavar="JSON",
                    help="print the report of an earlier run's --json file (measures nothing)")
    ap.add_argument("--no-throughputs", action="store_true",
                    help="do not rewrite bench/throughputs.json (the planner's inputs)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], json.loads(Path(args.worker[1]).read_text()))))
        return 0
    if args.report:
        results, flow, sp, iters = load_results(Path(args.report))
        print(report(results, flow, sp, iters))
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes + ([args.flow] if args.flow else []) if s not in SIZES or s == "warmup"]
    if bad:
        ap.error(f"--sizes: unknown {bad}; choose from {[n for n in SIZES if n != 'warmup']}")
    if args.flow and args.flow not in sizes:
        ap.error(f"--flow {args.flow}: not among --sizes {sizes}")
    work = Path(args.work).resolve()
    json_path = Path(args.json) if args.json else work / "results.json"
    results: dict = {}
    sp_used = None
    flow = None
    prior: dict = {}
    if args.resume and json_path.exists():
        prior, flow, _, _ = load_results(json_path)
        print(f"resuming from {json_path}: {', '.join(prior) or 'nothing'} measured before", file=sys.stderr)
    warm_up(work, args)
    for name in sizes:
        try:
            ds = ensure_dataset(work, name)
        except FileNotFoundError as exc:
            print(f"[{name}] skipped: {exc}", file=sys.stderr)
            continue
        n_views, n_vox = dataset_voxels(ds["xml"])
        lo, hi = intensity_range(ds["xml"])
        sp = sp_used = shared_params(lo, hi)
        res = {"views": n_views, "voxels": n_vox, "bytes": 2 * n_vox}
        before = prior.get(name, {})
        res["ours"] = run_ours(name, ds, sp, work / name, args, prior=before.get("ours"))
        if not args.no_rhapso:
            res["rhapso"] = run_rhapso(name, ds, sp, work / name, args, prior=before.get("rhapso"))
        elif "rhapso" in before:
            res["rhapso"] = before["rhapso"]
        want_flow = args.flow is not None and (args.flow or sizes[0]) == name
        if want_flow and not (flow and all(flow.get(n, {}).get("dataset", sizes[0]) == name and "wall_s" in flow[n]
                                           for n in (1, 2))):
            flow = flow_speedup(name, ds, sp, work / name, args)
        results[name] = res
        save_results(json_path, results, flow, sp_used, args)
    if not results:
        print("no dataset could be made", file=sys.stderr)
        return 1
    print()
    print(report(results, flow, sp_used, args.rhapso_iterations))
    if not args.no_throughputs:
        write_throughputs(results, flow, sp_used)
        print(f"throughputs for the planner: {THROUGHPUTS}")
    print(f"all figures: {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
