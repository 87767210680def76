"""Phase-correlation stitching against ground truth, and against multiview-stitcher's.

For each generated dataset (varied tile size, overlap 10-30 %, stage error in multiples of the
matcher's default RANSAC inlier distance ``MatchingParams().max_epsilon``, anisotropic voxels)
and for 2-D / 3-D mosaics cut from the real cellfinder crop (../shared/fixtures/real), it runs
our phase round alone (``rhapso_core.pipeline.phase.phase_round``) and reports the RMS / max
error against the truth in finest-axis voxels and the wall time. ``--rigid`` also runs the phase
round as prealignment followed by one rigid interest-point round (solved with the phase links, as
the alignment flow does, and from the points only), beside the rigid round alone.
``--mvs`` runs multiview-stitcher's ``registration.register`` (its defaults: phase correlation)
on the same tiles in its own virtual environment ``bench/_venvs/mvstitcher`` (made on first use
with ``pip install multiview-stitcher``), scored the same way; its time counts the registration
call only (tiles already in memory), ours reads the overlaps from the OME-Zarr tiles.

    python bench/bench_phase.py [--rigid] [--mvs] [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhapso_core import transforms as tf  # noqa: E402
from rhapso_core.matching import MatchingParams  # noqa: E402
from rhapso_core.pipeline.dataset import load_dataset, open_view  # noqa: E402
from rhapso_core.pipeline.phase import phase_round  # noqa: E402
from rhapso_core.spimdata import save_xml  # noqa: E402
from rhapso_core.synthetic.mosaic import mosaic_error, write_mosaic  # noqa: E402
from rhapso_core.synthetic.params import SyntheticParams  # noqa: E402
from rhapso_core.synthetic.scoring import score  # noqa: E402
from rhapso_core.synthetic.write import write_dataset  # noqa: E402

DATA = ROOT / "bench" / "_data" / "phase"
MVS_VENV = ROOT / "bench" / "_venvs" / "mvstitcher"
PLANES = ROOT / ".." / "shared" / "fixtures" / "real" / "cellfinder_crop_planes" / "ch0"
R = MatchingParams().max_epsilon  # world units; the matcher's default acceptance distance


def generated_cases(quick: bool):
    cases = [
        ("gen 128x128x32 ov30% aniso4 err2R", dict(tile_size_xyz=(128, 128, 32), overlap=0.3, voxel_size_xyz=(0.5, 0.5, 2.0)), 2.0),
        ("gen 256x256x32 ov10% aniso4 err2R", dict(tile_size_xyz=(256, 256, 32), overlap=0.1, voxel_size_xyz=(0.5, 0.5, 2.0)), 2.0),
        ("gen 192x192x48 ov20% iso err1.5R", dict(tile_size_xyz=(192, 192, 48), overlap=0.2, voxel_size_xyz=(1.0, 1.0, 1.0)), 1.5),
        ("gen 256x192x24 ov15% aniso6 err2R", dict(tile_size_xyz=(256, 192, 24), overlap=0.15, voxel_size_xyz=(0.5, 0.5, 3.0)), 2.0),
    ]
    return cases[:2] if quick else cases


def _write_generated(name, kw, mult, seed):
    d = DATA / (name.replace(" ", "_").replace("%", "") + f"_x{mult:g}")
    err = mult * R
    p = SyntheticParams(grid=(3, 2, 1), jitter_voxels=(err, err, 2.0), n_levels=3, seed=seed, **kw)
    if (d / "ground_truth.json").exists():
        from rhapso_core.synthetic.write import DatasetPaths

        return DatasetPaths(d, d / "dataset.xml", d / "ground_truth.json", None, d / "images.ome.zarr", {})
    return write_dataset(d, p, overwrite=True)


def _mvs_python() -> Path | None:
    py = MVS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MVS_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "multiview-stitcher"], check=True)
    return py if py.exists() else None


def run_mvs(xml: Path, work: Path) -> tuple[Path, float] | None:
    """multiview-stitcher on the dataset's tiles; the solved XML (its transforms prepended) and its time."""
    py = _mvs_python()
    if py is None:
        return None
    sd = load_dataset(str(xml))
    work.mkdir(parents=True, exist_ok=True)
    tiles = []
    for v in sd.views():
        src = open_view(sd, v)
        arr = src.read(tuple((0, n) for n in src.level_shape(0)), 0)
        setup = sd.setup_of(v)
        vox = np.asarray(setup.voxel_size, dtype=np.float64)  # x y z um
        a2w = sd.view_to_world(v)
        unit = vox.min()  # the world frame is the finest voxel
        origin_um = a2w[:3, 3] * unit
        npy = work / f"t{v[0]}_s{v[1]}.npy"
        if arr.shape[0] == 1:
            np.save(npy, arr[0])
            tiles.append({"npy": str(npy), "spacing": {"y": vox[1], "x": vox[0]},
                          "translation": {"y": origin_um[1], "x": origin_um[0]}})
        else:
            np.save(npy, arr)
            tiles.append({"npy": str(npy), "spacing": {"z": vox[2], "y": vox[1], "x": vox[0]},
                          "translation": {"z": origin_um[2], "y": origin_um[1], "x": origin_um[0]}})
    job, out = work / "job.json", work / "mvs_out.json"
    job.write_text(json.dumps({"tiles": tiles}))
    r = subprocess.run([str(py), str(ROOT / "bench" / "mvs_phase_driver.py"), str(job), str(out)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("multiview-stitcher failed:", r.stderr[-2000:], file=sys.stderr)
        return None
    res = json.loads(out.read_text())
    solved = sd
    for v, aff in zip(sd.views(), res["affines"]):
        a = np.asarray(aff)
        unit = float(np.min(sd.setup_of(v).voxel_size))
        t_zyx = a[:-1, -1] / unit
        t_xyz = np.zeros(3)
        t_xyz[: len(t_zyx)] = t_zyx[::-1]
        solved = solved.with_prepended_transform(v, "multiview-stitcher", tf.translation(t_xyz))
    path = work / "mvs.xml"
    save_xml(solved, str(path))
    return path, float(res["seconds"])


def rigid_round(xml: str, out: str, store: str, anchors: dict | None = None):
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, match, solve

    p = PipelineParams()
    if not Path(store).exists():
        src_xml = xml
        for plan in detect.plan_views(src_xml, p.detection):
            parts = [detect.run_chunk(src_xml, plan.view, t, plan.params) for t in plan.tasks]
            detect.store_view(store, plan, detect.merge_view(plan, parts))
    m, s = p.round_params("rigid")
    recs = [match.match_pair(xml, store, a, b, p.detection.label, m) for a, b in match.plan_pairs(xml)]
    solve.solve_dataset(xml, store, p.detection.label, s, out, phase_anchors=anchors)
    return sum(r.ok for r in recs), len(recs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rigid", action="store_true", help="also prealignment + rigid vs rigid alone (1.5 R cases)")
    ap.add_argument("--mvs", action="store_true", help="also multiview-stitcher (own venv)")
    ap.add_argument("--quick", action="store_true", help="two generated datasets only")
    ap.add_argument("--error-mult", type=float, default=None,
                    help="stage error of every generated dataset in multiples of max_epsilon (default: per case)")
    ap.add_argument("--no-mosaics", action="store_true", help="skip the mosaics cut from the real crop")
    ap.add_argument("--out", default=str(DATA / "results.json"))
    a = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, kw, mult) in enumerate(generated_cases(a.quick)):
        if a.error_mult is not None:
            mult = a.error_mult
            name = name.rsplit(" err", 1)[0] + f" err{mult:g}R"
        ds = _write_generated(name, kw, mult, seed=100 + i)
        d = Path(ds.root)
        t0 = time.perf_counter()
        rec = phase_round(str(ds.xml), str(d / "phase.xml"))
        dt = time.perf_counter() - t0
        s = score(ds.ground_truth, str(d / "phase.xml"), gauge="translation")
        row = {"case": name, "stage_error_vox": mult * R, "nominal_rms": s.nominal_rms_voxels, "phase_rms": s.rms_voxels,
               "phase_max": s.max_voxels, "phase_s": dt, "links": f"{rec.n_ok}/{len(rec.links)}"}
        if a.rigid:
            store = str(d / "ip.zarr")
            ok0 = rigid_round(str(ds.xml), str(d / "rigid.xml"), store)
            # as the alignment flow runs [phase, rigid]: the rigid solve keeps the phase links
            anchors = {"xml": str(ds.xml), "links": [k.to_dict() for k in rec.links]}
            ok1 = rigid_round(str(d / "phase.xml"), str(d / "phase_rigid.xml"), store, anchors)
            rigid_round(str(d / "phase.xml"), str(d / "phase_rigid_points.xml"), store)
            row["rigid_alone_rms"] = score(ds.ground_truth, str(d / "rigid.xml")).rms_voxels
            row["phase_then_rigid_rms"] = score(ds.ground_truth, str(d / "phase_rigid.xml")).rms_voxels
            row["phase_then_rigid_points_only_rms"] = score(ds.ground_truth, str(d / "phase_rigid_points.xml")).rms_voxels
            row["rigid_pairs"] = f"{ok0[0]}/{ok0[1]} -> {ok1[0]}/{ok1[1]}"
        if a.mvs:
            got = run_mvs(ds.xml, d / "mvs")
            if got:
                row["mvs_rms"] = score(ds.ground_truth, str(got[0]), gauge="translation").rms_voxels
                row["mvs_s"] = got[1]
        rows.append(row)
        print(json.dumps(row), flush=True)
    files = [] if a.no_mosaics else sorted(glob.glob(str(PLANES / "*.tif")))
    if files:
        import tifffile

        stack = np.stack([tifffile.imread(f) for f in files])
        mosaics = [("real 2-D 3x3 200x160 ov15% err2R", stack[15], (3, 3), (200, 160), 0.15, (2 * R, 2 * R, 0), (2, 2, 5)),
                   ("real 3-D 2x2 300x240 ov12% aniso2.5 err2R", stack, (2, 2), (300, 240), 0.12, (2 * R, 2 * R, 2), (2, 2, 5))]
        for name, img, grid, tile, ov, err, vox in mosaics:
            d = DATA / name.replace(" ", "_").replace("%", "")
            shutil.rmtree(d, ignore_errors=True)
            truth = write_mosaic(d, img, grid, tile, ov, err, voxel_size_xyz=vox, seed=7, noise_sigma=20.0)
            t0 = time.perf_counter()
            rec = phase_round(str(truth.xml), str(d / "phase.xml"))
            dt = time.perf_counter() - t0
            e = mosaic_error(truth, d / "phase.xml")
            row = {"case": name, "stage_error_vox": 2 * R, "nominal_rms": e["nominal_rms"], "phase_rms": e["rms"],
                   "phase_max": e["max"], "phase_s": dt, "links": f"{rec.n_ok}/{len(rec.links)}"}
            if a.mvs:
                got = run_mvs(truth.xml, d / "mvs")
                if got:
                    row["mvs_rms"] = mosaic_error(truth, got[0])["rms"]
                    row["mvs_s"] = got[1]
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    worst = max(rows, key=lambda r: r["phase_rms"])
    print(f"worst phase-only RMS: {worst['phase_rms']:.3f} voxels ({worst['case']})")


if __name__ == "__main__":
    main()
