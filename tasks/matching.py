"""Matching tasks: plan the pairs of a round, match one pair."""

from __future__ import annotations

from prefect import task

from rhapso_core.matching import MatchingParams
from rhapso_core.pipeline import match
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="plan-pairs", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def plan_pairs(xml_uri: str, pair_mode: str, group_by: list[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    return match.plan_pairs(xml_uri, pair_mode=pair_mode, group_by=group_by)


@task(
    name="match-pair",
    task_run_name="match-{view_a[1]}-{view_b[1]}",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)
def match_pair(xml_uri: str, store_uri: str, view_a, view_b, label: str, params: MatchingParams) -> match.PairRecord:
    # Not cached: it writes the pair's correspondences into the store, which a
    # cached result would not redo; a pair costs well under a second.
    return match.match_pair(xml_uri, store_uri, view_a, view_b, label, params)
