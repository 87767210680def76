"""Detection tasks: plan per dataset, detect per chunk (cached), merge and store per view.

Each task wraps the :mod:`rhapso_core.pipeline.detect` function of its name (``plan_views``,
``run_chunk``); ``rhapso_core.detection.view``'s ``plan_detection`` / ``detect_chunk`` are the
one-view, one-source functions those call.
"""

from __future__ import annotations

from prefect import task

from rhapso_core.cost import detection_chunk_memory
from rhapso_core.detection import ChunkTask, DetectionParams, InterestPoints
from rhapso_core.detection.view import chunk_halo
from rhapso_core.pipeline import detect
from rhapso_core.pipeline.view_selection import ViewSelection
from tasks.policies import CACHE_POLICY, RETRY_DELAYS, retry_transient


@task(name="plan-detection", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def plan_views(
    xml_uri: str, xml_sha256: str, params: DetectionParams, selection: ViewSelection | None = None,
) -> list[detect.ViewDetectionPlan]:
    return detect.plan_views(xml_uri, params, selection=selection)


@task(
    name="detect-chunk",
    task_run_name="detect-t{view[0]}-s{view[1]}",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=CACHE_POLICY,
    persist_result=True,
)
def run_chunk(xml_uri: str, xml_sha256: str, view: tuple[int, int], chunk: ChunkTask, params: DetectionParams) -> InterestPoints:
    return detect.run_chunk(xml_uri, view, chunk, params)


@task(name="store-points", task_run_name="store-points-t{plan.view[0]}-s{plan.view[1]}",
      retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def store_points(store_uri: str, plan: detect.ViewDetectionPlan, parts: list[InterestPoints]) -> int:
    return detect.store_view(store_uri, plan, detect.merge_view(plan, parts))


def chunk_memory_bytes(chunk: ChunkTask, params: DetectionParams) -> float:
    """The chunk's memory hint (:func:`rhapso_core.cost.detection_chunk_memory`, as the planner's)."""
    return detection_chunk_memory(chunk.core_box, chunk_halo(params))
