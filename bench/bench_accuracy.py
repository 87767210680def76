"""Accuracy matrix: alignment error against ground truth with default (auto) parameters.

Each cell is a generated dataset (``rhapso_core.synthetic``, or its real-volume mode
cutting ``../shared/fixtures/real/cellfinder_crop_planes`` into tiles) that differs from
the base dataset in ONE thing: tile size, overlap, stage error, anisotropy, noise and
brightness, specimen density, real texture, or the kind of true transform. Every cell
is aligned in-process (``rhapso_core.pipeline.inprocess``) three ways:

* ``auto``: the default parameters (every data-dependent value resolved per dataset);
* ``fixed``: the fixed defaults this project had before (dsxy 2, dsz 1, sigma 1.8,
  threshold 0.008, view min/max, max_epsilon 5, 12 inliers, no gating);
* ``hand``: the same with ``dsxy=1``, the hand setting the issue found to help.

and scored with ``rhapso score``'s metric (RMS displacement over tile corners and overlap
centres, finest-axis voxels, gauge removed). Resolution time is compared with the whole
alignment's.

    python bench/bench_accuracy.py --out /tmp/acc            # the full matrix
    python bench/bench_accuracy.py --out /tmp/acc --cells base,real-ch0 --modes auto
    python bench/bench_accuracy.py --report /tmp/acc/results.json   # reprint the table
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REAL = ROOT.parent / "shared" / "fixtures" / "real" / "cellfinder_crop_planes"
TARGET_RMS = 0.3  # voxels (0.5 in the dimmest, noisiest cells)

# The base dataset: small enough for a 2-core machine, every other cell differs in one thing.
BASE = dict(grid=(3, 2, 1), tile_size_xyz=(256, 256, 64), overlap=0.12, voxel_size_xyz=(0.5, 0.5, 2.0),
            jitter_voxels=(3.0, 3.0, 1.0), n_levels=3, seed=7)


@dataclass(frozen=True)
class Cell:
    name: str
    factor: str
    synth: dict = field(default_factory=dict)
    truth: str = "translation"  # translation, rigid or affine
    volume: str | None = None  # "ch0" / "ch1": real texture
    target: float = TARGET_RMS


TRUTH = {"translation": {}, "rigid": {"rotation_deg": 0.6},
         "affine": {"rotation_deg": 0.4, "scale_jitter": 0.01, "shear": 0.005}}
# The real crop: 30 planes of 510 x 667 at 5 x 2 x 2 um (z, y, x): tiles in its voxel grid.
REAL_SYNTH = dict(grid=(3, 2, 1), tile_size_xyz=(220, 200, 26), overlap=0.15, voxel_size_xyz=(2.0, 2.0, 5.0),
                  jitter_voxels=(4.0, 4.0, 0.5), n_levels=2, chunk_size_xyz=(128, 128, 32))

CELLS = [
    Cell("base", "base"),
    Cell("xy128", "tile size", dict(tile_size_xyz=(128, 128, 64))),
    Cell("z32", "tile size", dict(tile_size_xyz=(256, 256, 32))),
    Cell("overlap8", "overlap", dict(overlap=0.08, jitter_voxels=(2.0, 2.0, 1.0))),
    Cell("overlap30", "overlap", dict(overlap=0.30)),
    Cell("error2", "stage error", dict(jitter_voxels=(1.0, 1.0, 0.5))),
    Cell("error12", "stage error", dict(jitter_voxels=(6.0, 6.0, 1.0))),
    Cell("error30", "stage error (78 % of a 15 % overlap)", dict(jitter_voxels=(15.0, 15.0, 1.0), overlap=0.15)),
    Cell("aniso1", "anisotropy", dict(voxel_size_xyz=(0.5, 0.5, 0.5))),
    Cell("aniso5", "anisotropy", dict(voxel_size_xyz=(0.5, 0.5, 2.5))),
    Cell("dim", "noise/brightness", dict(blob_amplitude=(60.0, 400.0), fibre_amplitude=(20.0, 100.0),
                                         read_noise=6.0), target=0.5),
    Cell("bright", "noise/brightness", dict(blob_amplitude=(3000.0, 30000.0), fibre_amplitude=(1000.0, 6000.0))),
    Cell("sparse", "specimen density", dict(blob_density=60.0)),
    Cell("fibres", "specimen density", dict(blob_density=0.0, fibre_count=300)),
    Cell("dense", "specimen density", dict(blob_density=1000.0, margin_um=5.0)),
    # The objective's vignetting: 1 - v (u^2 + w^2) across a tile (0.2: 20 % darker at the middle of an
    # edge). A gain that changes across a blob moves its detected centre toward the brighter side,
    # in opposite directions in the two views of an overlap (docs/robustness.md).
    Cell("vignette20", "vignetting", dict(vignetting=0.2)),
    Cell("vignette40", "vignetting", dict(vignetting=0.4)),
    Cell("real-ch0", "real texture", dict(REAL_SYNTH), volume="ch0"),
    Cell("real-ch1", "real texture", dict(REAL_SYNTH), volume="ch1"),
    Cell("rigid", "truth", truth="rigid"),
    Cell("affine", "truth", truth="affine"),
    Cell("real-affine", "truth + real texture", dict(REAL_SYNTH), truth="affine", volume="ch0"),
    # the largest tiles last: a reduced run on a busy machine can stop before them
    Cell("z256", "tile size", dict(tile_size_xyz=(256, 256, 256), grid=(2, 2, 1))),
    Cell("xy768", "tile size", dict(tile_size_xyz=(768, 768, 64), grid=(2, 2, 1))),
]

FIXED = {"detection": {"dsxy": 2, "dsz": 1, "sigma": 1.8, "threshold": 0.008, "min_intensity": None,
                       "max_intensity": None},
         "matching": {"search_radius": None, "max_epsilon": 5.0, "model_min_matches": 12},
         # the fixed defaults had no prealignment; the in-process alignment now retries and checks as the flow does
         "alignment": {"prealign": "off"}}
HAND = {"detection": {**FIXED["detection"], "dsxy": 1}, "matching": dict(FIXED["matching"]),
        "alignment": dict(FIXED["alignment"])}
MODES = {"auto": {}, "fixed": FIXED, "hand": HAND}


def synth_params(cell: Cell):
    from rhapso_core.synthetic.params import SyntheticParams

    kw = dict(BASE)
    kw.update(cell.synth)
    kw.update(TRUTH[cell.truth])
    return SyntheticParams(**kw)


def make_dataset(cell: Cell, folder: Path, volume_root: Path = REAL):
    """``volume_root``: the folder holding ``cell.volume``'s planes (the tests pass their in-repository crop)."""
    from rhapso_core.synthetic.specimen import VolumeSpecimen, load_tiff_planes
    from rhapso_core.synthetic.write import write_dataset

    sp = synth_params(cell)
    specimen = None
    if cell.volume:
        if not (volume_root / cell.volume).is_dir():
            raise FileNotFoundError(f"{volume_root / cell.volume}: the real volume is absent")
        data = load_tiff_planes(volume_root / cell.volume)
        specimen = VolumeSpecimen.centred_on_grid(data, (5.0, 2.0, 2.0), sp)
    return write_dataset(folder, sp, specimen=specimen, overwrite=True)


def run_cell(cell: Cell, work: Path, modes=("auto", "fixed", "hand"), volume_root: Path = REAL) -> dict:
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline.inprocess import align_in_process
    from rhapso_core.synthetic.scoring import score

    data = work / cell.name / "data"
    t = time.perf_counter()
    paths = make_dataset(cell, data, volume_root)
    out = {"cell": cell.name, "factor": cell.factor, "truth": cell.truth, "target": cell.target,
           "generate_s": round(time.perf_counter() - t, 2)}
    gauge = "affine" if cell.truth == "affine" else "rigid"
    for mode in modes:
        p = PipelineParams.model_validate(MODES[mode])
        run = work / cell.name / mode
        shutil.rmtree(run, ignore_errors=True)
        r = align_in_process(str(paths.xml), str(run), p)
        s = score(paths.ground_truth, r.xml, gauge=gauge)
        out[mode] = {"rms": round(s.rms_voxels, 3), "max": round(s.max_voxels, 3),
                     "pairs_matched": list(r.pairs_matched), "seconds": {k: round(v, 2) for k, v in r.seconds.items()}}
        if mode == "auto":
            out["nominal_rms"] = round(s.nominal_rms_voxels, 3)
            out["resolved"] = r.resolution.summary()
            out["prealignment"] = r.resolution.prealignment.cause or "-"
        shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(work / cell.name, ignore_errors=True)
    return out


def report(results: list[dict]) -> str:
    lines = ["| cell | varied | truth | stage error RMS | auto RMS (max) | fixed defaults | hand-set dsxy=1 | "
             "auto pairs | prealignment | resolve / total s | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r.get("auto", {})
        f, h = r.get("fixed", {}), r.get("hand", {})
        ok = "yes" if a and a["rms"] <= r["target"] else "**no**"
        sec = a.get("seconds", {})
        lines.append(
            f"| {r['cell']} | {r['factor']} | {r['truth']} | {r.get('nominal_rms', '-')} | "
            f"{a.get('rms', '-')} ({a.get('max', '-')}) | {f.get('rms', '-')} | {h.get('rms', '-')} | "
            f"{', '.join(a.get('pairs_matched', []))} | {r.get('prealignment', '-')} | "
            f"{sec.get('resolve', '-')} / {sec.get('total', '-')} | "
            f"<= {r['target']} {ok} |")
    worst = max((r for r in results if "auto" in r), key=lambda r: r["auto"]["rms"] / r["target"], default=None)
    if worst:
        lines.append("")
        lines.append(f"worst cell (auto, relative to its target): {worst['cell']} {worst['auto']['rms']} voxels")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/rhapso-accuracy", help="work folder; results.json goes here")
    ap.add_argument("--cells", help="comma-separated cell names (default: all)")
    ap.add_argument("--modes", default="auto,fixed,hand", help="comma-separated of auto, fixed, hand")
    ap.add_argument("--report", help="reprint the table of a saved results.json")
    args = ap.parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    names = args.cells.split(",") if args.cells else [c.name for c in CELLS]
    unknown = set(names) - {c.name for c in CELLS}
    if unknown:
        ap.error(f"unknown cells {sorted(unknown)}")
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else []
    done = {r["cell"] for r in results}
    for c in CELLS:
        if c.name not in names:
            continue
        t = time.perf_counter()
        r = run_cell(c, work, tuple(args.modes.split(",")))
        if c.name in done:  # a re-run replaces the modes it ran, keeps the others
            old = next(x for x in results if x["cell"] == c.name)
            r = {**old, **r}
            results = [x for x in results if x["cell"] != c.name]
        results.append(r)
        saved.write_text(json.dumps(results, indent=1))
        print(f"{c.name}: {json.dumps({k: r[k] for k in r if k not in ('resolved',)})} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
