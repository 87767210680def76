"""Discovery: start alignment for every newly acquired dataset, never twice for the same one."""

from __future__ import annotations

from prefect import get_run_logger
from flows.lean_flow import flow
from prefect.deployments import run_deployment

from flows import artifacts
from rhapso_core.pipeline.discovery import find_ready_datasets


@flow(name="discovery", log_prints=True)
def discovery(
    root: str,
    deployment: str = "alignment/prod",
    marker: str = "READY",
    params_file: str | None = None,
) -> list[dict]:
    """Scan ``root`` (local folder or ``s3://`` prefix) and start ``deployment`` per ready dataset.

    Each start carries an idempotency key made of the XML's URI and content hash,
    so the Prefect server returns the existing run for a dataset already started,
    whichever discovery run (scheduled or manual, concurrent or not) sees it again.
    """
    logger = get_run_logger()
    started = []
    for ds in find_ready_datasets(root, marker):
        parameters = {"xml": ds.xml}
        if params_file:
            parameters["params_file"] = params_file
        run = run_deployment(deployment, parameters=parameters, idempotency_key=ds.key, timeout=0, as_subflow=False)
        started.append({"xml": ds.xml, "flow_run": str(run.id), "state": run.state.name if run.state else None})
        logger.info("dataset %s -> flow run %s (%s)", ds.xml, run.id, started[-1]["state"])
    artifacts.output_note("Discovery", [f"{s['xml']}: run {s['flow_run']}" for s in started] or ["nothing ready"],
                          key="discovery")
    return started
