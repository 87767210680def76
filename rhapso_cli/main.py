"""The ``rhapso`` command: one sub-command per stage or flow, the same core flags on each.

Every command takes ``--params FILE.yml`` (nested by stage, or flat with the
seed's names) and ``--set stage.name=value`` overrides. Bad input ends the
command with one line on stderr naming the file, element or parameter, exit
status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from flows.layout import check_not_input

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A one-line error for the user."""


def _params(args, extra: list[str] | None = None):
    from rhapso_core import param_files
    from rhapso_core.config import PipelineParams

    overrides = list(args.set or [])
    if getattr(args, "ray_address", None):
        overrides.append(f"runtime.ray_address={args.ray_address}")
    if getattr(args, "num_cpus", None):
        overrides.append(f"runtime.num_cpus={args.num_cpus}")
    if getattr(args, "no_ray", False):
        overrides.append("runtime.use_ray=false")
    overrides += extra or []
    return param_files.load(PipelineParams, args.params, overrides)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _check_out_free(path: str, overwrite: bool = False) -> None:
    from rhapso_core.io import fs_for

    fs, p = fs_for(path)
    if fs.exists(p) and not overwrite:
        raise CliError(f"{path}: output path already exists (choose another, or pass --overwrite)")


# --- commands ---------------------------------------------------------------------------


def cmd_synth(args) -> int:
    from rhapso_core.synthetic.write import write_dataset

    extra = []
    if args.grid:
        extra.append(f"synthetic.grid=[{','.join(_parse_grid(args.grid))}]")
    if args.seed is not None:
        extra.append(f"synthetic.seed={args.seed}")
    p = _params(args, extra)
    _check_out_free(os.path.join(args.out_dir, "dataset.xml"), args.overwrite)
    specimen = _volume_specimen(args, p.synthetic) if args.volume else None
    paths = write_dataset(args.out_dir, p.synthetic, specimen=specimen, overwrite=args.overwrite)
    _print({"xml": str(paths.xml), "ground_truth": str(paths.ground_truth), "images": str(paths.images_root)})
    return 0


def _volume_specimen(args, params):
    """A user's real volume (TIFF planes folder, TIFF stack or OME-Zarr) to cut into tiles."""
    from rhapso_core.io import open_image
    from rhapso_core.synthetic.specimen import VolumeSpecimen

    img = open_image(args.volume)
    shape = img.level_shape(0)
    data = img.read(((0, shape[0]), (0, shape[1]), (0, shape[2])))
    if args.volume_voxel_size:
        try:
            voxel = tuple(float(v) for v in args.volume_voxel_size.split(","))
        except ValueError:
            voxel = ()
        if len(voxel) != 3:
            raise CliError(f"--volume-voxel-size '{args.volume_voxel_size}': expected three numbers z,y,x (um)")
    else:
        voxel = tuple(img.voxel_size_zyx)
    return VolumeSpecimen.centred_on_grid(data, voxel, params)


def _parse_grid(text: str) -> list[str]:
    parts = text.lower().split("x")
    if len(parts) == 2:
        parts.append("1")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CliError(f"--grid '{text}': expected NxM or NxMxK with positive integers, e.g. 3x2x1")
    return parts


def cmd_xml(args) -> int:
    from rhapso_core.spimdata import load_xml, save_xml

    check_not_input(args.out, args.xml, "--out")
    sd = load_xml(args.xml)
    _check_out_free(args.out, args.overwrite)
    save_xml(sd, args.out)
    _print({"views": len(sd.views()), "setups": len(sd.setups), "timepoints": len(list(sd.timepoints or [])),
            "loader": type(sd.image_loader).__name__, "written": args.out})
    return 0


def cmd_score(args) -> int:
    from rhapso_core.synthetic.scoring import score

    s = score(args.ground_truth, args.solved, gauge=args.gauge)
    print(s.summary() if not args.json else s.to_json())
    return 0


def _preflight(xml: str):
    from rhapso_core.pipeline.preflight import check_dataset

    return check_dataset(xml)


def cmd_explain(args) -> int:
    """Print the parameters resolved for the dataset, with their reasons; runs no stage, writes nothing."""
    from rhapso_core.autoparams import resolve_parameters

    p = _params(args)
    _preflight(args.xml)
    res = resolve_parameters(args.xml, p)
    if getattr(args, "json", False):
        print(res.to_json())
    else:
        print(res.table())
    return 0


def cmd_align(args) -> int:
    from flows.alignment import alignment
    from flows.runtime import prefect_api

    if args.explain:
        return cmd_explain(args)
    if not args.out:
        raise CliError("--out is required (or --explain to print the resolved parameters only)")
    p = _params(args)
    _preflight(args.xml)
    out = args.out
    check_not_input(out, args.xml, "--out")
    _check_out_free(out, args.overwrite)
    with prefect_api():
        _print(alignment(args.xml, out, params=p))
    return 0


def cmd_fuse(args) -> int:
    from flows.fusion import fusion
    from flows.runtime import prefect_api

    p = _params(args)
    _preflight(args.xml)
    with prefect_api():
        _print(fusion(args.xml, args.out, params=p, overwrite=args.overwrite))
    return 0


def cmd_stitch(args) -> int:
    from flows.runtime import prefect_api
    from flows.stitch import stitch

    p = _params(args)
    _preflight(args.xml)
    with prefect_api():
        _print(stitch(args.xml, args.out, params=p, overwrite=args.overwrite))
    return 0


def cmd_detect(args) -> int:
    from flows.alignment import detection_stage
    from flows.layout import alignment_layout
    from flows.runtime import prefect_api, ray_session, stage_runner
    from rhapso_core.pipeline.detect import write_detected_xml
    from rhapso_core.pointstore import PointStore, export_n5

    p = _params(args)
    _preflight(args.xml)
    if args.out:
        check_not_input(args.out, args.xml, "--out")
        _check_out_free(args.out, args.overwrite)
    layout = alignment_layout(args.out or args.xml)
    store = args.store or layout["store"]
    with prefect_api(), ray_session(p.runtime):
        counts = detection_stage.with_options(task_runner=stage_runner(p.runtime))(args.xml, store, p.detection)
    result = {"store": store, "points": counts}
    if args.out:
        result["xml"] = write_detected_xml(args.xml, store, p.detection.label, args.out)
        export_n5(PointStore(store), layout["n5"], labels=[p.detection.label], on_invalid="skip")
        result["n5"] = layout["n5"]
    _print(result)
    return 0


def cmd_match_solve(args, solve_only: bool = False) -> int:
    from flows.alignment import match_and_solve_stage
    from flows.layout import alignment_layout
    from flows.runtime import prefect_api, ray_session, stage_runner
    from rhapso_core.pipeline import solve as solve_mod

    p = _params(args)
    _preflight(args.xml)
    store = args.store or alignment_layout(args.xml)["store"]
    m, s = p.round_params(args.model)
    check_not_input(args.out, args.xml, "--out")
    _check_out_free(args.out, args.overwrite)
    if solve_only:
        _print(solve_mod.solve_dataset(args.xml, store, p.detection.label, s, args.out))
        return 0
    with prefect_api(), ray_session(p.runtime):
        _print(match_and_solve_stage.with_options(task_runner=stage_runner(p.runtime))(
            args.xml, store, p.detection.label, m, s, args.out, args.model,
            p.alignment.pair_mode, list(p.alignment.group_by)))
    return 0


def cmd_qc(args) -> int:
    from flows.layout import alignment_layout
    from rhapso_core.qc import build_report

    p = _params(args)
    layout = alignment_layout(args.solved)
    store = args.store or layout["store"]
    result = build_report(
        args.input, args.solved, store, p.detection.label, fused_uri=args.fused,
        ground_truth=args.ground_truth, out_html=args.out, params=p.qc,
        resolved_params=layout["resolved_params"],
    )
    _print({k: result[k] for k in ("verdict", "reasons", "report_uri", "neuroglancer_url")})
    return 0 if result["verdict"] != "fail" or not args.strict else 1


def cmd_split(args) -> int:
    from flows.layout import alignment_layout
    from rhapso_core.split import split_dataset

    p = _params(args)
    _preflight(args.xml)
    check_not_input(args.out, args.xml, "--out")
    _check_out_free(args.out, args.overwrite)
    store = args.store or alignment_layout(args.xml)["store"]
    from rhapso_core.io import fs_for

    fs, path = fs_for(store)
    _print(split_dataset(args.xml, args.out, p.split, store_uri=store if fs.exists(path) else None).to_dict())
    return 0


def cmd_plan(args) -> int:
    from rhapso_core.planner import plan

    p = _params(args)
    report = plan(args.xml, cores=args.cores, memory_per_core_gb=args.memory_per_core, params=p,
                  price_per_core_hour=args.price_per_core_hour)
    if args.json:
        _print(report.to_dict())
    else:
        print(report.table())
    return 0


def cmd_multiscale(args) -> int:
    from rhapso_core.pipeline.fuse import build_levels

    p = _params(args)
    _print({"levels_added": build_levels(args.zarr, p.fusion)})
    return 0


def cmd_demo(args) -> int:
    from flows.runtime import prefect_api
    from flows.stitch import stitch
    from rhapso_core.synthetic.scoring import score
    from rhapso_core.synthetic.write import write_dataset

    extra = []
    if args.grid:
        extra.append(f"synthetic.grid=[{','.join(_parse_grid(args.grid))}]")
    p = _params(args, extra)
    out = Path(args.out).resolve()
    if args.xml:
        xml, truth = args.xml, args.ground_truth
    else:
        data = out / "data"
        if (data / "ground_truth.json").exists():
            print(f"reusing the generated dataset in {data}", file=sys.stderr)
            xml, truth = str(data / "dataset.xml"), str(data / "ground_truth.json")
        else:
            paths = write_dataset(data, p.synthetic)
            xml, truth = str(paths.xml), str(paths.ground_truth)
    _preflight(xml)
    with prefect_api():
        result = stitch(xml, str(out / "stitched"), params=p, overwrite=args.overwrite, ground_truth=truth)
    summary = {
        "dataset": xml,
        "aligned_xml": result["aligned_xml"],
        "fused": result["fused"],
        "interest_points": result["alignment"]["store"],
        "pairs_matched": [f"{r['pairs_matched']}/{r['pairs']}" for r in result["alignment"]["rounds"]],
        "qc_verdict": result["qc"]["verdict"],
        "qc_report": result["qc"]["report_uri"],
    }
    if truth:
        s = score(truth, result["aligned_xml"])
        summary["alignment_error_voxels"] = {
            "rms": round(s.rms_voxels, 3), "max": round(s.max_voxels, 3),
            "nominal_rms": round(s.nominal_rms_voxels, 3), "nominal_max": round(s.nominal_max_voxels, 3),
        }
    _print(summary)
    return 0


# --- parser -------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, runtime: bool = True) -> None:
    p.add_argument("--params", metavar="FILE.yml", help="parameter file (nested by stage, or flat with the seed's names)")
    p.add_argument("--set", action="append", metavar="STAGE.NAME=VALUE", help="override one parameter (repeatable)")
    if runtime:
        p.add_argument("--ray-address", help="Ray cluster address (default: a local Ray on this machine)")
        p.add_argument("--num-cpus", type=int, help="CPU cap for the local Ray")
        p.add_argument("--no-ray", action="store_true", help="run tasks in threads instead of Ray (debugging)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rhapso", description="Align and fuse tiled 3D microscopy datasets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's and Ray's logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generate a dataset with ground truth, stitch it, score it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--grid", help="tile grid NxMxK of the generated dataset (default 3x2x1)")
    p.add_argument("--xml", help="use this dataset instead of generating one")
    p.add_argument("--ground-truth", help="ground truth of --xml, for the score")
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write a synthetic dataset (OME-Zarr tiles, XML, ground truth)")
    p.add_argument("out_dir")
    p.add_argument("--grid", help="tile grid NxMxK (default 3x2x1)")
    p.add_argument("--seed", type=int)
    p.add_argument("--volume", help="image a real volume instead of the analytic specimen "
                   "(folder of TIFF planes, TIFF stack or OME-Zarr)")
    p.add_argument("--volume-voxel-size", metavar="Z,Y,X", help="the volume's voxel size in um (default: its metadata)")
    _common(p, runtime=False)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("align", help="alignment flow: detect -> match + solve per round")
    p.add_argument("xml")
    p.add_argument("--out", help="solved XML (required unless --explain)")
    p.add_argument("--explain", action="store_true",
                   help="print the parameters resolved for this dataset and why; run no stage, write nothing")
    p.add_argument("--json", action="store_true", help="with --explain: the full resolution as JSON")
    _common(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("fuse", help="fusion flow: fuse -> multiscale, to OME-Zarr")
    p.add_argument("xml")
    p.add_argument("--out", required=True, help="fused OME-Zarr")
    _common(p)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("stitch", help="alignment then fusion")
    p.add_argument("xml")
    p.add_argument("--out", required=True, help="output folder")
    _common(p)
    p.set_defaults(func=cmd_stitch)

    p = sub.add_parser("detect", help="one stage: interest-point detection")
    p.add_argument("xml")
    p.add_argument("--out", help="write a copy of the XML listing the points (and interestpoints.n5 beside it)")
    p.add_argument("--store", help="point store (default: interestpoints.zarr beside --out, else beside the XML)")
    _common(p)
    p.set_defaults(func=cmd_detect)

    for name, solve_only, help_ in (("match", False, "one stage: matching then the solve of one round"),
                                    ("solve", True, "one stage: the global solve from stored matches")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("xml")
        p.add_argument("--out", required=True, help="solved XML")
        p.add_argument("--store", help="point store (default: interestpoints.zarr beside the XML)")
        p.add_argument("--model", choices=["translation", "rigid", "affine"], default="affine")
        _common(p)
        p.set_defaults(func=lambda a, so=solve_only: cmd_match_solve(a, so))

    p = sub.add_parser("split", help="one stage: split every view into overlapping sub-views (split layout XML)")
    p.add_argument("xml")
    p.add_argument("--out", required=True, help="split XML (its point store goes beside it)")
    p.add_argument("--store", help="interest points to carry over (default: interestpoints.zarr beside the XML, if any)")
    _common(p, runtime=False)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("multiscale", help="one stage: add pyramid levels to an OME-Zarr image")
    p.add_argument("zarr")
    _common(p, runtime=False)
    p.set_defaults(func=cmd_multiscale)

    p = sub.add_parser("qc", help="QC metrics and a self-contained HTML report of a run's outputs")
    p.add_argument("solved", help="the solved XML")
    p.add_argument("--input", required=True, help="the XML before alignment (nominal positions)")
    p.add_argument("--store", help="point store (default: interestpoints.zarr beside the solved XML)")
    p.add_argument("--fused", help="fused OME-Zarr, for the seam and projection figures")
    p.add_argument("--ground-truth", help="ground truth of a synthetic dataset, for the score table")
    p.add_argument("--out", help="report file (default: qc_report.html beside the solved XML)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the verdict is fail")
    _common(p, runtime=False)
    p.set_defaults(func=cmd_qc)

    p = sub.add_parser("plan", help="tasks, memory, bytes and predicted time per stage, from the XML alone")
    p.add_argument("xml")
    p.add_argument("--cores", type=int, required=True, help="cores of the Ray cluster")
    p.add_argument("--memory-per-core", type=float, required=True, metavar="GB", help="memory per core (GB)")
    p.add_argument("--price-per-core-hour", type=float, metavar="PRICE",
                   help="price of one core for one hour (e.g. an instance's hourly price / its vCPUs): "
                   "prints the cluster's cost for the predicted time")
    p.add_argument("--json", action="store_true")
    _common(p, runtime=False)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("score", help="alignment error of a solved XML against ground truth")
    p.add_argument("ground_truth")
    p.add_argument("solved")
    p.add_argument("--gauge", choices=["none", "translation", "rigid", "affine"], default="rigid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("xml", help="load, validate and save an XML (the compatibility check)")
    p.add_argument("xml")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_xml)
    return parser


@contextlib.contextmanager
def _command_env(verbose: bool):
    """Quieter logs and local-run defaults for one command, restored afterwards (main() is
    also called in-process, by tests and scripts, whose later logging must not change)."""
    defaults = {"RAY_AUTH_MODE": "disabled", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    added = [k for k in defaults if k not in os.environ]
    for k in added:
        os.environ[k] = defaults[k]
    quieted: list[tuple[logging.Handler, int]] = []
    ray_logger = logging.getLogger("ray")
    ray_level = ray_logger.level
    if not verbose:
        # Only the console gets quieter: Prefect's API handler still ships INFO logs to the
        # UI. Prefect configures its loggers once per process, so this goes through its
        # handlers, never through PREFECT_LOGGING_LEVEL (which would stick for the process).
        from prefect.logging.configuration import setup_logging

        setup_logging()
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
            for h in logging.getLogger(name).handlers:
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    quieted.append((h, h.level))
                    h.setLevel(max(h.level, logging.WARNING))
        ray_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
        for h, level in quieted:
            h.setLevel(level)
        ray_logger.setLevel(ray_level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _command_env(args.verbose):
            return args.func(args)
    except CliError as exc:
        print(f"rhapso {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError):
            msg = msg.strip("'\"")
        print(f"rhapso {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
