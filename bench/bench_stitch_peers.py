"""The whole job, ours against Rhapso 0.4.5 and multiview-stitcher, in one run on the same data (issue 21, item 3).

One generated dataset (``rhapso_core.synthetic``: 3 x 2 x 1 tiles of 256 x 256 x 96 voxels
(x, y, z), uint16, 37.7 Mvox in, with ground truth), and per tool the whole job from a fresh
process, timed from outside (wall clock of the process(es), CPU = user + system of the
process and every child it waited for, peak = the largest resident set among them, from
``os.wait4``):

* **ours**: ``rhapso stitch XML --out DIR`` (align: detection, matching, rigid and affine
  solves with their image checks; fusion; pyramid; QC report), default parameters and
  default runtime (the planner picks threads or a local Ray), the Prefect API a command
  uses by default (the kept local API, in this benchmark's folder: the warm-up run starts
  it, the timed runs reuse it, as a user's repeated commands do; stopped at the end), and
  likewise the process kept between commands (``rhapso_cli/kept_process.py``: the warm-up's
  command starts it as it ends, the benchmark waits until it is ready, each timed run is
  forked from it; CPU and peak memory are then the forked command's, reported back to the
  timed process, plus that process's own); each run with an emptied Prefect result store,
  so that no run reuses an earlier one's cached detection;
* **ours, fresh process** (unless ``--no-fresh``): the same command right after, with
  ``RHAPSO_KEPT_PROCESS_IDLE_S=0``: a process that imports everything itself, as a first
  command does (the kept API still reused);
* **Rhapso 0.4.5** (``bench/_venvs/rhapso045``, made on first use): detection, rigid
  matching and solve, affine matching and solve, fusion, its multiscale pyramid, each
  stage a fresh process of ``bench/rhapso_driver.py`` (its component classes in its
  pipelines' order, serial: one core), on a copy of the tiles in the layout it reads
  (``bench/rhapso_driver_layout.py``, not timed) with ``bench/run_benchmarks.py``'s
  parameters (its stage benchmark's). Its RANSAC is a Python loop (minutes per pair at
  its 10,000 iterations): it runs ``--rhapso-iterations`` (default 200) and the figure
  compared is the time **measured** with that cap, a lower bound of Rhapso's time (the
  time scaled to 10,000 iterations is printed beside it);
* **multiview-stitcher** (``bench/_venvs/mvstitcher``, as ``bench/bench_phase.py`` makes
  it): ``bench/mvs_stitch_driver.py`` reads the same OME-Zarr tiles, registers them
  (``registration.register``, its defaults: phase correlation and global optimisation),
  fuses them and writes a multiscale OME-Zarr (``fusion.fuse(..., output_zarr_url,
  zarr_options={"ome_zarr": True})``), dask's default scheduler.

The alignment error of each is ``rhapso_core.synthetic.scoring.score`` of its solved
registrations against the ground truth (affine gauge, finest-axis voxels).

The tools run one after another, never at the same time; each of ``--repeat`` rounds
runs all three, the order rotating from round to round so that a change of the machine's
load falls on each in turn; min and max over the rounds are printed. Before the first round
one ``rhapso stitch`` runs untimed (``--no-warmup`` skips it): it puts numba's compiled
kernels in their on-disk cache, a one-off cost per installation.

``--before DIR`` also times ``rhapso stitch`` of another checkout of this project (e.g. ``git
archive COMMIT | tar -x -C DIR``: the code before a change) right after ours in each round.

Usage::

    python bench/bench_stitch_peers.py --work /tmp/stitch_peers            # --repeat 2
    python bench/bench_stitch_peers.py --tools ours,mvs --repeat 3
    python bench/bench_stitch_peers.py --tools ours --before /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

TOOLS = ("ours", "rhapso", "mvs")
NAMES = {"ours": "ours (rhapso stitch)", "rhapso": "Rhapso 0.4.5", "mvs": "multiview-stitcher",
         "before": "ours, --before checkout", "fresh": "ours, fresh process"}
# Issue 21 item 3: ours in at most a tenth of Rhapso's time and a fifth of multiview-stitcher's.
TARGETS = {"rhapso": 0.1, "mvs": 0.2}
ENV = {"RAY_AUTH_MODE": "disabled", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


# --------------------------------------------------------------------------- measuring
def measured(cmd: list[str], log: Path, env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Run ``cmd`` to its end; wall, CPU (its own and its waited-for children's) and peak RSS."""
    e = dict(os.environ)
    e.update(env or {})
    with open(log, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=e, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_mb": ru.ru_maxrss / 1024, "rc": p.returncode}


def _last_json(log: Path) -> dict:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _tail(log: Path, n: int = 5) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-n:])[-600:]


def score_xml(truth: str, xml: Path) -> dict | None:
    from rhapso_core.synthetic import score

    if not xml.exists():
        return None
    try:
        s = score(truth, str(xml), gauge="affine")
    except Exception as exc:  # a solve that lost views: say so in the table
        return {"error": str(exc)[:160]}
    return {"rms_voxels": s.rms_voxels, "max_voxels": s.max_voxels, "nominal_rms_voxels": s.nominal_rms_voxels}


# --------------------------------------------------------------------------- dataset
def make_dataset(work: Path, grid, tile_xyz, seed: int) -> dict:
    from rhapso_core.synthetic import SyntheticParams, write_dataset

    root = work / "data"
    marker = root / "params.json"
    want = {"grid": list(grid), "tile_size_xyz": list(tile_xyz), "seed": seed}
    if (root / "ground_truth.json").exists() and marker.exists() and json.loads(marker.read_text()) == want:
        return {"xml": str(root / "dataset.xml"), "truth": str(root / "ground_truth.json")}
    paths = write_dataset(root, SyntheticParams(grid=tuple(grid), tile_size_xyz=tuple(tile_xyz), seed=seed),
                          overwrite=True)
    marker.write_text(json.dumps(want))
    return {"xml": str(paths.xml), "truth": str(paths.ground_truth)}


def dataset_text(xml: str) -> str:
    from rhapso_core.pipeline.dataset import load_dataset

    sd = load_dataset(xml)
    n = 0
    for v in sd.views():
        sx, sy, sz = sd.setup_of(v).size
        n += int(sx) * int(sy) * int(sz)
    sx, sy, sz = sd.setup_of(sd.views()[0]).size
    vox = sd.setup_of(sd.views()[0]).voxel_size
    return (f"{len(sd.views())} tiles of {sx} x {sy} x {sz} (x, y, z) uint16, voxel {vox} um (x, y, z), "
            f"{n / 1e6:.1f} Mvox ({2 * n / 1e6:.0f} MB) in")


# --------------------------------------------------------------------------- ours
def _stage_line(log: Path) -> str:
    """The summary's "stages:" lines (the flow's own stage times), joined."""
    out, on = [], False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("  stages:"):
            on = True
            out.append(line.split("stages:", 1)[1].strip())
        elif on and line.startswith("          "):
            out.append(line.strip())
        elif on:
            break
    return "; ".join(out)


def _kept_api_dir(work: Path, root: Path) -> Path:
    # The kept local API of each checkout in this benchmark's own folder: the warm-up's
    # command starts it, the timed runs reuse it (a user's repeated commands), and it is
    # stopped at the end, whatever else runs on the machine.
    return work / "kept-api" / root.name


def _stop_kept_apis(work: Path, roots) -> None:
    for root in roots:
        try:
            sys.path.insert(0, str(root))
            from flows.kept_api import stop_server
        except ImportError:
            continue
        finally:
            sys.path.remove(str(root))
        stop_server(_kept_api_dir(work, root))


def _kept_process_dir(work: Path, root: Path) -> Path:
    # The process kept between commands (rhapso_cli/kept_process.py), like the kept API: the
    # warm-up's command starts it, the timed runs are forked from it, stopped at the end.
    return work / "kept-process" / root.name


def _stop_kept_processes(work: Path, roots) -> None:
    from rhapso_cli.kept_process import stop

    for root in roots:
        stop(_kept_process_dir(work, root))


def run_ours(ds: dict, work: Path, tag: str, root: Path = ROOT, kept: bool = True) -> dict:
    """``rhapso stitch`` of the checkout ``root`` (this one by default): forked from the process
    kept between commands where there is one (``kept``; the default, as for a user's repeated
    commands), else in a fresh process that imports everything itself."""
    out = work / f"ours_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"ours_{tag}.log"
    # An empty result store per run: detection's chunk results are cached by their inputs
    # (tasks.policies.CACHE_POLICY), so a run would otherwise reuse the warm-up's, a job the
    # peers are not spared. The same folder each time (emptied): the environment is part of
    # what the kept process is kept for, and a user's does not change between commands.
    results = work / f"ours_results_{root.name}"
    shutil.rmtree(results, ignore_errors=True)
    # The command's own CPU time and peak memory, when it is forked from the kept process (not
    # a child of the process timed here); the small process timed here waits for it.
    usage = work / f"ours_{tag}.rusage.json"
    usage.unlink(missing_ok=True)
    # Each checkout's Prefect database of its own: two Prefect servers on one SQLite file (the two
    # checkouts' kept APIs) lock each other out, now and then for SQLite's busy timeout (60 s),
    # which a run then waits (seen: one run of 67 s against 7).
    env = dict(ENV, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PREFECT_HOME=str(work / "prefect-home" / root.name),
               PREFECT_LOCAL_STORAGE_PATH=str(results), RHAPSO_LOCAL_API_DIR=str(_kept_api_dir(work, root)),
               RHAPSO_KEPT_PROCESS_DIR=str(_kept_process_dir(work, root)), RHAPSO_KEPT_PROCESS_RUSAGE=str(usage))
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    if not kept:
        env["RHAPSO_KEPT_PROCESS_IDLE_S"] = "0"
    r = measured([sys.executable, "-m", "rhapso_cli.main", "stitch", ds["xml"], "--out", str(out)], log, env,
                 cwd=root)
    r["kept_process"] = usage.exists()
    if r["kept_process"]:
        forked = json.loads(usage.read_text())
        r["cpu_s"] += forked["cpu_s"]
        r["peak_mb"] = max(r["peak_mb"], forked["maxrss_kb"] / 1024)
    if r["rc"] not in (0, 3):  # 3: completed, QC verdict "fail" (still a whole job)
        return {"error": f"exit {r['rc']}: {_tail(log)}"}
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    r["stages_text"] = _stage_line(log)
    r["executor"] = (summary.get("executor") or {}).get("where")
    r["score"] = score_xml(ds["truth"], out / "dataset.aligned.xml")
    r["fused_shape"] = (summary.get("fusion") or {}).get("shape_zyx")
    return r


# --------------------------------------------------------------------------- Rhapso 0.4.5
def prepare_rhapso(ds: dict, work: Path, iterations: int) -> dict | None:
    import run_benchmarks as rb
    from rhapso_driver_layout import rhapso_copy
    from rhapso_env import rhapso_python

    py = rhapso_python()
    if py is None:
        return None
    rh = rhapso_copy(ds["xml"], work / "rhapso_layout")
    lo, hi = rb.intensity_range(ds["xml"])
    sp = rb.shared_params(lo, hi)
    return {"py": str(py), "rh": rh, "sp": sp, "iterations": iterations}


def run_rhapso(ds: dict, work: Path, prep: dict, tag: str) -> dict:
    import run_benchmarks as rb

    w = work / f"rhapso_{tag}"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    res = {"wall_s": 0.0, "cpu_s": 0.0, "peak_mb": 0.0, "stages": {}, "ransac_s": 0.0}
    for stage in rb.STAGES:
        drv = "multiscale" if stage == "multiscale" else stage.split("_")[0]
        cfg = rb.rhapso_config(stage, prep["sp"], prep["rh"], w, prep["iterations"])
        cfg_path, log = w / f"{stage}.json", w / f"{stage}.log"
        cfg_path.write_text(json.dumps(cfg))
        r = measured([prep["py"], str(BENCH / "rhapso_driver.py"), drv, str(cfg_path)], log)
        if r["rc"] != 0:
            res["error"] = f"{stage}: exit {r['rc']}: {_tail(log, 2)}"
            return res
        inner = _last_json(log)
        res["wall_s"] += r["wall_s"]
        res["cpu_s"] += r["cpu_s"]
        res["peak_mb"] = max(res["peak_mb"], r["peak_mb"])
        res["stages"][stage] = r["wall_s"]
        if stage.startswith("match"):
            res["ransac_s"] += inner.get("ransac_s", 0.0)
            res[f"{stage}_pairs"] = f"{inner.get('pairs_matched')}/{inner.get('pairs')}"
        if stage == "fuse":
            res["fused_shape"] = list(reversed(inner.get("shape_xyz", [])))
    scale = rb.RANSAC_ITERATIONS / prep["iterations"]
    res["wall_scaled_s"] = res["wall_s"] + res["ransac_s"] * (scale - 1)
    res["score"] = score_xml(ds["truth"], w / "rh_affine.xml")
    return res


# --------------------------------------------------------------------------- multiview-stitcher
def prepare_mvs(ds: dict) -> dict | None:
    from bench_phase import _mvs_python

    try:
        py = _mvs_python()
    except subprocess.CalledProcessError as exc:
        print(f"multiview-stitcher venv could not be made: {exc}", file=sys.stderr)
        return None
    return {"py": str(py)} if py else None


def _mvs_tiles(xml: str) -> list[dict]:
    """Each tile's level-0 zarr array, spacing and nominal stage position (um, z y x)."""
    import numpy as np

    from rhapso_core.pipeline.dataset import load_dataset

    sd = load_dataset(xml)
    tiles = []
    for v in sd.views():
        loc = sd.image_location(v)
        if loc.kind != "ome-zarr":
            raise ValueError(f"{xml}: view {v}: the multiview-stitcher driver reads OME-Zarr tiles only")
        vox = np.asarray(sd.setup_of(v).voxel_size, dtype=np.float64)  # x y z um
        origin_um = sd.view_to_world(v)[:3, 3] * vox.min()  # the world frame is the finest voxel
        tiles.append({"zarr": str(Path(loc.uri) / loc.dataset / "0"),
                      "spacing": {"z": vox[2], "y": vox[1], "x": vox[0]},
                      "translation": {"z": origin_um[2], "y": origin_um[1], "x": origin_um[0]}})
    return tiles


def mvs_solved_xml(xml: str, affines: list, path: Path) -> Path:
    """Our XML with multiview-stitcher's registration prepended to each view (um z y x -> world x y z)."""
    import numpy as np

    from rhapso_core.pipeline.dataset import load_dataset
    from rhapso_core.spimdata import save_xml

    sd = load_dataset(xml)
    solved = sd
    perm = np.eye(4)[[2, 1, 0, 3]]  # z y x <-> x y z (its own inverse)
    for v, aff in zip(sd.views(), affines):
        a = perm @ np.asarray(aff, dtype=np.float64) @ perm
        a[:3, 3] /= float(np.min(sd.setup_of(v).voxel_size))  # um -> world units (finest voxel)
        solved = solved.with_prepended_transform(v, "multiview-stitcher", a)
    save_xml(solved, str(path))
    return path


def run_mvs(ds: dict, work: Path, prep: dict, tag: str) -> dict:
    w = work / f"mvs_{tag}"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    job, out = w / "job.json", w / "result.json"
    job.write_text(json.dumps({"tiles": _mvs_tiles(ds["xml"]), "out": str(w / "fused.ome.zarr")}))
    log = w / "driver.log"
    r = measured([prep["py"], str(BENCH / "mvs_stitch_driver.py"), str(job), str(out)], log)
    if r["rc"] != 0 or not out.exists():
        return {"error": f"exit {r['rc']}: {_tail(log, 3)}"}
    inner = json.loads(out.read_text())
    r["stages"] = {k: inner[k] for k in ("import_s", "read_s", "register_s", "fuse_write_s")}
    r["fused_shape"] = inner["fused_shape"]
    r["levels"] = inner["levels"]
    r["score"] = score_xml(ds["truth"], mvs_solved_xml(ds["xml"], inner["affines"], w / "mvs.xml"))
    return r


# --------------------------------------------------------------------------- report
def _versions(prep: dict) -> dict:
    v = {"python": platform.python_version()}
    try:
        v["ours"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                   text=True).stdout.strip()
    except OSError:
        pass
    for tool, pkg in (("rhapso", "rhapso"), ("mvs", "multiview-stitcher")):
        if prep.get(tool):
            r = subprocess.run([prep[tool]["py"], "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"],
                               capture_output=True, text=True)
            v[tool] = r.stdout.strip() or "?"
    return v


def _span(vals: list[float], fmt: str = "{:.1f}") -> str:
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if len(vals) == 1 or fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def report(runs: dict, meta: dict) -> str:
    lines = [f"machine: {meta['machine']}", f"versions: {json.dumps(meta['versions'])}",
             f"dataset: {meta['dataset']}", f"load average at start {meta['load_start']}, at end {meta['load_end']}",
             "", f"{'tool':24s} {'wall s':>12s} {'CPU s':>12s} {'peak MB':>10s} {'RMS vox':>8s} {'max vox':>8s}  fused (z,y,x)"]
    for tool in TOOLS + ("fresh", "before"):
        ok = [r for r in runs.get(tool, []) if "error" not in r]
        if not runs.get(tool):
            continue
        if not ok:
            lines.append(f"{NAMES[tool]:24s} FAILED: {runs[tool][0]['error']}")
            continue
        sc = [r["score"] for r in ok if r.get("score") and "rms_voxels" in r["score"]]
        rms = _span([s["rms_voxels"] for s in sc], "{:.3f}") if sc else "-"
        mx = _span([s["max_voxels"] for s in sc], "{:.3f}") if sc else "-"
        lines.append(f"{NAMES[tool]:24s} {_span([r['wall_s'] for r in ok]):>12s} {_span([r['cpu_s'] for r in ok]):>12s} "
                     f"{_span([r['peak_mb'] for r in ok], '{:.0f}'):>10s} {rms:>8s} {mx:>8s}  {ok[0].get('fused_shape')}")
        if tool == "ours":
            kept = [bool(r.get("kept_process")) for r in ok]
            lines.append(f"{'':24s} forked from the process kept between commands in {sum(kept)} of {len(kept)} "
                         "runs (CPU and peak: the forked command's plus the waiting process's)")
        if tool == "rhapso":
            lines.append(f"{'':24s} RANSAC capped at {meta['rhapso_iterations']} iterations; scaled to "
                         f"10,000: {_span([r['wall_scaled_s'] for r in ok], '{:.0f}')} s wall")
    lines.append("")
    ours = [r["wall_s"] for r in runs.get("ours", []) if "error" not in r]
    fresh = [r["wall_s"] for r in runs.get("fresh", []) if "error" not in r]
    for tool, target in TARGETS.items():
        theirs = [r["wall_s"] for r in runs.get(tool, []) if "error" not in r]
        for name, mine in (("ours", ours), ("ours, fresh process", fresh)):
            if not mine or not theirs:
                continue
            best, worst = min(mine) / min(theirs), max(mine) / max(theirs)
            met = "met" if max(best, worst) <= target else "NOT met"
            lines.append(f"{name} / {NAMES[tool]}: {best:.3f} (fastest runs) - {worst:.3f} (slowest runs); "
                         f"target <= {target:g} ({1 / target:.0f}x faster): {met}")
    lines.append("")
    before = [r["wall_s"] for r in runs.get("before", []) if "error" not in r]
    if ours and before:
        lines.append(f"ours / --before checkout: {min(ours) / min(before):.3f} (fastest runs) - "
                     f"{max(ours) / max(before):.3f} (slowest runs)")
    lines.append("per-stage seconds (first round):")
    for tool in TOOLS + ("fresh", "before"):
        ok = [r for r in runs.get(tool, []) if "error" not in r]
        if ok:
            st = ok[0].get("stages") or {}
            text = ok[0].get("stages_text") or ", ".join(f"{k} {v:.1f}" for k, v in st.items())
            lines.append(f"  {NAMES[tool]}: {text}")
    return "\n".join(lines)


def _cpu_model() -> str:
    import run_benchmarks as rb

    return rb.cpu_model()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(BENCH / "_data" / "stitch_peers"),
                    help="dataset and outputs (default bench/_data/stitch_peers, git-ignored)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)} (default all)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of all tools, order rotating (default 2)")
    ap.add_argument("--grid", type=int, nargs=3, default=(3, 2, 1), metavar=("X", "Y", "Z"))
    ap.add_argument("--tile", type=int, nargs=3, default=(256, 256, 96), metavar=("X", "Y", "Z"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rhapso-iterations", type=int, default=200,
                    help="RANSAC iterations Rhapso runs (its 10,000 take minutes per pair; default 200)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed first rhapso stitch")
    ap.add_argument("--before", metavar="DIR",
                    help="also time `rhapso stitch` of another checkout (e.g. a worktree of the commit before a "
                    "change) right after ours in each round")
    ap.add_argument("--no-fresh", action="store_true",
                    help="skip the second run of ours per round, in a fresh process (no kept process: "
                    "RHAPSO_KEPT_PROCESS_IDLE_S=0), the time of a first command")
    ap.add_argument("--json", help="all figures (default WORK/results.json)")
    a = ap.parse_args(argv)
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        ap.error(f"--tools: unknown {bad}; choose from {list(TOOLS)}")
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(work, a.grid, a.tile, a.seed)
    prep: dict = {}
    if "rhapso" in tools:
        prep["rhapso"] = prepare_rhapso(ds, work, a.rhapso_iterations)
    if "mvs" in tools:
        prep["mvs"] = prepare_mvs(ds)
    meta = {"machine": f"{platform.node()}, {os.cpu_count()} cores (shared), {_cpu_model()}",
            "versions": _versions(prep), "dataset": dataset_text(ds["xml"]), "rhapso_iterations": a.rhapso_iterations,
            "command": " ".join([Path(sys.executable).name] + sys.argv)}
    print(f"{meta['dataset']}; {os.cpu_count()} cores", file=sys.stderr, flush=True)
    before = Path(a.before).resolve() if a.before else None
    if before is not None:
        if not (before / "rhapso_cli" / "main.py").exists():
            ap.error(f"--before {a.before}: not a checkout of this project (no rhapso_cli/main.py)")
        if "ours" not in tools:
            tools.insert(0, "ours")
        meta["versions"]["before"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=before,
                                                    capture_output=True, text=True).stdout.strip()
    if "ours" in tools and not a.no_warmup:
        t0 = time.perf_counter()
        run_ours(ds, work, "warmup")
        if before is not None:
            run_ours(ds, work, "before_warmup", before)
        print(f"[warmup] rhapso stitch once, untimed: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if "ours" in tools:
        from rhapso_cli.kept_process import wait_ready

        # The warm-up's command started the kept process when it ended; a user's next command
        # finds it ready a few seconds later.
        for root in [ROOT] + ([before] if before is not None else []):
            kept = wait_ready(60.0, {"RHAPSO_KEPT_PROCESS_DIR": str(_kept_process_dir(work, root))})
            print(f"[warmup] process kept between commands ({root.name}): {'ready' if kept else 'none'}",
                  file=sys.stderr, flush=True)
    meta["load_start"] = os.getloadavg()[0]
    extra = (["fresh"] if "ours" in tools and not a.no_fresh else []) + (["before"] if before is not None else [])
    runs: dict = {t: [] for t in tools + extra}
    for rnd in range(a.repeat):
        order = tools[rnd % len(tools):] + tools[: rnd % len(tools)]
        for tool in order:
            tag = f"r{rnd}"
            if tool == "ours":
                r = run_ours(ds, work, tag)
            elif prep.get(tool) is None:
                r = {"error": f"{tool}: its virtual environment could not be made"}
            elif tool == "rhapso":
                r = run_rhapso(ds, work, prep["rhapso"], tag)
            else:
                r = run_mvs(ds, work, prep["mvs"], tag)
            done = [(tool, r)]
            if tool == "ours" and not a.no_fresh:
                done.append(("fresh", run_ours(ds, work, f"fresh_{tag}", kept=False)))
            if tool == "ours" and before is not None:
                done.append(("before", run_ours(ds, work, f"before_{tag}", before)))
            for name, r in done:
                r["round"], r["load"] = rnd, os.getloadavg()[0]
                runs[name].append(r)
                brief = r.get("error") or (f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['peak_mb']:.0f} MB, "
                                           f"RMS {(r.get('score') or {}).get('rms_voxels', float('nan')):.3f} vox")
                print(f"[round {rnd}] {NAMES[name]}: {brief}", file=sys.stderr, flush=True)
    meta["load_end"] = os.getloadavg()[0]
    if "ours" in tools:
        _stop_kept_apis(work, [ROOT] + ([before] if before is not None else []))
        _stop_kept_processes(work, [ROOT] + ([before] if before is not None else []))
    json_path = Path(a.json) if a.json else work / "results.json"
    json_path.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1, default=str))
    print(report(runs, meta))
    print(f"all figures: {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
