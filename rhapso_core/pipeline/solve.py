"""The global solve over a dataset: stored correspondences in, a new XML out."""

from __future__ import annotations

from collections.abc import Sequence

from rhapso_core import transforms
from rhapso_core.pipeline.dataset import load_dataset, view_geometry
from rhapso_core.pipeline.detect import attach_interest_points
from rhapso_core.pointstore import PointStore
from rhapso_core.solver import Link, SolverParams, solve
from rhapso_core.spimdata import SpimData, ViewId, save_xml
from rhapso_core.stitching import PHASE_LABEL, PhaseLink, anchor_links
from rhapso_core.verify import VerifyParams, verify_round


_VERIFY_DEFAULT = VerifyParams()


def links_for_labels(sd: SpimData, store: PointStore, labels: Sequence[str], geometry=None) -> list[Link]:
    """Solver links of every usable stored pair of each label, in world coordinates under ``sd``.

    ``geometry`` is :func:`view_geometry`'s mapping (computed when None). Pairs that are
    interrupted, stale or empty are left out; views the XML does not list are ignored.
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
                    points[v] = store.read_points(v, label).loc_xyz
            pa = transforms.apply(geometry[c.view_a][0], points[c.view_a][c.idx_a])
            pb = transforms.apply(geometry[c.view_b][0], points[c.view_b][c.idx_b])
            links.append(Link(c.view_a, c.view_b, pa, pb, label=label))
    return links


def solve_dataset(
    xml_uri: str, store_uri: str, labels: str | Sequence[str], params: SolverParams, out_xml: str,
    storage_options=None, phase_anchors: dict | None = None, verify: VerifyParams | None = _VERIFY_DEFAULT,
) -> dict:
    """Solve, prepend the correction to every view's registration, write ``out_xml``.

    ``labels``: one label, or several solved together (a split-affine solve uses the
    matched label and the split's fake label, weighted by ``params.label_weights``).
    The XML also gets ``ViewInterestPoints`` entries for the store's views. Returns the
    solver result as a JSON-able dict with ``transform_name``, ``n_links`` (total) and
    ``n_links_by_label``. ``phase_anchors``: ``{"xml": XML the links were measured on, "links":
    [PhaseLink.to_dict()]}`` of an earlier phase round, solved together with the matches (see
    :func:`rhapso_core.stitching.anchor_links`).

    ``verify`` (default on; None or ``enabled=False`` skips it): the written XML is then
    checked against ``xml_uri`` overlap by overlap (:func:`rhapso_core.verify.verify_round`);
    tiles the solve made worse keep their input registration (``out_xml`` is rewritten)
    and the report gets ``verify``.
    """
    labels = [labels] if isinstance(labels, str) else list(labels)
    sd = load_dataset(xml_uri, storage_options)
    geometry = view_geometry(sd)
    store = PointStore(store_uri, storage_options=storage_options, mode="r")
    links = links_for_labels(sd, store, labels, geometry)
    if phase_anchors:
        then = load_dataset(phase_anchors["xml"], storage_options)
        links += anchor_links([PhaseLink.from_dict(d) for d in phase_anchors["links"]],
                              {v: then.view_to_world(v) for v in geometry if v in then.registrations},
                              {v: g[0] for v, g in geometry.items()})
        solved_labels = labels + [PHASE_LABEL]
    else:
        solved_labels = labels
    result = solve(links, params, views=geometry)
    out = sd
    for view in sorted(result.corrections):
        out = out.with_prepended_transform(view, result.transform_name, result.corrections[view])
    for label in labels:
        out = attach_interest_points(out, store_uri, label, storage_options)
    save_xml(out, out_xml, storage_options=storage_options)
    report = result.to_dict()
    report["transform_name"] = result.transform_name
    report["n_links"] = len(links)
    report["n_links_by_label"] = {lab: sum(1 for k in links if k.label == lab) for lab in solved_labels}
    if verify is not None and verify.enabled:
        report["verify"] = verify_round(xml_uri, out_xml, store_uri, labels, verify,
                                        storage_options=storage_options).to_dict()
    return report
