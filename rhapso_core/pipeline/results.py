"""Typed results of the alignment stages, passed from ``rhapso_core.pipeline`` through tasks and
flows; each has ``to_dict()``, the JSON form the flows return and the CLI writes.

The JSON forms are what every earlier release wrote (same keys, same order), so summaries and
QC reports read the same; the records are what code between the layers reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from rhapso_core.solver.records import SolveResult

__all__ = ["SolveOutcome", "RoundResult", "RoundKind", "AlignmentSummary", "FusionSummary"]

RoundKind = Literal["points", "phase", "split"]


@dataclass
class SolveOutcome:
    """A global solve over a dataset (:func:`rhapso_core.pipeline.solve.solve_dataset`).

    ``n_links`` counts every link solved (phase anchors included), ``n_links_by_label`` per
    label; ``n_groups`` is the number of solver tiles (views grouped by ``grouping``);
    ``verify`` the check of the written XML (``VerifyReport.to_dict()``; None when not checked).
    """

    result: SolveResult
    n_links: int
    n_links_by_label: dict[str, int]
    n_groups: int
    verify: dict | None = None

    @property
    def transform_name(self) -> str:
        return self.result.transform_name

    @property
    def final_error(self) -> float | None:
        e = self.result.report.final_error
        return float(e) if math.isfinite(e) else None  # as the JSON form (no inf / nan)

    def to_dict(self) -> dict[str, Any]:
        d = self.result.to_dict()
        d.update(transform_name=self.transform_name, n_links=self.n_links,
                 n_links_by_label=dict(self.n_links_by_label), n_groups=self.n_groups)
        if self.verify is not None:
            d["verify"] = self.verify
        return d


@dataclass
class RoundResult:
    """One alignment round as the flow ran it.

    ``kind``: "points" (interest-point matching and solve), "phase" (phase correlation and
    solve) or "split" (split-affine: sub-views of ``split_xml`` matched, ``labels`` solved
    together, points in ``store``). ``solver_report`` is the solve's JSON form
    (:meth:`SolveOutcome.to_dict`, or for a phase round ``{transform_name, report, n_links}``);
    ``verify`` the round's check (``VerifyReport.to_dict()``; None when not checked, and never
    for a split round). ``pair_records`` are the matched pairs (``PairRecord``), ``phase_links``
    the phase round's links (``PhaseLink.to_dict()``), ``image_checks`` a point round's checks of
    its pairs against the images (:mod:`rhapso_core.pipeline.pair_check`; empty when off),
    ``overlap_affines`` an affine round's overlap fits and their checks
    (:mod:`rhapso_core.pipeline.overlap_affine_links`; empty when not run).
    """

    kind: RoundKind
    xml: str
    pairs: int
    pairs_matched: int
    final_error: float | None
    transform: str
    solver_report: dict
    verify: dict | None = None
    pair_records: list = field(default_factory=list)
    phase_links: list[dict] = field(default_factory=list)
    split_xml: str | None = None
    store: str | None = None
    labels: list[str] = field(default_factory=list)
    image_checks: list = field(default_factory=list)
    overlap_affines: list = field(default_factory=list)

    @property
    def reverted_tiles(self) -> list[str]:
        return [t["name"] for t in (self.verify or {}).get("reverted") or ()]

    def to_dict(self) -> dict[str, Any]:
        records = [r.to_dict() for r in self.pair_records]
        if self.kind == "split":
            return {"xml": self.xml, "split_xml": self.split_xml, "store": self.store, "labels": list(self.labels),
                    "pairs": self.pairs, "pairs_matched": self.pairs_matched, "final_error": self.final_error,
                    "transform": self.transform, "pair_records": records, "solver_report": self.solver_report}
        d = {"verify": self.verify, "xml": self.xml, "pairs": self.pairs, "pairs_matched": self.pairs_matched,
             "final_error": self.final_error, "transform": self.transform, "pair_records": records}
        if self.kind == "phase":
            d["phase_links"] = self.phase_links
        if self.kind == "points":
            d["image_checks"] = self.image_checks
            d["overlap_affines"] = self.overlap_affines
        d["solver_report"] = self.solver_report
        return d


@dataclass
class AlignmentSummary:
    """What an alignment run did (:func:`flows.alignment.run_alignment`).

    ``detection`` maps "timepoint/setup" to the points stored (None: no point rounds, nothing
    detected); ``resolved_parameters`` is the resolver's summary, ``resolved_params_json``
    where the resolved parameters were written; ``intensity`` the intensity correction's
    result, ``n5`` the BigStitcher export of the points, ``qc`` the QC verdict (each None
    when not done).
    """

    input: str
    output: str
    store: str
    resolved_parameters: dict
    resolved_params_json: str
    prealignment: bool
    detection: dict[str, int] | None = None
    rounds: list[RoundResult] = field(default_factory=list)
    intensity: dict | None = None
    n5: str | None = None
    qc: dict | None = None

    @property
    def last_round(self) -> RoundResult:
        return self.rounds[-1]

    def reverted_tiles(self) -> dict[str, list[str]]:
        """Per round's XML, the tiles its check put back."""
        return {r.xml: r.reverted_tiles for r in self.rounds if r.reverted_tiles}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": self.input, "output": self.output, "store": self.store,
                             "resolved_parameters": self.resolved_parameters,
                             "resolved_params_json": self.resolved_params_json, "prealignment": self.prealignment}
        if self.detection is not None:
            d["detection"] = self.detection
        d["rounds"] = [r.to_dict() for r in self.rounds]
        d["reverted_tiles"] = self.reverted_tiles()
        for key in ("intensity", "n5", "qc"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass
class FusionSummary:
    """What a fusion run wrote (:func:`flows.fusion.fusion_stage`): the OME-Zarr ``output`` of
    ``shape_zyx`` per (timepoint, channel), its BigStitcher ``xml``, the blocks written this run
    (0 for a complete earlier run's), the work units submitted, the pyramid levels added;
    ``intensity`` the correction estimated first (``IntensityOutcome.to_dict()``; None if none)."""

    output: str
    xml: str
    shape_zyx: list[int]
    blocks_written: int
    units: int
    levels_added: list[str]
    timepoints: list[int]
    channels: list[int]
    intensity: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"output": self.output, "xml": self.xml, "shape_zyx": list(self.shape_zyx),
                             "blocks_written": self.blocks_written, "units": self.units,
                             "levels_added": self.levels_added, "timepoints": self.timepoints,
                             "channels": self.channels}
        if self.intensity is not None:
            d["intensity"] = self.intensity
        return d
