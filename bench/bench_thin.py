"""Accuracy of 2-D mosaics and thin stacks with default (auto) parameters (issue 24's acceptance).

Every cell is a generated grid (:func:`rhapso_core.synthetic.planar_mosaic.mosaic_params`):
single-plane tiles or thin stacks, with a translation, rigid or ~1 % affine true pose in the
plane. It is aligned in-process with every parameter on ``auto``
(:func:`rhapso_core.pipeline.inprocess.align_in_process`: what a user gets: resolution, a phase
round where auto chooses one, retries, the check after every round) and scored like ``rhapso score`` (RMS over tile corners and overlap centres, finest-axis voxels;
gauge rigid, affine for the affine truth). Targets: single planes <= 0.2 pixel, thin stacks
<= 0.3 voxel.

    python bench/bench_thin.py --out /tmp/thin                       # the matrix
    python bench/bench_thin.py --out /tmp/thin --grids 2x2,6x6 --truths affine --planes 1 --seeds 0,1
    python bench/bench_thin.py --out /tmp/thin --planes 1 --set alignment.prealign=off   # points only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def target(planes: int) -> float:
    return 0.2 if planes == 1 else 0.3


def run_cell(grid, planes, truth, seed, work: Path, overrides=()) -> dict:
    from rhapso_core.config import PipelineParams
    from rhapso_core.param_files import apply_overrides
    from rhapso_core.pipeline.inprocess import align_in_process
    from rhapso_core.synthetic.planar_mosaic import mosaic_params
    from rhapso_core.synthetic.scoring import score
    from rhapso_core.synthetic.write import write_dataset

    name = f"{grid[0]}x{grid[1]}-p{planes}-{truth}-s{seed}"
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    paths = write_dataset(folder / "data", mosaic_params(grid, planes=planes, truth=truth, seed=seed))
    t0 = time.perf_counter()
    run = align_in_process(str(paths.xml), str(folder / "run"),
                           PipelineParams.model_validate(apply_overrides({}, list(overrides))))
    sc = score(paths.ground_truth, run.xml, gauge="affine" if truth == "affine" else "rigid")
    res = {"cell": name, "grid": list(grid), "planes": planes, "truth": truth, "seed": seed,
           "rms": round(sc.rms_voxels, 3), "max": round(sc.max_voxels, 3),
           "nominal_rms": round(sc.nominal_rms_voxels, 3), "target": target(planes),
           "rounds": list(run.pairs_matched), "prealignment": run.resolution.prealignment.cause,
           "seconds": round(time.perf_counter() - t0, 1)}
    shutil.rmtree(folder, ignore_errors=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--grids", default="2x2,3x3,4x4,6x6")
    ap.add_argument("--truths", default="translation,rigid,affine")
    ap.add_argument("--planes", default="1,3,5,8")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.NAME=VALUE",
                    help="parameter override, as the CLI's --set (repeatable)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    for g in a.grids.split(","):
        grid = tuple(int(v) for v in g.split("x"))
        for planes in (int(v) for v in a.planes.split(",")):
            for truth in a.truths.split(","):
                for seed in (int(v) for v in a.seeds.split(",")):
                    r = run_cell(grid, planes, truth, seed, out, a.set)
                    flag = "ok" if r["rms"] <= r["target"] else "MISS"
                    print(f"{r['cell']:28s} rms {r['rms']:.3f} max {r['max']:.3f} nominal {r['nominal_rms']:.2f} "
                          f"{flag} {r['rounds']} {r['prealignment'] or '-'} "
                          f"{r['seconds']} s", flush=True)
                    with open(results_path, "a") as f:
                        f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.exit(main())
