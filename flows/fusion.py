"""Fusion: fuse blocks -> multiscale pyramid, into an OME-Zarr."""

from __future__ import annotations

from flows.lean_flow import flow
from prefect_ray.context import remote_options

from flows import artifacts
from flows.params import resolve
from flows.pyramid import pyramid
from flows.runtime import choose_runtime, current_run_id, ray_session, stage_runner
from rhapso_core.config import PipelineParams
from rhapso_core.fusion import FusionParams
from rhapso_core.output_layout import fused_xml_path, parent
from rhapso_core.pipeline.results import FusionSummary
from rhapso_core.pipeline.run_lock import output_lock
from rhapso_core.pipeline.view_selection import ViewSelection
from tasks import fusion as fusion_tasks
from tasks.policies import ray_hints


@flow(name="fuse", log_prints=True)
def fusion_stage(
    xml: str, out: str, params: FusionParams, overwrite: bool = False, selection: ViewSelection | None = None,
) -> FusionSummary:
    """One task per (timepoint, channel) and work unit of chunk-aligned blocks, then the pyramid."""
    plan = fusion_tasks.plan_fusion(xml, out, params, overwrite, selection)
    futures = []
    for k in range(len(plan.slots)):
        for i in range(len(plan.units)):
            with remote_options(**ray_hints(fusion_tasks.unit_memory_bytes(plan, i, params))):
                futures.append(fusion_tasks.fuse_unit.submit(xml, plan, i, params, k))
    written = sum(artifacts.wait_with_progress(futures, "fusion work units"))
    levels = pyramid(out, params)
    xml_out = fusion_tasks.fused_xml(out, fused_xml_path(out))
    return FusionSummary(out, xml_out, list(plan.shape_zyx), written, len(plan.units) * len(plan.slots), levels,
                         sorted({s.timepoint for s in plan.slots}), sorted({s.channel for s in plan.slots}))


def intensity_xml_path(out: str) -> str:
    """``.../fused.ome.zarr`` -> ``.../fused.input.xml``: the input XML with the intensity correction a
    fusion run estimated (its coefficients in ``fused.input-intensity.n5`` beside it)."""
    return fused_xml_path(out)[:-4] + ".input.xml"


def run_fusion(xml: str, out: str, p: PipelineParams, overwrite: bool = False, estimate_intensity: bool = False) -> dict:
    """Fuse ``xml`` into ``out``; with ``estimate_intensity``, first estimate the intensity correction
    (written with a copy of the XML beside the output, never beside the input) and fuse that copy.
    Returns the run's JSON summary (:meth:`~rhapso_core.pipeline.results.FusionSummary.to_dict`)."""
    corrected = None
    if estimate_intensity:
        from tasks import intensity as intensity_tasks

        corrected = intensity_tasks.correct_intensity(xml, p.intensity, p.views, out_xml=intensity_xml_path(out))
        artifacts.intensity_note(corrected.to_dict())
        xml = corrected.xml
    summary = fusion_stage.with_options(task_runner=stage_runner(p.runtime))(xml, out, p.fusion, overwrite, p.views)
    if corrected is not None:
        summary.intensity = corrected.to_dict()
    artifacts.output_note("Fusion", [f"input: {xml}", f"fused OME-Zarr: {out}",
                                     f"BigStitcher XML of the fused image: {summary.xml}",
                                     f"shape (z, y, x): {summary.shape_zyx}",
                                     f"blocks written this run: {summary.blocks_written}"], key="fusion-output")
    return summary.to_dict()


@flow(name="fusion", log_prints=True)
def fusion(
    xml: str,
    out: str,
    params: PipelineParams | None = None,
    params_file: str | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    views: ViewSelection | None = None,
) -> dict:
    """Fuse the views of an (aligned) dataset into an OME-Zarr at ``out``: one image per
    (timepoint, channel) of the selected ``views`` (default all), axes t, c, z, y, x."""
    p = resolve(params, params_file, overrides, views)
    from flows.layout import clear_dead_fusion_temporaries, fusion_intensity_outputs, fusion_outputs, guard_outputs

    # intensity.enabled: estimated here from the input's overlaps (the alignment flow stores its
    # estimate with the aligned XML, which this flow then applies without it).
    outputs = fusion_outputs(out, "the output") + (fusion_intensity_outputs(out) if p.intensity.enabled else [])
    guard_outputs(xml, outputs, p.runtime.data_roots)
    p, executor = choose_runtime(xml, p, ("fusion", "multiscale"))
    # The fused image and its XML share a folder with whatever else is written there (a stitch,
    # an alignment, another fusion): one run at a time, as the alignment flow does.
    with output_lock(parent(out), run_id=current_run_id()) as lock, ray_session(p.runtime):
        clear_dead_fusion_temporaries(lock, out)
        summary = run_fusion(xml, out, p, overwrite, estimate_intensity=p.intensity.enabled)
    summary["executor"] = executor.to_dict()
    return summary
