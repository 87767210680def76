"""Matching tasks: plan the pairs of a round, match them in batches."""

from __future__ import annotations

from prefect import task

from rhapso_core.config import AlignmentParams
from rhapso_core.cost import BATCHES_PER_SLOT, matching_batch_count, matching_batch_memory
from rhapso_core.matching import MatchingParams
from rhapso_core.detection import DetectionParams
from rhapso_core.pipeline.view_selection import ViewSelection
from rhapso_core.pipeline import match
from rhapso_core.pipeline.retry import RetryParams, retry_failed_pairs
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="plan-pairs", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def plan_pairs(
    xml_uri: str, pair_mode: str, group_by: list[str], alignment: AlignmentParams | None = None,
    selection: ViewSelection | None = None, channels: list[int] | None = None,
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    a = alignment or AlignmentParams()
    return match.plan_pairs(xml_uri, pair_mode=pair_mode, group_by=group_by, grouping=a.grouping,
                            timepoints=a.timepoints, reference_timepoint=a.reference_timepoint,
                            timepoint_range=a.timepoint_range, selection=selection, channels=channels)


@task(
    name="match-pairs",
    task_run_name="match-pairs-{batch_index}",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)
def match_pairs(xml_uri: str, store_uri: str, pairs, label: str, params: MatchingParams,
                batch_index: int = 0) -> list[match.PairRecord]:
    # Not cached: it writes the pairs' correspondences into the store, which a cached
    # result would not redo. A retry redoes the whole batch, which rewrites the same
    # correspondences.
    return [match.match_pair(xml_uri, store_uri, a, b, label, params) for a, b in pairs]


@task(name="retry-failed-pairs", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def retry_failed(xml_uri: str, store_uri: str, records: list, label: str, params: MatchingParams,
                 detection: DetectionParams, retry: RetryParams) -> list[match.PairRecord]:
    # One task, pairs one after the other: a retry rewrites its views' points, which
    # pairs sharing a view must not do at the same time.
    return retry_failed_pairs(xml_uri, store_uri, records, label, params, detection, retry)


def batch_pairs(pairs: list, slots: int, batches_per_slot: int = BATCHES_PER_SLOT) -> list[list]:
    """Deal ``pairs`` round-robin into ``min(len(pairs), slots * batches_per_slot)`` batches.

    A pair is tens of milliseconds of work on a typical tile (the benchmark's 1 GB dataset:
    0.05 s), less than what Prefect and Ray spend scheduling one task, so one task per pair
    spends most of a small cluster on orchestration. A few batches per worker keep every
    worker busy while the slowest batch stays short. Round-robin spreads costly pairs
    (many points) over the batches.
    """
    n = matching_batch_count(len(pairs), slots, batches_per_slot)
    return [pairs[i::n] for i in range(n)]


def batch_memory_bytes(batch: list, points: dict) -> float:
    """A batch's memory hint from its views' stored points (:func:`rhapso_core.cost.matching_batch_memory`,
    as the planner's); ``points``: :func:`rhapso_core.pipeline.match.stored_point_counts`."""
    return matching_batch_memory((points.get(tuple(a), 0), points.get(tuple(b), 0)) for a, b in batch)


def unbatch(results: list[list], n_pairs: int) -> list:
    """The records of :func:`batch_pairs`'s batches, back in the pairs' order."""
    n = len(results)
    out: list = [None] * n_pairs
    for i, batch in enumerate(results):
        out[i::n] = batch
    return out
