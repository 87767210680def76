"""The global solve over a dataset: stored correspondences in, a new XML out."""

from __future__ import annotations

from collections.abc import Sequence

from rhapso_core import transforms
from rhapso_core.pipeline.border_matches import solved_matches
from rhapso_core.pipeline.dataset import load_dataset, view_geometry
from rhapso_core.pipeline.detect import attach_interest_points
from rhapso_core.pipeline.overlap_affine_links import (
    AFFINE_LINK_LABEL, affine_solver_links, replaced_pairs, without_pairs,
)
from rhapso_core.pipeline.results import SolveOutcome
from rhapso_core.pointstore import PointStore
from rhapso_core.solver import Link, SolverParams, solve
from rhapso_core.pipeline.view_groups import reference_timepoint as reference_timepoint_of
from rhapso_core.pipeline.view_groups import view_groups
from rhapso_core.pipeline.view_selection import ViewSelection, select_views
from rhapso_core.spimdata import SpimData, ViewId, save_xml
from rhapso_core.stitching import PHASE_LABEL, PhaseLink, anchor_links
from rhapso_core.verify import VerifyParams, verify_round


_VERIFY_DEFAULT = VerifyParams()


def links_for_labels(sd: SpimData, store: PointStore, labels: Sequence[str], geometry=None,
                     min_matches: int = 0) -> list[Link]:
    """Solver links of every usable stored pair of each label, in world coordinates under ``sd``.

    ``geometry`` is :func:`view_geometry`'s mapping (computed when None). Pairs that are
    interrupted, stale or empty are left out; views the XML does not list are ignored.
    Matches with a point within its view's recorded border margin are left out where the
    link keeps at least half of its matches and ``min_matches`` (:mod:`.border_matches`).
    """
    geometry = view_geometry(sd) if geometry is None else geometry
    links = []
    for label in labels:
        points: dict[ViewId, object] = {}
        for c in store.read_all_correspondences(label, on_invalid="skip"):
            if c.view_a not in geometry or c.view_b not in geometry or len(c.idx_a) == 0:
                continue
            for v in (c.view_a, c.view_b):
                if v not in points:
                    points[v] = store.read_points(v, label)
            pa = transforms.apply(geometry[c.view_a][0], points[c.view_a].loc_xyz[c.idx_a])
            pb = transforms.apply(geometry[c.view_b][0], points[c.view_b].loc_xyz[c.idx_b])
            use = solved_matches(points[c.view_a], points[c.view_b], c.idx_a, c.idx_b, geometry[c.view_a][1],
                                 geometry[c.view_b][1], min_matches, pa, pb)
            pa, pb = pa[use], pb[use]
            links.append(Link(c.view_a, c.view_b, pa, pb, label=label))
    return links


def _phase_links(anchor_sets: Sequence[dict], geometry, storage_options=None) -> list[Link]:
    """The phase-correlation anchors' links under ``geometry`` (:func:`anchor_links`)."""
    out = []
    for anchors in anchor_sets:
        if not anchors.get("links"):
            continue
        then = load_dataset(anchors["xml"], storage_options)
        out += anchor_links([PhaseLink.from_dict(d) for d in anchors["links"]],
                            {v: then.view_to_world(v) for v in geometry if v in then.registrations},
                            {v: g[0] for v, g in geometry.items()}, anchors.get("weights"))
    return out


def grouped_links(links: Sequence[Link], groups: dict[ViewId, ViewId]) -> list[Link]:
    """Links between group representatives (matches inside one group say nothing about its pose)."""
    out = []
    for lk in links:
        a, b = groups.get(lk.a), groups.get(lk.b)
        if a is None or b is None or a == b:
            continue
        out.append(Link(a, b, lk.pa, lk.pb, weight=lk.weight, label=lk.label, units=lk.units))
    return out


def solve_dataset(
    xml_uri: str, store_uri: str, labels: str | Sequence[str], params: SolverParams, out_xml: str,
    storage_options=None, phase_anchors: dict | list | None = None, verify: VerifyParams | None = _VERIFY_DEFAULT,
    *, grouping: Sequence[str] = ("channel", "illumination"),
    timepoints: str = "individually", reference_timepoint: int | None = None,
    selection: ViewSelection | None = None,
) -> SolveOutcome:
    """Solve, prepend the correction to every selected view's registration, write ``out_xml``.

    ``labels``: one label, or several solved together (a split-affine solve uses the
    matched label and the split's fake label, weighted by ``params.label_weights``).
    Views differing only in ``grouping`` attributes are one solver tile and get one
    correction (:mod:`.view_groups`); views outside ``selection`` keep their
    registrations. Unless ``timepoints`` is "individually", the timepoints are solved
    together with only the first group of ``reference_timepoint`` fixed (default: the
    first timepoint), so every timepoint lands in the reference's frame.
    The XML also gets ``ViewInterestPoints`` entries for the store's views. Returns the
    solve and its link counts (:class:`~rhapso_core.pipeline.results.SolveOutcome`; its
    ``to_dict()`` is the JSON report). ``phase_anchors``: ``{"xml": XML the links were measured
    on, "links": [PhaseLink.to_dict()]}`` of an earlier phase round, solved together with the
    matches (see :func:`rhapso_core.stitching.anchor_links`); a list of such dicts (an earlier
    phase round's and this round's links of pairs points could not match) is solved together.

    ``verify`` (default on; None or ``enabled=False`` skips it): the written XML is then
    checked against ``xml_uri`` overlap by overlap (:func:`rhapso_core.verify.verify_round`);
    tiles the solve made worse keep their input registration (``out_xml`` is rewritten)
    and the outcome gets ``verify``.
    """
    labels = [labels] if isinstance(labels, str) else list(labels)
    sd = load_dataset(xml_uri, storage_options)
    views = select_views(sd, selection)
    geometry = view_geometry(sd, views)
    store = PointStore(store_uri, storage_options=storage_options, mode="r")
    links = point_links = links_for_labels(sd, store, labels, geometry, params.min_matches)
    anchor_sets = [a for a in ([phase_anchors] if isinstance(phase_anchors, dict) else phase_anchors or []) if a]
    solved_labels = list(labels)
    # An overlap-affine link stands in for everything else measured on its overlap: the pair's point
    # matches and the image check's translation there, which fused those points with the coarse phase
    # (rhapso_core.pipeline.overlap_affine_links).
    replaced = replaced_pairs(anchor_sets)
    # An automatic model and lambda are chosen on everything measured, the replaced matches included
    # (rhapso_core.pipeline.overlap_affine_links says why); the solve uses the replacement.
    measured = None
    if replaced:
        fits = [lk for anchors in anchor_sets for lk in affine_solver_links(anchors, geometry)]
        measured = list(point_links) + _phase_links(anchor_sets, geometry, storage_options) + fits
        links = [lk for lk in links if frozenset((lk.a, lk.b)) not in replaced] + fits
        solved_labels.append(AFFINE_LINK_LABEL)
        anchor_sets = [without_pairs(a, replaced) for a in anchor_sets]
    phase = _phase_links(anchor_sets, geometry, storage_options)
    if phase:
        links += phase
        solved_labels.append(PHASE_LABEL)
    groups = view_groups(sd, views, grouping)
    reps = sorted(set(groups.values()))
    if params.fixed_views is not None:
        fixed = sorted({groups[(int(v[0]), int(v[1]))] for v in params.fixed_views if (int(v[0]), int(v[1])) in groups})
        params = params.model_copy(update={"fixed_views": [list(v) for v in fixed]})
    elif timepoints != "individually":
        ref = reference_timepoint_of([v[0] for v in reps], reference_timepoint)
        params = params.model_copy(update={"fixed_views": [list(min(v for v in reps if v[0] == ref))]})
    result = solve(grouped_links(links, groups), params, views={r: geometry[r] for r in reps},
                   validation_links=None if measured is None else grouped_links(measured, groups))
    out = sd
    for view in sorted(groups):
        out = out.with_prepended_transform(view, result.transform_name, result.corrections[groups[view]])
    for label in labels:
        out = attach_interest_points(out, store_uri, label, storage_options)
    save_xml(out, out_xml, storage_options=storage_options)
    outcome = SolveOutcome(result, len(links), {lab: sum(1 for k in links if k.label == lab) for lab in solved_labels},
                           len(reps))
    if verify is not None and verify.enabled:
        outcome.verify = verify_round(xml_uri, out_xml, store_uri, labels, verify,
                                      storage_options=storage_options, groups=groups).to_dict()
    return outcome
