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

``--rhapso`` runs the published ``rhapso==0.4.5`` solver on the same matches in
a separate virtual environment, ``bench/_venvs/rhapso045`` (made with
``python -m venv bench/_venvs/rhapso045 && bench/_venvs/rhapso045/bin/pip install
rhapso==0.4.5``). Rhapso's solver reads BigStitcher XML plus N5 interest points
and matches from disk rather than arrays, so driving it needs a dataset written in
that layout; this script does not write one yet and reports the comparison as
not run (see the report in the solver hand-off).
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

from rhapso_core.solver import SolverParams, solve  # noqa: E402
from rhapso_core.solver.synthetic import correction_rms, make_grid  # noqa: E402

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
        venv = Path(__file__).resolve().parent / "_venvs" / "rhapso045"
        state = "present" if (venv / "bin" / "python").exists() else "missing"
        print(f"\nrhapso 0.4.5: venv {state} at {venv}; comparison not run "
              "(its solver needs an XML + N5 dataset on disk; see the module docstring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
