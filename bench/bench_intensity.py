"""Intensity correction against the generator's truth: seams and relative intensities.

Each cell is a generated dataset (``rhapso_core.synthetic``) with a gain per tile drawn in
``1 +- 0.15`` and 15 % vignetting, registered at its true poses (so only intensity is
measured), fused four ways:

* ``before``: as acquired;
* ``after``: with the correction :func:`rhapso_core.intensity.estimate_intensity` finds
  (defaults; the camera offset given as ``dark_level``, as a user gives the documented one);
* ``oracle``: with the true gains and flat field (what a perfect estimate reaches: the
  floor of each figure on this data);
* ``clean``: the same specimen and tiles acquired without gains or vignetting.

Figures (``tests/intensity/intensity_data.py``): the QC seam metrics of the fused image
(``ratio``: gradient at inner borders / elsewhere; ``step_ratio``: across borders / along
them) and the error of the fused intensities against the specimen's true relative
intensities (12 x 12 voxel columns, after one global scale: the gauge is free), median
and worst block. A seam "drop" is the excess over 1 before divided by the excess after.

    python bench/bench_intensity.py --out /tmp/int                        # the matrix
    python bench/bench_intensity.py --out /tmp/int --seeds 0 --grids 3x2x1 --specimens smooth
"""

from __future__ import annotations

import argparse
import itertools
import os
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests" / "intensity"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

from intensity_data import fuse_and_measure, make_dataset  # noqa: E402

TARGET_SEAM_DROP = 3.0
TARGET_ERROR = 0.02


def write_oracle(ds) -> None:
    """The true correction (gains about the camera offset, the generator's vignetting) as the dataset's."""
    from rhapso_core.intensity.model import FlatField, ViewIntensity
    from rhapso_core.intensity.store import default_container, write_coefficients

    gains = {v.view_id: v.intensity_gain for v in ds.truth.views}
    mean = float(np.mean(list(gains.values())))
    d, v = ds.params.camera_offset, ds.params.vignetting
    ff = FlatField(2, (-v, 0.0, -v), d)  # 1 - v (u^2 + w^2): terms u^2, u w, w^2
    maps = {k: ViewIntensity.affine(ds.params.tile_size_xyz, mean / g, d * (1 - mean / g), ff) for k, g in gains.items()}
    write_coefficients(default_container(ds.xml), maps)


def cell(work: Path, seed: int, grid, specimen: str, strategy: str) -> dict:
    from rhapso_core.intensity import IntensityParams, estimate_intensity, save_intensity
    from rhapso_core.spimdata import load_xml, save_xml

    over = {"blob_count": 0, "fibre_count": 0} if specimen == "smooth" else {}
    shutil.rmtree(work, ignore_errors=True)
    ds = make_dataset(work / "ds", seed=seed, grid=grid, **over)
    clean = make_dataset(work / "clean", seed=seed, grid=grid, tile_gain_spread=0.0, vignetting=0.0, **over)
    fig = {"before": fuse_and_measure(ds, ds.xml, correct=False, strategy=strategy)}
    sd = load_xml(ds.xml)
    # RHAPSO_INTENSITY_PARAMS: JSON overrides of the estimate's parameters (e.g. '{"dark_level": null}').
    params = IntensityParams(**{"dark_level": ds.params.camera_offset,
                                **json.loads(os.environ.get("RHAPSO_INTENSITY_PARAMS", "{}"))})
    t0 = time.perf_counter()
    sol = estimate_intensity(sd, params)
    seconds = time.perf_counter() - t0
    save_xml(save_intensity(sd, ds.xml, sol, params), ds.xml)
    fig["after"] = fuse_and_measure(ds, ds.xml, correct=True, strategy=strategy)
    write_oracle(ds)
    fig["oracle"] = fuse_and_measure(ds, ds.xml, correct=True, strategy=strategy)
    fig["clean"] = fuse_and_measure(clean, clean.xml, correct=False, strategy=strategy)
    shutil.rmtree(work, ignore_errors=True)
    out = {"seed": seed, "grid": "x".join(map(str, grid)), "specimen": specimen, "strategy": strategy,
           "estimate_s": round(seconds, 2),
           "flatfield": [round(c, 4) for f in sol.flatfields.values() for c in f.coefficients],
           "dark": [round(f.dark, 1) for f in sol.flatfields.values()],
           "flatfield_true": [-ds.params.vignetting, 0.0, -ds.params.vignetting]}
    for k, f in fig.items():
        out[k] = {"ratio": f.seam_ratio, "step_ratio": f.step_ratio, "error_median": f.error_median,
                  "error_max": f.error_max}
    for m in ("ratio", "step_ratio"):
        after = abs(out["after"][m] - 1.0)
        out[f"{m}_drop"] = abs(out["before"][m] - 1.0) / max(after, 1e-9)
        # Whether the seams are measurable at all: the brightness errors must stand out of the content
        # (clean) at least as far as the target asks (else no correction can show a 3x drop).
        out[f"{m}_visible"] = abs(out["before"][m] - 1.0) >= TARGET_SEAM_DROP * abs(out["clean"][m] - 1.0)
    return out


def report(rows: list[dict]) -> str:
    lines = [f"{'seed':>4} {'grid':>6} {'specimen':>9} {'fusion':>18} | {'ratio b/a/oracle/clean':>27} {'drop':>6} | "
             f"{'step b/a/oracle/clean':>27} {'drop':>6} | {'err med/max after':>17} {'oracle max':>10} | flat field"]
    for r in rows:
        def four(m):
            return "/".join(f"{r[k][m]:.3f}" for k in ("before", "after", "oracle", "clean"))
        lines.append(
            f"{r['seed']:>4} {r['grid']:>6} {r['specimen']:>9} {r['strategy']:>18} | {four('ratio'):>27} "
            f"{r['ratio_drop']:>5.1f}{'' if r['ratio_visible'] else '*'} | {four('step_ratio'):>27} "
            f"{r['step_ratio_drop']:>5.1f}{'' if r['step_ratio_visible'] else '*'} | "
            f"{100 * r['after']['error_median']:>6.2f}/{100 * r['after']['error_max']:>5.2f} % "
            f"{100 * r['oracle']['error_max']:>8.2f} % | {r['flatfield']} dark {r.get('dark')}")
    vis = [r for r in rows if r["step_ratio_visible"]]
    lines.append("(* seams not visible above the content: |before - 1| < 3 |clean - 1|; no drop can be shown)")
    lines.append(f"worst fused error (max block): {100 * max(r['after']['error_max'] for r in rows):.2f} % "
                 f"(target {100 * TARGET_ERROR:.0f} %); worst median {100 * max(r['after']['error_median'] for r in rows):.2f} %")
    if vis:
        lines.append(f"worst step_ratio drop where seams are visible: {min(r['step_ratio_drop'] for r in vis):.1f}x "
                     f"(target {TARGET_SEAM_DROP:.0f}x, {len(vis)} of {len(rows)} cells)")
    vis = [r for r in rows if r["ratio_visible"]]
    if vis:
        lines.append(f"worst ratio drop where seams are visible: {min(r['ratio_drop'] for r in vis):.1f}x ({len(vis)} cells)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="work folder; results.json is written there")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--grids", default="3x2x1,4x3x1")
    ap.add_argument("--specimens", default="smooth,textured")
    ap.add_argument("--strategies", default="avg_blend,closest_pixel_wins")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed, grid, spec, strat in itertools.product(
        [int(s) for s in args.seeds.split(",")], [tuple(int(x) for x in g.split("x")) for g in args.grids.split(",")],
        args.specimens.split(","), args.strategies.split(","),
    ):
        rows.append(cell(out / "work", seed, grid, spec, strat))
        print(report(rows[-1:]).splitlines()[1], flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
