"""The ``rhapso`` command: one sub-command per stage or flow, the same core flags on each.

Every command takes ``--params FILE.yml`` (nested by stage, or flat with the
seed's names) and ``--set stage.name=value`` overrides. Bad input ends the
command with one line on stderr naming the file, element or parameter, exit
status 2, and nothing written. ``align`` and ``stitch`` whose QC verdict is "fail"
print their summary, name the cause on stderr and exit with status 3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

# SUMMARY_NAME: the full result of stitch and demo, beside their outputs (align and fuse: OUT.summary.json)
from rhapso_core.output_layout import SUMMARY_NAME

EXIT_BAD_INPUT = 2
# Exit status when the run completed but QC's verdict is "fail" (rhapso_core.qc.causes.EXIT_QC_FAILED).
EXIT_QC_FAILED = 3


class CliError(ValueError):
    """A one-line error for the user."""


def _params(args, extra: list[str] | None = None):
    early = getattr(args, "_early_params", None)
    if early is not None and not extra:  # validated by main() before the heavy imports
        return early
    from rhapso_core import param_files
    from rhapso_core.config import PipelineParams

    overrides = list(args.set or [])
    if getattr(args, "ray_address", None):
        overrides.append(f"runtime.ray_address={args.ray_address}")
    if getattr(args, "num_cpus", None) is not None:  # 0 is refused by the parameter's range, not ignored
        overrides.append(f"runtime.num_cpus={args.num_cpus}")
    if getattr(args, "no_ray", False):
        overrides.append("runtime.use_ray=false")
    if getattr(args, "ray", False):
        overrides.append("runtime.local_threads_max_cpu_s=0")
    for flag, name in _SELECTION_FLAGS:
        ids = getattr(args, flag, None)
        if ids is not None:
            overrides.append(f"views.{name}=[{','.join(str(i) for i in ids)}]")
    overrides += extra or []
    return param_files.load(PipelineParams, args.params, overrides)


# BigStitcher-Spark's selection flags (comma-separated ids, AND-combined) -> views.* parameters.
_SELECTION_FLAGS = (("channel_id", "channels"), ("illumination_id", "illuminations"), ("tile_id", "tiles"),
                    ("angle_id", "angles"), ("timepoint_id", "timepoints"))


def _ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer ids, got {text!r}") from None


def _command_run(args):
    from rhapso_cli.summary import CommandRun

    _started()
    return CommandRun(args.command, getattr(args, "json", False))


def _started() -> None:
    """The command has imported what it runs: the collector paused by ``cli()`` resumes (startup_gc)."""
    from rhapso_cli import startup_gc

    startup_gc.resume()


def _beside(out: str, suffix: str) -> str:
    base = out.rstrip("/")
    return (base[:-4] if base.endswith(".xml") else base) + suffix


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
    for name in ("channels", "illuminations", "timepoints"):
        if getattr(args, name) is not None:
            extra.append(f"synthetic.{name}={getattr(args, name)}")
    p = _params(args, extra)
    if args.volume:
        from rhapso_core.pipeline.input_guard import InputPath, check_outputs, canonical_path

        check_outputs([(args.out_dir, "the output folder")], [InputPath(canonical_path(args.volume), "--volume")])
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
    from flows.layout import check_not_input, guard_outputs
    from rhapso_core.spimdata import load_xml, save_xml

    check_not_input(args.out, args.xml, "--out")
    sd = load_xml(args.xml)
    guard_outputs(args.xml, [(args.out, "--out")])
    _check_out_free(args.out, args.overwrite)
    save_xml(sd, args.out)
    _print({"views": len(sd.views()), "setups": len(sd.setups), "timepoints": len(list(sd.timepoints or [])),
            "loader": type(sd.image_loader).__name__, "written": args.out})
    return 0


def cmd_import(args) -> int:
    from rhapso_core.tileconfig import import_tileconfig

    vox = tuple(float(v) for v in args.voxel_size.split(",")) if args.voxel_size else (1.0, 1.0, 1.0)
    if len(vox) != 3:
        raise CliError(f"--voxel-size: expected x,y,z, got {args.voxel_size!r}")
    _check_out_free(args.out, args.overwrite)
    written = import_tileconfig(args.tileconfig, args.out, voxel_size_xyz=vox, voxel_unit=args.voxel_unit)
    _print({"xml": str(written)})
    return 0


def cmd_export_tileconfig(args) -> int:
    from flows.layout import check_not_input
    from rhapso_core.tileconfig import export_tileconfig

    check_not_input(args.out, args.xml, "--out")
    _check_out_free(args.out, args.overwrite)
    config = export_tileconfig(args.xml, args.out, dim=args.dim)
    _print({"written": args.out, "dim": config.dim, "tiles": len(config.entries)})
    return 0


def cmd_score(args) -> int:
    from rhapso_core.synthetic.scoring import score

    s = score(args.ground_truth, args.solved, gauge=args.gauge)
    print(s.summary() if not args.json else s.to_json())
    return 0


def _check_rerun(out_dir: str, xml: str, p, overwrite: bool) -> None:
    """The flow checks this too; here it is refused before Prefect starts (one line, no run logs)."""
    from rhapso_core.pipeline.dataset import xml_digest
    from rhapso_core.pipeline.run_record import check_rerun, shaping_params

    check_rerun(out_dir, xml, xml_digest(xml), shaping_params(p), overwrite)


def _preflight(xml: str, p=None):
    from rhapso_core.pipeline.preflight import check_dataset, check_params_for_dataset

    sd = check_dataset(xml)
    if p is not None:
        check_params_for_dataset(sd, p)
    return sd


class QCFailedExit(Exception):
    """Raised by :func:`_qc_failure` to leave a command with EXIT_QC_FAILED."""


@contextlib.contextmanager
def _qc_failure(args, run=None, json_path: str | None = None, wrap=None):
    """A flow's QCFailedError: the summary it carries (passed through ``wrap`` into the
    command's own result form when given; ``run.finish`` to ``json_path`` when given, else
    printed as JSON), the cause on stderr, then exit 3."""
    from rhapso_core.qc.causes import QCFailedError

    try:
        yield
    except QCFailedError as exc:
        if run is not None and json_path is not None:
            run.finish(exc.summary if wrap is None else wrap(exc.summary), json_path)
        else:
            _print(exc.summary)
        print(f"rhapso {args.command}: QC verdict fail: {'; '.join(exc.causes)}", file=sys.stderr)
        raise QCFailedExit() from None


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
    if args.explain:
        return cmd_explain(args)
    from flows.layout import alignment_outputs, guard_outputs
    from flows.alignment import alignment
    from flows.runtime import prefect_api

    if not args.out:
        raise CliError("--out is required (or --explain to print the resolved parameters only)")
    p = _params(args)
    _preflight(args.xml, p)
    out = args.out
    guard_outputs(args.xml, alignment_outputs(out))
    _check_out_free(out, args.overwrite)
    run = _command_run(args)
    json_path = _beside(out, ".summary.json")
    with _qc_failure(args, run, json_path), prefect_api(), run.progress():
        result = alignment(args.xml, out, params=p)
    run.finish(result, json_path)
    return 0


def cmd_fuse(args) -> int:
    from flows.layout import fusion_intensity_outputs, fusion_outputs, guard_outputs
    from flows.fusion import fusion
    from flows.runtime import prefect_api

    p = _params(args)
    _preflight(args.xml, p)
    guard_outputs(args.xml, fusion_outputs(args.out) + (fusion_intensity_outputs(args.out) if p.intensity.enabled else []))
    run = _command_run(args)
    with prefect_api(), run.progress():
        result = fusion(args.xml, args.out, params=p, overwrite=args.overwrite)
    run.finish(result, _beside(args.out, ".summary.json"))
    return 0


def cmd_stitch(args) -> int:
    from flows.layout import alignment_outputs, fusion_outputs, guard_outputs
    from flows.runtime import prefect_api
    from flows.stitch import stitch, stitch_outputs

    p = _params(args)
    _preflight(args.xml, p)
    aligned, fused = stitch_outputs(args.out, args.xml)
    guard_outputs(args.xml, alignment_outputs(aligned, "the aligned XML it writes")
                  + fusion_outputs(fused, "the fused image it writes"))
    _check_rerun(args.out, args.xml, p, args.overwrite)
    run = _command_run(args)
    from rhapso_core.output_layout import summary_path

    json_path = summary_path(args.out)
    with _qc_failure(args, run, json_path), prefect_api(), run.progress():
        result = stitch(args.xml, args.out, params=p, overwrite=args.overwrite)
    run.finish(result, json_path)
    return 0


def cmd_detect(args) -> int:
    from flows.layout import guard_outputs
    from flows.alignment import detection_stage
    from flows.layout import alignment_layout
    from flows.runtime import prefect_api, ray_session, stage_runner
    from rhapso_core.pipeline.detect import write_detected_xml
    from rhapso_core.pointstore import PointStore, export_n5

    p = _params(args)
    _preflight(args.xml, p)
    layout = alignment_layout(args.out or args.xml)
    store = args.store or layout["store"]
    outputs = [(store, "--store" if args.store else "the point store it writes")]
    if args.out:
        outputs += [(args.out, "--out"), (layout["n5"], "the BigStitcher interest-point export it writes")]
    guard_outputs(args.xml, outputs)
    if args.out:
        _check_out_free(args.out, args.overwrite)
    _started()
    with prefect_api(), ray_session(p.runtime):
        counts = detection_stage.with_options(task_runner=stage_runner(p.runtime))(args.xml, store, p.detection, p.views)
    result = {"store": store, "points": counts}
    if args.out:
        result["xml"] = write_detected_xml(args.xml, store, p.detection.label, args.out)
        export_n5(PointStore(store), layout["n5"], labels=[p.detection.label], on_invalid="skip")
        result["n5"] = layout["n5"]
    _print(result)
    return 0


def cmd_match_solve(args, solve_only: bool = False) -> int:
    from flows.layout import guard_outputs
    from flows.alignment import match_and_solve_stage
    from flows.layout import alignment_layout
    from flows.runtime import prefect_api, ray_session, stage_runner
    from rhapso_core.pipeline import solve as solve_mod

    p = _params(args)
    _preflight(args.xml, p)
    store = args.store or alignment_layout(args.xml)["store"]
    m, s = p.round_params(args.model)
    guard_outputs(args.xml, [(args.out, "--out")])
    _check_out_free(args.out, args.overwrite)
    a = p.alignment
    if solve_only:
        _print(solve_mod.solve_dataset(args.xml, store, p.detection.label, s, args.out, grouping=a.grouping,
                                       timepoints=a.timepoints, reference_timepoint=a.reference_timepoint,
                                       selection=p.views).to_dict())
        return 0
    _started()
    with prefect_api(), ray_session(p.runtime):
        _print(match_and_solve_stage.with_options(task_runner=stage_runner(p.runtime))(
            args.xml, store, p.detection.label, m, s, args.out, args.model,
            a.pair_mode, list(a.group_by), verify=p.verify, detection=p.detection,
            pair_retry=p.pair_retry, alignment=a, selection=p.views, channels=p.detection.channels).to_dict())
    return 0


def cmd_qc(args) -> int:
    from flows.layout import guard_outputs
    from flows.layout import alignment_layout
    from rhapso_core.qc import build_report

    p = _params(args)
    layout = alignment_layout(args.solved)
    store = args.store or layout["store"]
    from rhapso_core.qc.report import default_report_uri

    report = args.out or default_report_uri(args.solved)
    guard_outputs(args.input, [(report, "--out" if args.out else "the QC report it writes")])
    result = build_report(
        args.input, args.solved, store, p.detection.label, fused_uri=args.fused,
        ground_truth=args.ground_truth, out_html=args.out, params=p.qc,
        resolved_params=layout["resolved_params"],
        neuroglancer_base_url=args.base_url, neuroglancer_serve_root=args.serve_root or (
            os.path.dirname(os.path.abspath(args.solved)) if args.base_url else None),
    )
    _print({k: result[k] for k in ("verdict", "reasons", "report_uri", "neuroglancer_url")})
    return 0 if result["verdict"] != "fail" or not args.strict else 1


def cmd_split(args) -> int:
    from flows.layout import guard_outputs
    from flows.layout import alignment_layout
    from rhapso_core.split import split_dataset
    from rhapso_core.split.dataset import default_split_store

    p = _params(args)
    _preflight(args.xml, p)
    guard_outputs(args.xml, [(args.out, "--out"), (default_split_store(args.out), "the split point store it writes")])
    _check_out_free(args.out, args.overwrite)
    store = args.store or alignment_layout(args.xml)["store"]
    from rhapso_core.io import fs_for

    fs, path = fs_for(store)
    _print(split_dataset(args.xml, args.out, p.split, store_uri=store if fs.exists(path) else None).to_dict())
    return 0


def cmd_plan(args) -> int:
    from rhapso_core.output_layout import alignment_layout
    from rhapso_core.planner import plan

    p = _params(args)
    report = plan(args.xml, cores=args.cores, memory_per_core_gb=args.memory_per_core, params=p,
                  price_per_core_hour=args.price_per_core_hour, read_pixels=not args.from_xml,
                  points_store=args.points_store or alignment_layout(args.xml)["store"])
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
    _preflight(xml, p)
    run = _command_run(args)
    with _qc_failure(args, run, str(out / SUMMARY_NAME), lambda result: {"dataset": xml, "stitch": result}), \
            prefect_api(), run.progress():
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
    if result["alignment"].get("reverted_tiles"):
        summary["reverted_tiles"] = result["alignment"]["reverted_tiles"]
    error = None
    if truth:
        # The QC report's gauge (affine after an affine round, else rigid), named, so the
        # two numbers agree and say what they are.
        gauge = "affine" if p.alignment.rounds[-1] == "affine" else "rigid"
        s = score(truth, result["aligned_xml"], gauge=gauge)
        error = {"gauge": gauge, "voxel_um": s.voxel_um,
                 **{k: round(getattr(s, k), 4) for k in ("rms_voxels", "max_voxels", "rms_um", "max_um",
                                                         "nominal_rms_voxels", "nominal_max_voxels")}}
        summary["alignment_error"] = error
    summary["stitch"] = result
    run.finish(summary, str(out / SUMMARY_NAME), score=error)
    return 0


# --- parser -------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, runtime: bool = True, writes: bool = True) -> None:
    p.add_argument("--params", metavar="FILE.yml", help="parameter file (nested by stage, or flat with the seed's names)")
    p.add_argument("--set", action="append", metavar="STAGE.NAME=VALUE", help="override one parameter (repeatable)")
    if runtime:
        p.add_argument("--ray-address", help="Ray cluster address (default: a local Ray on this machine)")
        p.add_argument("--num-cpus", type=int, help="CPU cap for the local Ray")
        ray = p.add_mutually_exclusive_group()
        ray.add_argument("--no-ray", action="store_true", help="run tasks in threads of this process, never Ray")
        ray.add_argument("--ray", action="store_true",
                         help="start a local Ray even for a small job (default: a job the planner puts under "
                              "runtime.local_threads_max_cpu_s core-seconds runs in threads)")
    if writes:
        p.add_argument("--overwrite", action="store_true", help="allow replacing an existing output")
    sel = p.add_argument_group("view selection (BigStitcher-Spark's flags; ids comma-separated, AND-combined)")
    for flag, name in _SELECTION_FLAGS:
        option = "--" + flag.replace("_id", "Id").replace("_", "")
        sel.add_argument(option, "--" + flag.replace("_", "-"), dest=flag, type=_ids, metavar="IDS",
                         help=f"process only these {name} (views.{name})")


def build_parser() -> argparse.ArgumentParser:
    from rhapso_core.model_registry import model_names  # registered models are the --model choices

    parser = argparse.ArgumentParser(prog="rhapso", description="Align and fuse tiled 3D microscopy datasets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's and Ray's logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generate a dataset with ground truth, stitch it, score it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--grid", help="tile grid NxMxK of the generated dataset (default 3x2x1)")
    p.add_argument("--xml", help="use this dataset instead of generating one")
    p.add_argument("--ground-truth", help="ground truth of --xml, for the score")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the summary "
                   "(otherwise it is written beside the outputs)")
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write a synthetic dataset (OME-Zarr tiles, XML, ground truth)")
    p.add_argument("out_dir", help="folder to write (dataset.xml, images.ome.zarr, ground_truth.json)")
    p.add_argument("--grid", help="tile grid NxMxK (default 3x2x1)")
    p.add_argument("--seed", type=int, help="random seed of the specimen, the stage errors and the camera noise "
                   "(synthetic.seed; the same seed writes the same dataset)")
    p.add_argument("--channels", type=int, help="channels per tile, each with its own specimen (default 1)")
    p.add_argument("--illuminations", type=int, help="illumination sides per tile, 1 or 2 (default 1)")
    p.add_argument("--timepoints", type=int, help="timepoints, the specimen drifting between them (default 1)")
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
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the summary "
                   "(otherwise it is written beside the outputs); with --explain, the full resolution")
    _common(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("fuse", help="fusion flow: fuse -> multiscale, to OME-Zarr")
    p.add_argument("xml")
    p.add_argument("--out", required=True, help="fused OME-Zarr")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the summary "
                   "(otherwise it is written beside the outputs)")
    _common(p)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("stitch", help="alignment then fusion")
    p.add_argument("xml")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the summary "
                   "(otherwise it is written beside the outputs)")
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
        p.add_argument("--model", choices=model_names(), default="affine")
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
    p.add_argument("--base-url", metavar="URL", help="where --serve-root is served over HTTP (e.g. by a web "
                   "server, or `rhapso view`'s port): the report's Neuroglancer link then works for local data")
    p.add_argument("--serve-root", metavar="DIR", help="the folder served at --base-url (default: the solved "
                   "XML's folder)")
    _common(p, runtime=False)
    p.set_defaults(func=cmd_qc)

    p = sub.add_parser("plan", help="tasks, memory, bytes and predicted time per stage, from the XML (and, for "
                       "`auto` parameters, a few crops of the images, as the alignment resolves them)")
    p.add_argument("xml")
    p.add_argument("--cores", type=int, required=True, help="cores of the Ray cluster")
    p.add_argument("--memory-per-core", type=float, required=True, metavar="GB", help="memory per core (GB)")
    p.add_argument("--price-per-core-hour", type=float, metavar="PRICE",
                   help="price of one core for one hour (e.g. an instance's hourly price / its vCPUs): "
                   "prints the cluster's cost for the predicted time")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (per stage, and the totals)")
    p.add_argument("--points-store", metavar="URI",
                   help="interest-point store the alignment will use, whose stored points size the matching "
                   "tasks exactly (default: interestpoints.zarr beside the XML, where `rhapso align` puts it; "
                   "for `rhapso stitch --out DIR`: DIR/interestpoints.zarr); without points there, "
                   "matching memory is estimated")
    p.add_argument("--from-xml", action="store_true",
                   help="resolve `auto` parameters from the XML alone, reading no pixels (the run resolves them "
                   "from the images, so detection's chunks and the rounds may differ from the plan's)")
    _common(p, runtime=False, writes=False)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("view", help="look at a result in Neuroglancer: serves the data on this machine and opens a link")
    p.add_argument("target", help="an XML (tiles placed by its registrations, before fusion), a stitch output "
                   "folder or a fused OME-Zarr (the fused image with the tiles)")
    p.add_argument("--fused", help="a fused OME-Zarr to show with an XML")
    p.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the link only")
    p.set_defaults(func=lambda a: __import__("rhapso_cli.view", fromlist=["cmd_view"]).cmd_view(a))

    p = sub.add_parser("score", help="alignment error of a solved XML against ground truth")
    p.add_argument("ground_truth")
    p.add_argument("solved")
    p.add_argument("--gauge", choices=["none", *model_names()], default="rigid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("import", help="Fiji Grid/Collection TileConfiguration.txt (+ its TIFFs) -> BigStitcher XML")
    p.add_argument("tileconfig")
    p.add_argument("--out", required=True, help="the XML to write")
    p.add_argument("--voxel-size", default=None, help="pixel size x,y,z (default 1,1,1)")
    p.add_argument("--voxel-unit", default="pixel", help="unit of --voxel-size (default pixel)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export-tileconfig", help="registered positions of an XML as a Fiji TileConfiguration")
    p.add_argument("xml")
    p.add_argument("--out", required=True, help="e.g. TileConfiguration.registered.txt")
    p.add_argument("--dim", type=int, choices=(2, 3), default=None, help="2 or 3 (default: 2 for single planes)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export_tileconfig)

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
    if not verbose:  # a failed task's error is reported once, by the command, not again by Ray
        defaults["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
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
        # Prefect set its logging up at import, once per process; setup_logging() would do it
        # again, re-rendering its logging template from all its settings: 0.26 s a command.
        from prefect.logging.configuration import ensure_logging_setup

        ensure_logging_setup()
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
            for h in logging.getLogger(name).handlers:
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    quieted.append((h, h.level))
                    h.setLevel(max(h.level, logging.WARNING))
        ray_logger.setLevel(logging.WARNING)
        from rhapso_cli.failures import quiet_run_errors

        quieted_filters = quiet_run_errors(h for h, _ in quieted)
    else:
        quieted_filters = []
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
        for h, level in quieted:
            h.setLevel(level)
        for h, f in quieted_filters:
            h.removeFilter(f)
        ray_logger.setLevel(ray_level)


#: Commands that run flows, so need a Prefect API (flows.local_api starts it early for them).
_FLOW_COMMANDS = ("align", "fuse", "stitch", "detect", "match", "demo")

#: What an interrupted command leaves for a resume (the one line it prints).
_KEPT = {
    "align": "the detected interest points and finished matching",
    "stitch": "the detected interest points, finished matching and finished fused blocks",
    "demo": "the generated dataset, detected interest points and finished fused blocks",
    "fuse": "the finished fused blocks",
    "detect": "the views detected so far",
    "match": "the pairs matched so far",
}


def _early_checks(args) -> None:
    """Arguments and parameters, checked before Prefect, Ray, zarr or numba are imported."""
    from rhapso_cli.early import check_xml_paths

    check_xml_paths(args)
    if hasattr(args, "params"):  # commands that take parameters
        args._early_params = _params(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rhapso_cli.interrupt import handling_signals

    try:
        _early_checks(args)
        runs_flows = args.command in _FLOW_COMMANDS and not getattr(args, "explain", False)
        if not runs_flows:  # the collector's start-up pause is for flow commands, which end it before their runs
            _started()
        if args.command == "view":  # no run, nothing to resume: Ctrl-C just stops serving
            return args.func(args)
        from flows import local_api

        if runs_flows:
            local_api.start_early()  # its start-up overlaps this command's imports and checks
            from flows import runtime

            runtime.ANNOUNCE_API = lambda line: print(f"  {line}", file=sys.stderr, flush=True)
            from rhapso_cli import kept_process

            forked = kept_process.describe()
            if forked:
                runtime.ANNOUNCE_API(forked)
        try:
            with _command_env(args.verbose), handling_signals(args.command, _KEPT.get(args.command, "finished work")):
                return args.func(args)
        finally:
            local_api.discard_early()  # started, but the command ended before running a flow
    except QCFailedExit:
        return EXIT_QC_FAILED
    except Exception as exc:  # every failure ends in one line (the traceback only under -v)
        from rhapso_cli.failures import report_failure

        return report_failure(args.command, exc, args.verbose)


def cli(argv: list[str] | None = None) -> int:
    """The ``rhapso`` program (console script and ``python -m``): ``main`` plus a process-level
    guard for the interpreter's teardown after the command returned."""
    launch = None
    if argv is None:  # the program itself, not a call from Python: a kept process may run it
        from rhapso_cli import kept_process

        launch = kept_process.Launch(sys.argv[1:])
        try:
            kept_process.idle_seconds()
        except ValueError as exc:  # RHAPSO_KEPT_PROCESS_IDLE_S that is not a number
            print(f"rhapso: {exc}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        rc = kept_process.run(launch.argv, launch)
        if rc is not None:
            return rc
    from rhapso_cli import startup_gc

    # Before any other import (the interrupt handling's too): until the command has imported what it
    # runs (_started), 0.4-0.6 s of its start.
    startup_gc.pause()
    from rhapso_cli.interrupt import exit_quietly_on_signal, guard_process_teardown

    guard_process_teardown()
    try:
        rc = main(argv)
    except KeyboardInterrupt:  # before the command's handler was installed or after it was removed
        print("rhapso: interrupted", file=sys.stderr, flush=True)
        rc = 130
    finally:
        startup_gc.resume()  # a command that ended before running anything

    if launch is not None:  # a flow command that ran here: a kept process for the next ones
        kept_process.start_for_next(launch)
    exit_quietly_on_signal(rc)
    # Prefect's background services report, while the interpreter exits, items still queued
    # for the API (events, logs of a run that has ended): a line after the command's own
    # last line that says nothing to the user.
    import logging

    for service in ("EventsWorker", "APILogWorker"):
        logging.getLogger(service).setLevel(logging.ERROR)
    # The interpreter's last garbage collection walks every object Prefect, pydantic and
    # numba made (0.4-0.6 s after `import flows.fusion` alone; 0.05 s frozen). The command's
    # files are closed and its output written by now; atexit handlers (Prefect's services,
    # logging) still run, and objects they create are still collected.
    import gc

    gc.freeze()
    return rc


if __name__ == "__main__":
    sys.exit(cli())
