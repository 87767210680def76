"""Fusion tasks: plan the output, fuse one work unit of blocks, build the pyramid."""

from __future__ import annotations

from prefect import task

from rhapso_core.cost import fusion_unit_memory
from rhapso_core.fusion import FusionParams
from rhapso_core.pipeline import fuse
from rhapso_core.pipeline.fused_xml import write_fused_xml
from rhapso_core.pipeline.view_selection import ViewSelection
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="plan-fusion", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def plan_fusion(
    xml_uri: str, out_uri: str, params: FusionParams, overwrite: bool = False, selection: ViewSelection | None = None,
) -> fuse.FusionPlan:
    return fuse.plan_fusion(xml_uri, out_uri, params, overwrite=overwrite, selection=selection)


@task(name="fuse-unit", task_run_name="fuse-unit-s{slot_index}-{unit_index}", retries=3,
      retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def fuse_unit(xml_uri: str, plan: fuse.FusionPlan, unit_index: int, params: FusionParams, slot_index: int = 0) -> int:
    # Resumes by the block markers the fusion writes after each block's data.
    return fuse.fuse_unit(xml_uri, plan, unit_index, params, slot_index=slot_index)


@task(name="fused-xml", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def fused_xml(out_uri: str, xml_out: str) -> str:
    """A BigStitcher XML opening the fused image in the input's world frame."""
    write_fused_xml(out_uri, xml_out)
    return xml_out


@task(name="plan-pyramid", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def plan_pyramid(out_uri: str, params: FusionParams):
    return fuse.plan_pyramid(out_uri, params)


@task(name="downsample", task_run_name="downsample-{level.dst_path}-{index}", retries=3,
      retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def downsample(out_uri: str, level, blocks, index: int) -> int:
    # Resumes by the block markers written after each block's data.
    return fuse.downsample_unit(out_uri, level, blocks)


@task(name="finish-pyramid", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def finish_pyramid(out_uri: str, base_path: str, work) -> list[str]:
    return fuse.finish_pyramid(out_uri, base_path, work)


def unit_memory_bytes(plan: fuse.FusionPlan, unit_index: int, params: FusionParams) -> float:
    """The unit's memory hint (:func:`rhapso_core.cost.fusion_unit_memory`, as the planner's)."""
    return fusion_unit_memory(plan.units[unit_index], params)
