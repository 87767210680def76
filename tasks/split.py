"""Split-affine tasks: split the dataset, solve real and fake correspondences together."""

from __future__ import annotations

from prefect import task

from rhapso_core.pipeline.results import SolveOutcome
from rhapso_core.pipeline.solve import solve_dataset
from rhapso_core.solver import SolverParams
from rhapso_core.split import SplitParams, SplitResult, split_dataset
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="split-dataset", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def split(xml: str, split_xml: str, params: SplitParams, store: str, split_store: str) -> SplitResult:
    return split_dataset(xml, split_xml, params, store_uri=store, out_store_uri=split_store)


@task(name="solve-split", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def solve_split(split_xml: str, store: str, labels: list[str], params: SolverParams, out_xml: str) -> SolveOutcome:
    # Sub-views of one tile overlap by design and move together: a per-sub-view revert
    # would tear tiles apart, so the split solve is checked by the QC report only.
    return solve_dataset(split_xml, store, labels, params, out_xml, verify=None)
