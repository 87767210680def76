"""Stitch: alignment, then fusion of the aligned dataset."""

from __future__ import annotations

from flows.lean_flow import flow

from flows.alignment import run_alignment, run_qc
from flows.fusion import run_fusion
from flows.layout import alignment_outputs, clear_dead_run_temporaries, fusion_outputs, guard_outputs
from flows.params import resolve
from rhapso_core.pipeline.view_selection import ViewSelection
from flows.qc_failure import raise_if_qc_failed
from flows.runtime import choose_runtime, current_run_id, ray_session
from rhapso_core.config import PipelineParams
from rhapso_core.pipeline.dataset import xml_digest
from rhapso_core.pipeline.fuse import check_output_free
from rhapso_core.pipeline.publish import publish, remove_outputs, staged_name
from rhapso_core.output_layout import fused_xml_path, stitch_outputs
from rhapso_core.pipeline.run_lock import output_lock
from rhapso_core.pipeline.run_record import RunRecord, check_rerun, differences, shaping_params, write_record


@flow(name="stitch", log_prints=True)
def stitch(
    xml: str,
    out: str,
    params: PipelineParams | None = None,
    params_file: str | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    ground_truth: str | None = None,
    views: ViewSelection | None = None,
) -> dict:
    """Align ``xml`` and fuse the result; everything is written under the folder ``out``.

    ``views`` selects the views to process (channels, illuminations, tiles, angles,
    timepoints; default all), as ``params.views``.

    The QC report (``qc_report.html`` beside the aligned XML) covers detection,
    matching, the solve and the fused image; with ``ground_truth`` it also scores
    the alignment.
    """
    p = resolve(params, params_file, overrides, views)
    aligned, fused = stitch_outputs(out, xml)
    guard_outputs(xml, alignment_outputs(aligned, "the aligned XML") + fusion_outputs(fused, "the fused image"),
                  p.runtime.data_roots)
    check_output_free(fused, overwrite)  # someone's data at the fused path: refuse before writing anything
    # Other inputs or parameters than the run that filled the folder: refused now, not after
    # the alignment has replaced that run's XML.
    sha, shaping = xml_digest(xml), shaping_params(p)
    previous = check_rerun(out, xml, sha, shaping, overwrite)
    p, executor = choose_runtime(xml, p, ("detection", "matching", "solve", "fusion", "multiscale"))
    with output_lock(out, run_id=current_run_id()) as lock, ray_session(p.runtime):
        clear_dead_run_temporaries(lock, aligned, fused)
        if previous is not None and differences(previous, sha, shaping):
            # --overwrite of another run: its published results go first, so the folder
            # never shows them beside this run's.
            remove_outputs([aligned, fused_xml_path(fused), fused])
        record = RunRecord(xml, sha, shaping, "running")
        write_record(out, record)
        staged = staged_name(aligned)
        a = run_alignment(xml, aligned, p, qc=False, final_xml=staged)
        f = run_fusion(staged, fused, p, overwrite)
        a.output = publish(staged, aligned)
        write_record(out, RunRecord(xml, sha, shaping, "complete"))
        # a.input: the XML the alignment read (with an estimated flat field, its wrapped copy).
        qc = run_qc(a.input, a, p.detection.label, fused=fused, ground_truth=ground_truth)
    result = {"alignment": a.to_dict(), "fusion": f, "aligned_xml": aligned, "fused": fused, "qc": qc,
              "executor": executor.to_dict()}
    # A "fail" verdict fails the run after everything is written (exit 3 in the CLI).
    raise_if_qc_failed(xml, result["alignment"], qc, p.detection.dimensions, result)
    return result
