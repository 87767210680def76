"""Phase-correlation stitching over a dataset: pairs, pairwise shifts, global solve, XML out.

Usable without Prefect: :func:`phase_round` (or :func:`prealign_by_phase_correlation`, the
coarse prealignment that brings large stage errors within reach of the point matcher) runs the
whole round in-process; the flow runs :func:`stitch_pairs` in batches on workers and
:func:`solve_phase_round` once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.pipeline.dataset import load_dataset, open_view, view_geometry
from rhapso_core.pipeline.match import plan_pairs
from rhapso_core.solver import SolverParams
from rhapso_core.spimdata import ViewId, save_xml
from rhapso_core.spimdata.stitching_results import PairwiseShift, read_stitching_results, with_stitching_results
from rhapso_core.stitching import (
    PhaseLink,
    PhaseRoundRecord,
    StitchingParams,
    correlate_views,
    registration_hash,
    solve_phase_links,
)

__all__ = ["TRANSFORM_NAME", "plan_pairs", "stitch_pairs", "solve_phase_round", "phase_round",
           "prealign_by_phase_correlation", "stored_links", "NoPhaseLinksError"]

#: Name of the ViewTransform a phase round prepends to each view's registration.
TRANSFORM_NAME = "rhapso phase-correlation translation"


class NoPhaseLinksError(RuntimeError):
    """No pair gave a usable phase-correlation link (``StitchingParams.fail_without_links``)."""


def stitch_pairs(
    xml_uri: str, pairs: Sequence[tuple[ViewId, ViewId]], params: StitchingParams, storage_options=None
) -> list[PhaseLink]:
    """Phase-correlate each pair over its overlap (current registrations); one link per pair, in order."""
    sd = load_dataset(xml_uri, storage_options)
    pairs = [(tuple(a), tuple(b)) for a, b in pairs]
    views = sorted({v for p in pairs for v in p})
    geometry = view_geometry(sd, views)
    sources = {}

    def source(v):
        if v not in sources:
            sources[v] = open_view(sd, v, storage_options)
        return sources[v]

    out = []
    for a, b in pairs:
        (a2w, size_a), (b2w, size_b) = geometry[a], geometry[b]
        out.append(correlate_views(a, source(a), a2w, size_a, b, source(b), b2w, size_b, params))
    return out


def solve_phase_round(
    xml_uri: str, links: Sequence[PhaseLink], out_xml: str, solver: SolverParams | None = None,
    params: StitchingParams | None = None, storage_options=None,
) -> PhaseRoundRecord:
    """Solve the links (translation, the solver's link removal), prepend the corrections, write ``out_xml``.

    The output XML also carries the used links as BigStitcher ``<StitchingResults>`` (hash of the
    registrations they were measured under), so Fiji sees the pairwise shifts.
    """
    params = params or StitchingParams()
    links = list(links)
    usable = [k for k in links if k.ok]
    if not usable and params.fail_without_links:
        raise NoPhaseLinksError(f"{xml_uri}: no pair gave a phase-correlation link with r >= {params.min_r} "
                                f"({len(links)} pairs tried)")
    sd = load_dataset(xml_uri, storage_options)
    geometry = view_geometry(sd)
    result = solve_phase_links(links, solver, views=geometry)
    out = sd
    for view in sorted(result.corrections):
        if view in geometry:
            out = out.with_prepended_transform(view, TRANSFORM_NAME, result.corrections[view])
    out = with_stitching_results(out, [
        PairwiseShift.translation([k.view_a], [k.view_b], k.shift_xyz, k.r, k.hash, k.box_min_xyz, k.box_max_xyz)
        for k in usable
    ])
    save_xml(out, out_xml, storage_options=storage_options)
    report = result.report.to_dict()
    return PhaseRoundRecord(
        xml_in=xml_uri, xml_out=out_xml, links=links, solver_report=report, transform_name=TRANSFORM_NAME,
        corrections={v: transforms.to_xml_values(m) for v, m in result.corrections.items()},
    )


def phase_round(
    xml_in: str, xml_out: str, params: StitchingParams | None = None, solver: SolverParams | None = None,
    pair_mode: str = "overlapping", group_by: Sequence[str] = (), storage_options=None,
) -> PhaseRoundRecord:
    """One phase-correlation round in-process: plan pairs, correlate them, solve, write ``xml_out``.

    ``pair_mode`` / ``group_by``: which pairs, as for matching (``AlignmentParams``).
    """
    params = params or StitchingParams()
    pairs = plan_pairs(xml_in, pair_mode, tuple(group_by), storage_options)
    links = stitch_pairs(xml_in, pairs, params, storage_options)
    return solve_phase_round(xml_in, links, xml_out, solver, params, storage_options)


def prealign_by_phase_correlation(
    xml_in: str, xml_out: str, params: StitchingParams | None = None, solver: SolverParams | None = None,
) -> PhaseRoundRecord:
    """Coarse prealignment: translate every view by phase correlation of the overlaps.

    For datasets whose stage errors exceed what the point matcher's overlap boxes and search can
    bridge; a rigid / affine point round run on ``xml_out`` then starts from nearly aligned views.
    """
    return phase_round(xml_in, xml_out, params, solver)


def stored_links(xml_uri: str, params: StitchingParams | None = None, storage_options=None) -> list[PhaseLink]:
    """The XML's ``<StitchingResults>`` (e.g. computed in Fiji) as links for :func:`solve_phase_round`.

    A result is usable (``ok``) only when its hash matches the views' current registrations
    (BigStitcher drops the others too: the shift was measured under other positions; status
    ``stale``) and it passes ``params``' r and shift filters. A side that is a group of views
    (channels of one tile) links every view of one side with every view of the other.
    Non-translation transforms keep only their translation.
    """
    params = params or StitchingParams()
    sd = load_dataset(xml_uri, storage_options)
    known = set(sd.views())
    out = []
    for r in read_stitching_results(sd):
        if not all(v in known for v in r.views_a + r.views_b):
            continue
        h = registration_hash(sd.view_to_world(r.views_a[0]), sd.view_to_world(r.views_b[0]))
        fresh = abs(h - r.hash) <= 1e-9 * max(1.0, abs(h))
        shift = r.translation_xyz
        if not fresh:
            status, reason = "stale", "registrations changed since the shift was measured (hash differs)"
        elif not params.max_shift_ok(shift):
            status, reason = "too_far", "shift beyond max_shift_xyz / max_shift_total"
        elif not params.min_r <= r.correlation <= params.max_r:
            status, reason = "low_r" if r.correlation < params.min_r else "high_r", f"r {r.correlation:.3f}"
        else:
            status, reason = "ok", ""
        box_lo = r.box_min_xyz if r.box_min_xyz is not None else (float("nan"),) * 3
        box_hi = r.box_max_xyz if r.box_max_xyz is not None else (float("nan"),) * 3
        if status == "ok" and r.box_min_xyz is None:
            status, reason = "failed", "no <overlap_boundingbox>: the link has no place to act on"
        # The crops are not recorded: the box in a's full-resolution voxels stands for them (the
        # scale the global solve's consistency check measures a link's disagreement in).
        vox = np.linalg.norm(sd.view_to_world(r.views_a[0])[:3, :3], axis=0)
        extent = np.abs(np.asarray(box_hi, dtype=np.float64) - np.asarray(box_lo, dtype=np.float64))
        crop = tuple(int(max(1, round(e / v) + 1)) if np.isfinite(e) else 0 for e, v in zip(extent, vox))
        for a in r.views_a:
            for b in r.views_b:
                out.append(PhaseLink(a, b, tuple(shift), r.correlation, tuple(box_lo), tuple(box_hi), r.hash,
                                     -1, None, crop, status, reason))
    return out
