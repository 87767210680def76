"""Matching tasks: plan the pairs of a round, match them in batches."""

from __future__ import annotations

from prefect import task

from rhapso_core.config import AlignmentParams
from rhapso_core.cost import batch_pairs  # noqa: F401  (the flows deal pairs into batches with it)
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


def unbatch(results: list[list], n_pairs: int) -> list:
    """The records of :func:`batch_pairs`'s batches, back in the pairs' order."""
    n = len(results)
    out: list = [None] * n_pairs
    for i, batch in enumerate(results):
        out[i::n] = batch
    return out
