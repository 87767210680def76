"""QC artifacts attached to flow runs (tables a person reads in the Prefect UI).

Against the local API a command runs, each is written in the background
(:mod:`flows.artifact_writer`): the flow does not wait for the API, and a top-level flow run
waits for its writes before it ends; against any other API, at once, as before.
"""

from __future__ import annotations

import contextvars
import threading
import time

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows import artifact_writer


def _key(text: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def points_table(counts: dict, label: str) -> None:
    rows = [{"timepoint": v[0], "setup": v[1], "label": label, "points": n} for v, n in sorted(counts.items())]
    artifact_writer.submit("detection-points-per-view", create_table_artifact, rows, key="detection-points-per-view",
                           description="Interest points per view")


def resolved_table(resolution) -> None:
    """The parameters resolved for the dataset, with where each came from and why."""
    rows = [{"parameter": v.key, "value": v.value if not isinstance(v.value, float) else round(v.value, 6),
             "source": v.source, "reason": v.reason} for v in resolution.values]
    rows.append({"parameter": "prealignment", "value": resolution.prealignment.chosen, "source": "auto",
                 "reason": resolution.prealignment.reason})
    artifact_writer.submit("resolved-parameters", create_table_artifact, rows, key="resolved-parameters",
                           description=f"Parameters resolved for the dataset ({resolution.seconds:.1f} s)")


def pairs_table(records: list, round_name: str) -> None:
    rows = []
    for r in records:
        d = r.to_dict()
        rows.append({
            "view a": f"{d['view_a'][0]}/{d['view_a'][1]}", "view b": f"{d['view_b'][0]}/{d['view_b'][1]}",
            "points a": d["n_points_a"], "points b": d["n_points_b"], "candidates": d["n_candidates"],
            "inliers": d["n_inliers"], "rms": None if d["rms"] is None else round(d["rms"], 3),
            "status": d["status"],
            "retried": ", ".join(f"{e['step']}: {e['status']}" for e in d.get("escalations", [])),
            "reason": d.get("reason", ""),
        })
    key = _key(f"matching-{round_name}")
    artifact_writer.submit(key, create_table_artifact, rows, key=key, description=f"Matches per pair ({round_name} round)")


def solver_table(result: dict, round_name: str) -> None:
    """Per-link residuals before/after and per-tile errors of one solve."""
    rep = result.get("report", {})
    links = [
        {"a": f"{l['a']['timepoint']}/{l['a']['setup']}", "b": f"{l['b']['timepoint']}/{l['b']['setup']}",
         "matches": l["n_matches"], "mean before": _round(l["mean_before"]), "mean after": _round(l["mean_after"]),
         "max after": _round(l["max_after"]), "status": l["status"]}
        for l in rep.get("links", [])
    ]
    if links:
        key = _key(f"solver-{round_name}-links")
        artifact_writer.submit(key, create_table_artifact, links, key=key, description=f"Per-link residuals ({round_name})")
    tiles = [{"timepoint": t["timepoint"], "setup": t["setup"], "error": _round(t["error"])} for t in rep.get("tile_errors", [])]
    if tiles:
        key = _key(f"solver-{round_name}-tiles")
        artifact_writer.submit(key, create_table_artifact, tiles, key=key, description=f"Per-tile error ({round_name})")
    removed = rep.get("removed_links") or []
    md = [f"### Solve ({round_name}): {result.get('transform_name')}", "", "| item | value |", "|---|---|"]
    for k in ("final_error", "max_error", "iterations", "converged", "method", "solver"):
        md.append(f"| {k} | {rep.get(k)} |")
    md.append(f"| links used | {result.get('n_links')} |")
    md += ["", f"Removed links: {len(removed)}"]
    md += [f"- {r['a']['setup']} - {r['b']['setup']} ({r['label']})" for r in removed[:50]]
    key = _key(f"solver-{round_name}")
    artifact_writer.submit(key, create_markdown_artifact, "\n".join(md), key=key, description=f"Solver summary ({round_name})")


def _round(v):
    return None if v is None else round(float(v), 4)


def output_note(title: str, lines: list[str], key: str) -> None:
    artifact_writer.submit(_key(key), create_markdown_artifact, "\n".join([f"### {title}", ""] + [f"- {ln}" for ln in lines]),
                           key=_key(key))


#: Least seconds between two writes of a progress artifact; the last value (all done) is always
#: written. Each write is an HTTP request of 10-100 ms in the flow's thread, and a stage writes once
#: per finished task: a stage of 500,000 tasks (fusion in the 130 TB plan below) would keep its
#: flow busy for hours writing them. Once a second is as often as a person reads a progress bar.
#: It is also when a stage's bar first appears: a stage done within it is written once, finished.
MIN_UPDATE_INTERVAL_S = 1.0


class Progress:
    """A progress artifact (0-100 %) updated as a stage's task futures finish (at most once every
    :data:`MIN_UPDATE_INTERVAL_S`, and when the last finishes); this process's listeners
    (:mod:`flows.progress`, the command line's display) hear of every one.

    The artifact is created :data:`MIN_UPDATE_INTERVAL_S` after the stage starts (by a timer, so a
    stage whose first task takes minutes still shows its bar at 0 %), or at the stage's end if that
    comes first: most stages of a small job end within a second, and their bar at 0 % followed by
    the same bar at 100 % was two requests, each a write the API server makes beside the job
    (a 6-tile stitch: 8 stages, 16 of its 29 artifact requests). Call :meth:`close` when the stage
    ends without finishing (an exception): the timer then writes nothing.

    Where the writes are made at once in the flow's thread (against any API but the local one a
    command runs, :mod:`flows.artifact_writer`), the bar is created at once, as before: no other
    thread then uses the flow run's API client.
    """

    def __init__(self, total: int, what: str):
        self.total = max(int(total), 1)
        self.done = 0
        self.what = what
        self.started = time.monotonic()
        self.id = None  # set by the writer thread, before it makes any of the updates queued after
        self._lock = threading.Lock()
        self._created = False  # its creation is queued (or made)
        self._closed = False
        self._written = self.started
        # The timer's thread writes in the stage's context: Prefect reads the flow run from it.
        context = contextvars.copy_context()
        self._timer = threading.Timer(MIN_UPDATE_INTERVAL_S, context.run, (self._write, False, True))
        self._timer.daemon = True
        if artifact_writer.queued():
            self._timer.start()
        else:
            self._write(final=False)
        self._tell()

    def _create(self, pct: float, description: str) -> None:
        self.id = create_progress_artifact(pct, description=description)

    def _update(self, pct: float, description: str) -> None:
        if self.id is not None:  # its creation failed (logged): nothing to update
            update_progress_artifact(self.id, pct, description=description)

    def _write(self, final: bool, timer: bool = False) -> None:
        """Queue the artifact's creation, or an update, with the current count (``final``: the last one;
        ``timer``: only the creation, if nothing has created it yet)."""
        with self._lock:
            if self._closed or (timer and self._created):
                return
            fn = self._update if self._created else self._create
            self._created, self._closed, self._written = True, final, time.monotonic()
            artifact_writer.submit(f"progress of {self.what}", fn, 100.0 * min(self.done, self.total) / self.total,
                                   f"{self.what}: {self.done} of {self.total}")

    def _tell(self) -> None:
        from flows.progress import ProgressEvent, report

        report(ProgressEvent(self.what, min(self.done, self.total), self.total, time.monotonic() - self.started))

    def advance(self, n: int = 1) -> None:
        self.done += n
        final = self.done >= self.total
        if final:
            self._timer.cancel()
        if final or time.monotonic() - self._written >= MIN_UPDATE_INTERVAL_S:
            self._write(final)
        self._tell()

    def close(self) -> None:
        """The stage is over: no more writes (the last one, if :meth:`advance` reached the total, is queued)."""
        self._timer.cancel()
        with self._lock:
            self._closed = True


def wait_with_progress(futures: list, what: str) -> list:
    """Results of ``futures`` in order, reporting progress as they complete."""
    from prefect.futures import as_completed

    progress = Progress(len(futures), what)
    try:
        for _ in as_completed(futures):
            progress.advance()
    finally:
        progress.close()
    return [f.result() for f in futures]


def qc_note(qc: dict) -> None:
    """The QC verdict, its reasons and thresholds, and where the HTML report is."""
    md = [f"### QC verdict: {qc['verdict'].upper()}", "", f"Report: `{qc['report_uri']}`"]
    if qc.get("neuroglancer_url"):
        md.append(f"[Open in Neuroglancer]({qc['neuroglancer_url']})")
    md += ["", "| level | stage | reason |", "|---|---|---|"]
    md += [f"| {r['level']} | {r['stage']} | {r['message']} |" for r in qc.get("reasons", [])]
    md += ["", "Thresholds: " + ", ".join(f"{k}={v}" for k, v in (qc.get("thresholds") or {}).items())]
    artifact_writer.submit("qc-report", create_markdown_artifact, "\n".join(md), key="qc-report",
                           description="QC verdict and report location")


def intensity_note(summary: dict) -> None:
    """The intensity correction a run estimated: gains, flat fields, how well overlaps agree."""
    md = ["### Intensity correction", "",
          f"- {summary['views']} views, {summary['pairs']} overlapping pairs; gains {summary['gain_min']:.4g} "
          f"to {summary['gain_max']:.4g}",
          f"- worst pair RMS relative difference: {_round(summary.get('rms_before'))} before, "
          f"{_round(summary.get('rms_after'))} after",
          f"- coefficients: {summary['container']}"]
    for ch, ff in summary.get("flatfields", {}).items():
        md.append(f"- flat field of channel {ch}: dark level {ff['dark']:.4g}, coefficients "
                  f"{', '.join(f'{c:.4g}' for c in ff['coefficients'])} (F = 1 at the tile centre)")
    if summary.get("views_without_overlap"):
        md.append(f"- views without usable overlap (flat field only): {summary['views_without_overlap']}")
    artifact_writer.submit("intensity-correction", create_markdown_artifact, "\n".join(md), key="intensity-correction",
                           description="Intensity correction")
