"""The QC task: metrics and a self-contained HTML report computed from a run's outputs."""

from __future__ import annotations

from prefect import task

from rhapso_core.qc import build_report
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="qc-report", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def qc_report(
    input_xml: str, solved_xml: str, store: str, label: str | list[str], pair_records: list[dict] | None = None,
    solver_report: dict | None = None, fused: str | None = None, ground_truth: str | None = None,
    out_html: str | None = None, phase_links: list[dict] | None = None,
    verify_reports: list[dict | None] | None = None, resolved_params: str | None = None,
) -> dict:
    result = build_report(
        input_xml, solved_xml, store, label, pair_records=pair_records, solver_report=solver_report,
        fused_uri=fused, ground_truth=ground_truth, out_html=out_html, phase_links=phase_links,
        verify_reports=verify_reports, resolved_params=resolved_params,
    )
    # The metrics stay in the HTML; the flow keeps the verdict and where to look.
    return {k: result[k] for k in ("verdict", "reasons", "thresholds", "report_uri", "neuroglancer_url")}
