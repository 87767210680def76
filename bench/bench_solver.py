"""Benchmark of the global solver on a synthetic tile grid (single core).

Usage::

    python bench/bench_solver.py            # 10 x 10 x 10 tiles, ~2,700 links, 50 matches each
    python bench/bench_solver.py --small    # 4 x 4 x 3 tiles, a few seconds
    python bench/bench_solver.py --rhapso   # also the published rhapso 0.4.5 solver (see below)

Prints one row per (model, solver): wall time of ``rhapso_core.solver.solve``
(method one_round, BigStitcher defaults otherwise), iterations / linear solves,
the final mean tile error and the RMS distance of the solution from the ground
truth after removing the best global transform of the solved model (voxels).
Targets from the issue: translation < 10 s, regularised affine < 60 s.

``--rhapso`` also runs the published ``rhapso==0.4.5`` solver (its public
``Rhapso.pipelines.ray.solver.Solver``, which needs no Ray) on the same matches,
in its own virtual environment ``bench/_venvs/rhapso045`` (made on first use, see
``bench/rhapso_env.py``). Rhapso 0.4.5 reads a BigStitcher XML plus its
Parquet/JSON alignment store (``points/.../points.parquet``,
``matches/.../correspondences.parquet``, manifests), not arrays, so the grid is
written that way first (untimed): the XML by ``rhapso_core.spimdata``
(nominal registrations, zgroup paths with ``_ch_0`` as Rhapso requires), the
points in each view's voxel frame and the correspondences by Rhapso's own
``SaveInterestPoints`` / ``SaveMatches`` (``bench/rhapso_driver.py grid_store``).
Only ``Solver.run()`` is timed (XML and store reading included, as in its
pipeline). Rhapso has rigid and (regularised) affine models, no translation: the
translation grid is solved with its rigid model. The accuracy of its solution
is measured the same way as ours. ``--rhapso-max-iterations`` caps its iteration
count (default: the same as ours) and ``--rhapso-timeout`` its wall time.
"""

from __future__ import annotations

import os

# One core: set before NumPy / SciPy load their BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from rhapso_core import transforms  # noqa: E402
from rhapso_core.solver import SolverParams, solve  # noqa: E402
from rhapso_core.solver.synthetic import SyntheticGrid, correction_rms, make_grid  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from rhapso_env import rhapso_python  # noqa: E402

# (truth of the grid, Rhapso run_type, regularization_weight) beside our (model, lambda) rows.
RHAPSO_CASES = [("translation", "rigid", 0.0), ("affine", "affine", 0.1)]


def write_grid_for_rhapso(grid: SyntheticGrid, folder: Path) -> tuple[Path, Path]:
    """The grid as a BigStitcher XML (nominal registrations) and an ``.npz`` of view-voxel points + matches."""
    from rhapso_core.spimdata import ViewSetup, ViewTransform, ZarrImageLoader, make_spimdata, save_xml

    views = sorted(grid.views)
    setups = [ViewSetup(id=v[1], name=f"tile_{v[1]}", size=grid.views[v][1], voxel_size=(1.0, 1.0, 1.0),
                        voxel_unit="px") for v in views]
    regs = {v: (ViewTransform("nominal grid position", grid.views[v][0]),) for v in views}
    loader = ZarrImageLoader.from_paths("images", {v: f"tile_{v[1]}_ch_0.zarr" for v in views}, root_type="relative")
    xml = folder / "grid.xml"
    save_xml(make_spimdata(setups=setups, registrations=regs, image_loader=loader), str(xml))
    # Each match becomes a point of both views (in the view's voxel frame, as Rhapso stores points).
    index = {v: k for k, v in enumerate(views)}
    pts: dict = {v: [] for v in views}
    count = {v: 0 for v in views}
    arrays: dict[str, np.ndarray] = {}
    links = []
    for li, link in enumerate(grid.links):
        idx = {}
        for v, p in ((link.a, link.pa), (link.b, link.pb)):
            local = transforms.apply(transforms.invert(grid.views[v][0]), p)
            pts[v].append(local)
            idx[v] = np.arange(count[v], count[v] + len(local))
            count[v] += len(local)
        arrays[f"idx_a_{li}"] = idx[link.a]
        arrays[f"idx_b_{li}"] = idx[link.b]
        links.append((index[link.a], index[link.b]))
    for v in views:
        arrays[f"points_{index[v]}"] = np.concatenate(pts[v]) if pts[v] else np.zeros((0, 3))
    npz = folder / "grid.npz"
    np.savez(npz, views=np.asarray(views), links=np.asarray(links), **arrays)
    return xml, npz


def _driver(py: Path, stage: str, cfg: dict, folder: Path, timeout: float | None = None) -> dict:
    f = folder / f"{stage}.json"
    f.write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([str(py), str(BENCH / "rhapso_driver.py"), stage, str(f)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"rhapso {stage} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_rhapso_solver(grid: SyntheticGrid, truth: str, run_type: str, lam: float, max_iterations: int,
                      timeout: float) -> dict:
    """Time Rhapso 0.4.5's ``Solver`` on the grid; returns time, memory and RMS vs truth (or a reason)."""
    from rhapso_core.spimdata import load_xml

    py = rhapso_python()
    if py is None:
        return {"error": "rhapso 0.4.5 venv unavailable"}
    with tempfile.TemporaryDirectory(prefix="bench_solver_rhapso_") as tmp:
        folder = Path(tmp)
        xml, npz = write_grid_for_rhapso(grid, folder)
        store = folder / "store"
        _driver(py, "grid_store", {"xml": str(xml), "npz": str(npz), "store": str(store),
                                   "out_xml": str(folder / "grid_points.xml")}, folder)
        params = {"run_type": run_type, "relative_threshold": 3.5, "absolute_threshold": 7.0, "min_matches": 3,
                  "damp": 1.0, "regularization_weight": lam, "max_iterations": max_iterations,
                  "max_allowed_error": float("inf"), "max_plateauwidth": 200, "fixed_tile": None}
        out_xml = folder / "solved.xml"
        try:
            res = _driver(py, "solve", {"xml": str(folder / "grid_points.xml"), "store": str(store),
                                        "out_xml": str(out_xml), "params": params}, folder, timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish in {timeout:.0f} s"}
        except RuntimeError as exc:
            return {"error": str(exc)}
        sd = load_xml(str(out_xml))
        corr = {v: sd.view_to_world(v) @ transforms.invert(grid.views[v][0]) for v in grid.views}
        res["rms"] = correction_rms(grid, corr, gauge=truth)
        return res

CASES = [
    ("translation", 0.0, "sparse"),
    ("translation", 0.0, "iterative"),
    ("affine", 0.1, "sparse"),
    ("affine", 0.1, "iterative"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="4 x 4 x 3 tiles instead of 10 x 10 x 10")
    ap.add_argument("--matches", type=int, default=50, help="matches per link (default 50)")
    ap.add_argument("--rhapso", action="store_true", help="also run rhapso 0.4.5 (needs bench/_venvs/rhapso045)")
    ap.add_argument("--max-iterations", type=int, default=10000, help="iterative solver cap (default 10,000)")
    ap.add_argument("--rhapso-max-iterations", type=int, default=None,
                    help="Rhapso solver iteration cap (default: --max-iterations)")
    ap.add_argument("--rhapso-timeout", type=float, default=900.0,
                    help="give up on one Rhapso solve after this many seconds (default 900)")
    args = ap.parse_args(argv)

    shape = (4, 4, 3) if args.small else (10, 10, 10)
    rows = []
    grids = {}
    for model, lam, solver in CASES:
        truth = model
        if truth not in grids:
            t0 = time.perf_counter()
            grids[truth] = make_grid(shape, truth, matches_per_link=args.matches, seed=1)
            print(f"generated {truth} grid {shape}: {len(grids[truth].links)} links "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        grid = grids[truth]
        params = SolverParams(
            model=model, lambda_value=lam, solver=solver, method="one_round", max_iterations=args.max_iterations
        )
        t0 = time.perf_counter()
        res = solve(grid.links, params, grid.views)
        dt = time.perf_counter() - t0
        rms = correction_rms(grid, res.corrections, gauge=model)
        rows.append((model, lam, solver, dt, res.report.iterations, res.report.final_error, rms, res.report.converged))
        print(f"  {model} {solver}: {dt:.2f} s", flush=True)

    print()
    print(f"grid {shape[0]}x{shape[1]}x{shape[2]} tiles, {len(grids['translation'].links)} links, "
          f"{args.matches} matches/link, one core")
    print(f"{'model':<12}{'lambda':>7}  {'solver':<10}{'time s':>9}{'iters':>8}{'error':>9}{'rms vs truth':>14}  converged")
    for model, lam, solver, dt, it, err, rms, conv in rows:
        print(f"{model:<12}{lam:>7.2f}  {solver:<10}{dt:>9.2f}{it:>8d}{err:>9.3f}{rms:>14.3f}  {conv}")
    if args.rhapso:
        it = args.rhapso_max_iterations or args.max_iterations
        print(f"\nrhapso 0.4.5 Solver (one core, max_iterations {it}; its XML + Parquet store written untimed):")
        print(f"{'grid truth':<12}{'run_type':<10}{'lambda':>7}{'time s':>9}{'peak MB':>9}{'rms vs truth':>14}"
              f"{'ours best s':>13}{'ratio':>8}")
        for truth, run_type, lam in RHAPSO_CASES:
            r = run_rhapso_solver(grids[truth], truth, run_type, lam, it, args.rhapso_timeout)
            ours = min(row[3] for row in rows if row[0] == truth)
            if "error" in r:
                print(f"{truth:<12}{run_type:<10}{lam:>7.2f}  not measured: {r['error']}")
                continue
            print(f"{truth:<12}{run_type:<10}{lam:>7.2f}{r['wall_s']:>9.2f}{r['peak_rss_mb']:>9.0f}"
                  f"{r['rms']:>14.3f}{ours:>13.2f}{r['wall_s'] / ours:>7.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
