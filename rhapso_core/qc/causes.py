"""Why an alignment failed QC, in words a user can act on, and the error that carries it.

QC's reasons say which threshold a result broke ("t0 s1: no used link"); the cause says
what went wrong upstream to produce it: views without interest points (and why: a
single plane detected in 3-D, an empty tile), pairs that did not match (and how they
failed), views left unconstrained. :func:`failure_causes` reads them from an alignment
summary; :class:`QCFailedError` carries the causes and the summary out of a flow, and
the CLI turns it into exit status :data:`EXIT_QC_FAILED`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

__all__ = ["EXIT_QC_FAILED", "QC_FAILED_EVENT", "QCFailedError", "failure_causes"]

#: Exit status of ``rhapso align`` / ``stitch`` when the QC verdict is "fail" (bad input is 2).
EXIT_QC_FAILED = 3
#: The Prefect event an alignment or stitch flow run emits when its QC verdict is "fail".
QC_FAILED_EVENT = "rhapso.qc.failed"


class QCFailedError(RuntimeError):
    """The run finished and wrote its outputs, but QC's verdict is "fail".

    ``causes``: one line each, most upstream first; ``summary``: what the flow would
    have returned (outputs, QC verdict and reasons).
    """

    def __init__(self, causes: list[str], summary: dict):
        super().__init__("QC verdict fail: " + "; ".join(causes))
        self.causes = list(causes)
        self.summary = summary


def _names(views, limit: int = 4) -> str:
    shown = ", ".join(views[:limit])
    return shown + (f" and {len(views) - limit} more" if len(views) > limit else "")


def failure_causes(
    summary: Mapping,
    planes: Mapping[str, int] | None = None,
    detection_dimensions: str = "auto",
) -> list[str]:
    """The upstream causes of a failed alignment, most upstream first.

    Parameters
    ----------
    summary : mapping
        An alignment summary: ``detection`` ({"tp/setup": points}), ``rounds`` (each with
        ``pair_records`` and ``solver_report``) and ``qc`` (``reasons``).
    planes : mapping "tp/setup" -> int, optional
        Planes (z size) of each view, to tell a single-plane view from an empty one.
    detection_dimensions : str
        The ``detection.dimensions`` the run used.

    Returns
    -------
    list of str
        Never empty: without a recognisable upstream cause, QC's own "fail" reasons.
    """
    causes: list[str] = []
    counts = dict(summary.get("detection") or {})
    planes = dict(planes or {})
    empty = sorted(v for v, n in counts.items() if not n)
    if empty:
        flat = [v for v in empty if planes.get(v, 99) < 3]
        if flat and detection_dimensions == "3d":
            causes.append(f"single-plane views: no 3-D detection possible ({len(flat)} view(s) with fewer than 3 "
                          f"planes: {_names(flat)}; use detection.dimensions=auto or 2d)")
        rest = [v for v in empty if v not in flat or detection_dimensions != "3d"]
        if rest:
            causes.append(f"no interest points in {len(rest)} of {len(counts)} view(s) ({_names(rest)}): the tiles "
                          "are empty, blank or dimmer than detection.threshold")
    rounds = summary.get("rounds") or []
    if rounds:
        last = rounds[-1]
        records = last.get("pair_records") or []
        failed = [r for r in records if r.get("status") != "ok"]
        if records and failed:
            kinds = Counter(r.get("status", "?") for r in failed)
            example = next((r.get("reason") for r in failed if r.get("reason")), "")
            causes.append(f"{len(failed)} of {len(records)} pair(s) not matched ("
                          + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
                          + (f"; e.g. {example}" if example else "") + ")")
        report = (last.get("solver_report") or {}).get("report") or {}
        loose = report.get("unconnected_views") or []
        if loose and max(len(counts), len(report.get("tile_errors") or []) + len(loose)) > 1:
            names = [f"{v['timepoint']}/{v['setup']}" for v in loose]
            causes.append(f"{len(names)} view(s) without any used link keep their metadata position ({_names(names)})")
    if not causes:
        qc = summary.get("qc") or {}
        causes = [f"{r['stage']}: {r['message']}" for r in qc.get("reasons", []) if r.get("level") == "fail"]
    return causes or ["QC verdict fail"]
