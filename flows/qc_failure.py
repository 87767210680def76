"""A failed QC verdict made loud: the real cause in the log, a Prefect event, a failed flow run.

An alignment or stitch whose QC verdict is "fail" has still written its outputs (the
aligned XML, the QC report), but it must not look like a success: the flow run logs the
upstream cause (:func:`rhapso_core.qc.causes.failure_causes`), emits the event
``rhapso.qc.failed`` (resource ``rhapso.dataset.<xml uri>``, payload: causes, QC reasons,
report URI) that a Prefect automation can trigger on, and raises
:class:`~rhapso_core.qc.causes.QCFailedError`, so the flow run ends Failed and the CLI
exits with status 3.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.events import emit_event

from rhapso_core.pipeline.dataset import load_dataset
from rhapso_core.qc.causes import QC_FAILED_EVENT, QCFailedError, failure_causes

__all__ = ["raise_if_qc_failed"]


def _planes(xml: str) -> dict[str, int]:
    sd = load_dataset(xml)
    return {f"{v[0]}/{v[1]}": int(sd.setup_of(v).size[2]) for v in sd.views()}


def raise_if_qc_failed(xml: str, alignment_summary: dict, qc: dict | None, dimensions: str, returned: dict) -> None:
    """Raise :class:`QCFailedError` (after logging and emitting the event) when ``qc``'s verdict is "fail".

    ``alignment_summary`` is the JSON form of :func:`flows.alignment.run_alignment`'s result; ``returned``
    is what the flow would have returned (carried by the error for the CLI).
    """
    if not qc or qc.get("verdict") != "fail":
        return
    try:
        planes = _planes(xml)
    except Exception:  # noqa: BLE001 - the cause is a best effort; the failure is raised regardless
        planes = {}
    causes = failure_causes({**alignment_summary, "qc": qc}, planes, dimensions)
    logger = get_run_logger()
    for c in causes:
        logger.error("QC verdict fail: %s", c)
    emit_event(
        event=QC_FAILED_EVENT,
        resource={"prefect.resource.id": f"rhapso.dataset.{xml}", "prefect.resource.name": xml},
        payload={"causes": causes, "reasons": qc.get("reasons", []), "report_uri": qc.get("report_uri")},
    )
    raise QCFailedError(causes, returned)
