"""Benchmark: match one view pair of 5,000 interest points per side, end to end.

The pair is a realistic point cloud: blob positions (Poisson-disk-like, at least
``--spacing`` apart) in an overlap box; B is an affine (small rotation and
scale) of A's shared points plus Gaussian jitter, and each side has its own
unshared points (``--extra`` of each side). Timed on one core (thread counts of
NumPy's BLAS, OpenMP and Numba are pinned to 1 before they load), warm (numba
kernels compiled by a first run that is not timed), median of ``--repeats``.

It prints candidates, inliers, how many inliers are right, the fit residual and
the model error against the truth, and the time of descriptors, RANSAC +
filter and the total.

``--rhapso`` also runs the published Rhapso 0.4.5 matching (its
``RansacMatching.get_candidates`` / ``compute_ransac`` / ``filter_inliers``)
on the same points in a subprocess, from a venv at ``bench/_venvs/rhapso045``
(created with ``python -m venv`` + ``pip install rhapso==0.4.5`` when absent).
Rhapso's RANSAC is a Python loop, so it runs ``--rhapso-iterations`` (default
200) and its time is extrapolated linearly to ``--iterations``; the figure is
marked as extrapolated. Rhapso always gates by ``search_radius`` (it has no
ungated mode), so our matcher is timed with the same radius as well.

Usage::

    python bench/bench_matching.py                  # ours only
    python bench/bench_matching.py --rhapso         # + Rhapso 0.4.5 for the ratio
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # a caller's own setting (a test process's numba threads) is kept

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhapso_core.matching import MatchingParams, match_descriptors, match_points, model_for  # noqa: E402
from rhapso_core.matching.ransac import ransac, robust_filter  # noqa: E402

VENV = ROOT / "bench" / "_venvs" / "rhapso045"


def blob_positions(rng, n, box, spacing):
    """``n`` positions uniform in ``box`` at least ``spacing`` apart (dart throwing in batches)."""
    pts = np.zeros((0, 3))
    while pts.shape[0] < n:
        cand = rng.uniform(0.0, 1.0, size=(2 * n, 3)) * box
        allp = np.vstack([pts, cand])
        close = cKDTree(allp).query_pairs(spacing, output_type="ndarray")
        drop = np.zeros(allp.shape[0], dtype=bool)
        for i, j in close[np.lexsort((close[:, 1], close[:, 0]))]:
            if not drop[i]:
                drop[j] = True
        pts = allp[~drop]
    return pts[:n]


def make_pair(seed, n, extra_fraction, box, spacing, jitter):
    rng = np.random.default_rng(seed)
    n_shared = int(round(n * (1.0 - extra_fraction)))
    n_extra = n - n_shared
    pts = blob_positions(rng, n_shared + 2 * n_extra, box, spacing)
    shared, own_a, own_b = pts[:n_shared], pts[n_shared : n_shared + n_extra], pts[n_shared + n_extra :]
    th = np.deg2rad(1.5)
    rot = np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0.0, 0.0, 1.0]])
    linear = rot @ np.diag([1.01, 0.995, 1.0])
    centre = box / 2
    truth = np.eye(4)
    truth[:3, :3] = linear
    truth[:3, 3] = centre + np.array([12.0, -7.0, 4.0]) - linear @ centre
    a = np.vstack([shared, own_a])
    b_shared = shared @ linear.T + truth[:3, 3] + rng.normal(0.0, jitter, size=shared.shape)
    b = np.vstack([b_shared, own_b @ linear.T + truth[:3, 3]])
    perm = rng.permutation(b.shape[0])
    b = b[perm]
    partner = np.full(a.shape[0], -1)
    partner[:n_shared] = np.argsort(perm)[:n_shared]
    return a, b, truth, partner


def run_ours(a, b, params, repeats):
    match_points(a, b, params)  # compile / load the numba kernels
    params = params.concrete()  # the breakdown calls the stages directly: "auto" fields as match_points resolves them
    totals, descs, ransacs = [], [], []
    result = None
    model = model_for(params)
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = match_points(a, b, params)
        totals.append(time.perf_counter() - t0)
        # The same stages again, separately, for the breakdown.
        t0 = time.perf_counter()
        cand = match_descriptors(
            a, b, params.num_neighbors, params.redundancy, params.significance, params.search_radius, params.descriptor
        )
        t1 = time.perf_counter()
        p, q = a[cand.idx_a], b[cand.idx_b]
        r = ransac(p, q, model, params.max_epsilon, params.min_inlier_ratio, params.model_min_matches,
                   params.num_iterations, params.seed)
        if r.ok:
            robust_filter(p, q, model, r.inliers, params.max_trust, params.model_min_matches, 0.01 * params.max_epsilon)
        t2 = time.perf_counter()
        descs.append(t1 - t0)
        ransacs.append(t2 - t1)
    return result, statistics.median(totals), statistics.median(descs), statistics.median(ransacs)


RHAPSO_SCRIPT = r"""
import json, sys, time
import numpy as np
from Rhapso.matching.ransac_matching import RansacMatching
cfg = json.loads(sys.argv[2])
d = np.load(sys.argv[1])
a, b = d["a"], d["b"]
m = RansacMatching(None, cfg["num_neighbors"], cfg["redundancy"], cfg["significance"], cfg["num_required_neighbors"],
                   "affine", cfg["inlier_threshold"], cfg["min_inlier_ratio"], cfg["num_iterations"],
                   cfg["model_min_inliers"], cfg["regularization_weight"], cfg["search_radius"], {}, None, "", 4)
pa = list(enumerate(a))
pb = list(enumerate(b))
t0 = time.perf_counter()
cand = m.get_candidates(pa, pb, "A", "B", "beads")
t1 = time.perf_counter()
inl, model = m.compute_ransac(cand)
t2 = time.perf_counter()
filt = m.filter_inliers(inl, model) if model is not None else []
t3 = time.perf_counter()
ia = [int(c[0]) for c in filt]
ib = [int(c[4]) for c in filt]
print(json.dumps({"candidates": len(cand), "ransac_inliers": len(inl), "inliers": len(filt),
                  "idx_a": ia, "idx_b": ib, "t_candidates": t1 - t0, "t_ransac": t2 - t1, "t_filter": t3 - t2,
                  "model": None if model is None else np.asarray(model).tolist()}))
"""


def ensure_rhapso_venv():
    py = VENV / "bin" / "python"
    if py.exists():
        return py
    VENV.parent.mkdir(parents=True, exist_ok=True)
    print(f"creating {VENV} and installing rhapso==0.4.5 ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "rhapso==0.4.5"], check=True)
    return py


def run_rhapso(a, b, params, iterations):
    py = ensure_rhapso_venv()
    cfg = {
        "num_neighbors": params.num_neighbors,
        "redundancy": params.redundancy,
        "significance": params.significance,
        "num_required_neighbors": params.num_required_neighbors,
        "inlier_threshold": params.max_epsilon,
        "min_inlier_ratio": params.min_inlier_ratio,
        "num_iterations": iterations,
        "model_min_inliers": params.model_min_matches,
        "regularization_weight": params.lambda_value,
        "search_radius": params.search_radius,
    }
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "points.npz"
        np.savez(f, a=a, b=b)
        env = dict(os.environ)
        out = subprocess.run([str(py), "-c", RHAPSO_SCRIPT, str(f), json.dumps(cfg)], capture_output=True,
                             text=True, env=env, cwd=tmp)
    if out.returncode != 0:
        raise RuntimeError(f"Rhapso run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=5000, help="points per side (default 5000)")
    ap.add_argument("--extra", type=float, default=0.25, help="fraction of each side's points not shared (0.25)")
    ap.add_argument("--box", type=float, nargs=3, default=[400.0, 400.0, 200.0], help="overlap box x y z (world units)")
    ap.add_argument("--spacing", type=float, default=5.0, help="minimum blob spacing (world units, default 5)")
    ap.add_argument("--jitter", type=float, default=0.3, help="Gaussian jitter of B's points per axis (default 0.3)")
    ap.add_argument("--iterations", type=int, default=10000, help="RANSAC iterations (default 10,000)")
    ap.add_argument("--search-radius", type=float, default=100.0, help="gating radius for the gated runs (100)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats, median reported (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rhapso", action="store_true", help="also run Rhapso 0.4.5 on the same points")
    ap.add_argument("--rhapso-iterations", type=int, default=200,
                    help="RANSAC iterations actually run by Rhapso; time is extrapolated to --iterations (200)")
    args = ap.parse_args(argv)

    box = np.asarray(args.box, dtype=np.float64)
    a, b, truth, partner = make_pair(args.seed, args.points, args.extra, box, args.spacing, args.jitter)
    print(f"pair: {len(a)} + {len(b)} points in a {box.tolist()} box, {args.extra:.0%} unshared per side, "
          f"jitter {args.jitter}/axis, B = affine(A) (1.5 deg, scale 1.01/0.995)")
    rows = []
    base = dict(num_iterations=args.iterations, seed=args.seed)
    runs = [
        ("ours, no gating", {}),
        (f"ours, search_radius {args.search_radius:g}", {"search_radius": args.search_radius}),
        # The default model is affine regularised toward rigid (lambda 0.1), which by design
        # does not follow the anisotropic scale exactly; unregularised it does.
        ("ours, affine lambda 0", {"regularization_model": "none"}),
    ]
    for label, extra in runs:
        params = MatchingParams(**base, **extra)
        m, total, t_desc, t_ransac = run_ours(a, b, params, args.repeats)
        right = int((partner[m.idx_a] == m.idx_b).sum()) if m.ok else 0
        shared = partner >= 0
        d = a[shared] @ (m.model[:3, :3] - truth[:3, :3]).T + (m.model[:3, 3] - truth[:3, 3])
        err = float(np.sqrt(np.mean(np.sum(d * d, axis=1))))
        rows.append((label, total))
        print(f"{label:32s} status {m.status:3s} candidates {m.n_candidates:5d} inliers {m.n_inliers:5d} "
              f"(right {right}) rms {m.rms:.3f} model-error {err:.4f} | descriptors {t_desc:.3f} s "
              f"ransac+filter {t_ransac:.3f} s total {total:.3f} s")
    if args.rhapso:
        params = MatchingParams(**base, search_radius=args.search_radius)
        r = run_rhapso(a, b, params, args.rhapso_iterations)
        scale = args.iterations / args.rhapso_iterations
        t_total = r["t_candidates"] + r["t_ransac"] * scale + r["t_filter"]
        right = sum(int(partner[i] == j) for i, j in zip(r["idx_a"], r["idx_b"]))
        print(f"{'rhapso 0.4.5, radius ' + format(args.search_radius, 'g'):32s} candidates {r['candidates']:5d} "
              f"inliers {r['inliers']:5d} (right {right}) | candidates {r['t_candidates']:.3f} s ransac "
              f"{r['t_ransac']:.2f} s for {args.rhapso_iterations} it. -> {r['t_ransac'] * scale:.1f} s for "
              f"{args.iterations} (extrapolated) filter {r['t_filter']:.3f} s total {t_total:.1f} s")
        ours = rows[1][1]
        print(f"speed-up (same radius, extrapolated Rhapso total / ours): {t_total / ours:.0f}x")


if __name__ == "__main__":
    main()
