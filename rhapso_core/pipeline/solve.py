"""The global solve over a dataset: stored correspondences in, a new XML out."""

from __future__ import annotations

from rhapso_core import transforms
from rhapso_core.pipeline.dataset import load_dataset, view_geometry
from rhapso_core.pipeline.detect import attach_interest_points
from rhapso_core.pointstore import PointStore
from rhapso_core.solver import Link, SolverParams, solve
from rhapso_core.spimdata import save_xml


def solve_dataset(
    xml_uri: str, store_uri: str, label: str, params: SolverParams, out_xml: str,
    interest_points_path: str | None = None, storage_options=None,
) -> dict:
    """Solve, prepend the correction to every view's registration, write ``out_xml``.

    The XML also gets ``ViewInterestPoints`` entries for the store's views.
    Returns the solver report as a JSON-able dict (with ``transform_name``).
    """
    sd = load_dataset(xml_uri, storage_options)
    geometry = view_geometry(sd)
    store = PointStore(store_uri, storage_options=storage_options, mode="r")
    points = {}
    links = []
    for c in store.read_all_correspondences(label, on_invalid="skip"):
        if c.view_a not in geometry or c.view_b not in geometry or len(c.idx_a) == 0:
            continue
        for v in (c.view_a, c.view_b):
            if v not in points:
                points[v] = store.read_points(v, label).loc_xyz
        pa = transforms.apply(geometry[c.view_a][0], points[c.view_a][c.idx_a])
        pb = transforms.apply(geometry[c.view_b][0], points[c.view_b][c.idx_b])
        links.append(Link(c.view_a, c.view_b, pa, pb, label=label))
    result = solve(links, params, views=geometry)
    out = sd
    for view in sorted(result.corrections):
        out = out.with_prepended_transform(view, result.transform_name, result.corrections[view])
    out = attach_interest_points(out, store_uri, label, storage_options)
    save_xml(out, out_xml, storage_options=storage_options)
    report = result.to_dict()
    report["transform_name"] = result.transform_name
    report["n_links"] = len(links)
    return report
