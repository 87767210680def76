"""Fusion tasks: plan the output, fuse one work unit of blocks, build the pyramid."""

from __future__ import annotations

from prefect import task

from rhapso_core.fusion import FusionParams
from rhapso_core.pipeline import fuse
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="plan-fusion", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def plan_fusion(xml_uri: str, out_uri: str, params: FusionParams, overwrite: bool = False) -> fuse.FusionPlan:
    return fuse.plan_fusion(xml_uri, out_uri, params, overwrite=overwrite)


@task(name="fuse-unit", task_run_name="fuse-unit-{unit_index}", retries=3,
      retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def fuse_unit(xml_uri: str, plan: fuse.FusionPlan, unit_index: int, params: FusionParams) -> int:
    # Resumes by the block markers the fusion writes after each block's data.
    return fuse.fuse_unit(xml_uri, plan, unit_index, params)


@task(name="multiscale", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def build_levels(out_uri: str, params: FusionParams) -> list[str]:
    return fuse.build_levels(out_uri, params)


def unit_memory_bytes(plan: fuse.FusionPlan, unit_index: int, n_views_overlapping: int = 4) -> float:
    """Output block (float32 accumulators) plus the sources it reads, per work unit."""
    n = 0
    for box in plan.units[unit_index]:
        v = 1
        for a, b in box:
            v *= b - a
        n = max(n, v)
    return n * 4 * (3 + n_views_overlapping)
