"""The solve task: stored correspondences in, a new XML and a report out."""

from __future__ import annotations

from prefect import task

from rhapso_core.config import AlignmentParams
from rhapso_core.pipeline import solve
from rhapso_core.pipeline.results import SolveOutcome
from rhapso_core.pipeline.view_selection import ViewSelection
from rhapso_core.solver import SolverParams
from rhapso_core.verify import VerifyParams
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="solve", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def solve_round(
    xml_uri: str, store_uri: str, label: str, params: SolverParams, out_xml: str, verify: VerifyParams | None = None,
    phase_anchors: dict | list | None = None, alignment: AlignmentParams | None = None, selection: ViewSelection | None = None,
) -> SolveOutcome:
    a = alignment or AlignmentParams()
    return solve.solve_dataset(xml_uri, store_uri, label, params, out_xml, verify=verify, phase_anchors=phase_anchors,
                               grouping=a.grouping, timepoints=a.timepoints,
                               reference_timepoint=a.reference_timepoint, selection=selection)
