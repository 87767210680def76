"""Solver QC: per-link match distances before and after, per-tile error, loop closure, layout picture.

Everything is recomputed from the run's outputs: the stored correspondences
(view-voxel points, x y z) mapped to the world by the input and by the solved
registrations. A solver report (``solve_dataset``'s dict) adds what only the
solver knows: which links it removed, iterations, its own error figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from rhapso_core import transforms
from rhapso_core.qc._records import ViewId, name, num, parse_vid, vid
from rhapso_core.qc.matching import fit_pair_model
from rhapso_core.qc.pictures import layout_picture

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["link_residuals", "solver_metrics", "pair_models", "loop_closure", "tile_layout_picture"]


def _key(a: ViewId, b: ViewId) -> tuple[ViewId, ViewId]:
    return (a, b) if a <= b else (b, a)


def link_residuals(
    matches_voxel: Mapping[tuple[ViewId, ViewId], tuple[np.ndarray, np.ndarray]],
    before: Mapping[ViewId, np.ndarray],
    after: Mapping[ViewId, np.ndarray],
) -> list[dict]:
    """Match distances of each link under two registrations.

    Parameters
    ----------
    matches_voxel : mapping (view_a, view_b) -> (pa, pb)
        Matched points in each view's voxel frame (x y z), ``(K, 3)`` each.
    before, after : mapping view -> 4x4
        View-voxel -> world affines: input (nominal) and solved registrations.

    Returns
    -------
    list of dict
        ``a``, ``b``, ``n_matches``, ``mean_before``, ``max_before``, ``mean_after``,
        ``max_after`` (world units).
    """
    rows = []
    for (a, b), (pa, pb) in sorted(matches_voxel.items()):
        pa, pb = np.asarray(pa, dtype=np.float64), np.asarray(pb, dtype=np.float64)
        row = {"a": vid(a), "b": vid(b), "name": f"{name(a)} - {name(b)}", "n_matches": int(len(pa))}
        for tag, reg in (("before", before), ("after", after)):
            if len(pa) and a in reg and b in reg:
                d = np.linalg.norm(transforms.apply(reg[a], pa) - transforms.apply(reg[b], pb), axis=1)
                row[f"mean_{tag}"], row[f"max_{tag}"] = float(d.mean()), float(d.max())
            else:
                row[f"mean_{tag}"] = row[f"max_{tag}"] = None
        rows.append(row)
    return rows


def solver_metrics(links: Sequence[dict], views: Sequence[ViewId], report: Mapping | None = None) -> dict:
    """Per-tile error, link status and the solver's own figures.

    Parameters
    ----------
    links : list of dict
        Rows of :func:`link_residuals`.
    views : list of ViewId
        Every view of the dataset (views without links are listed as unconnected).
    report : dict or list of dict, optional
        ``solve_dataset``'s return value, ``SolveResult.to_dict()``, or its ``report`` part
        (a list, one per alignment round: the last is used).

    Returns
    -------
    dict
        ``links`` (with ``status``: used / removed / dropped from the report, else used),
        ``tiles`` (``error``: mean match distance after over the tile's used links, world
        units, and ``reported_error``), ``removed_links``, ``unconnected_views`` (no used
        link here, nor in the report's links of any label) and the
        report's ``model``, ``iterations``, ``final_error``, ``max_error``, ``converged``.
    """
    if isinstance(report, (list, tuple)):  # one report per alignment round: the last one solved the XML
        report = report[-1] if report else None
    rep = dict(report or {})
    if "report" in rep and isinstance(rep["report"], Mapping):
        rep = dict(rep["report"])
    status = {}
    # Views the solve itself reports a used link for, of any label: the links measured here are the
    # point matches only, where the solve may also have used phase-correlation anchors and
    # overlap-affine fits (a 3 x 3 x 2 grid of small tiles: 80 of 89 pairs without point matches,
    # every view placed by those, 0.02 voxel from the truth, and three of them were called
    # unconstrained here).
    solved_with: set[ViewId] = set()
    for r in rep.get("links", ()):
        a, b = parse_vid(r["a"]), parse_vid(r["b"])
        st = status[_key(a, b)] = str(r.get("status", "used"))
        if st == "used" and (r.get("n_matches") is None or r["n_matches"] > 0):
            solved_with.update((a, b))
    removed = {_key(parse_vid(r["a"]), parse_vid(r["b"])) for r in rep.get("removed_links", ())}
    reported = {parse_vid(r): num(r.get("error")) for r in rep.get("tile_errors", ())}
    out_links = []
    sums = {v: [0.0, 0] for v in views}
    for r in links:
        a, b = parse_vid(r["a"]), parse_vid(r["b"])
        st = "removed" if _key(a, b) in removed else status.get(_key(a, b), "used" if r["n_matches"] else "dropped")
        out_links.append({**r, "status": st})
        if st == "used" and r["mean_after"] is not None:
            for v in (a, b):
                s = sums.setdefault(v, [0.0, 0])
                s[0] += r["mean_after"] * r["n_matches"]
                s[1] += r["n_matches"]
    tiles = []
    for v in sorted(sums):
        total, n = sums[v]
        tiles.append({**vid(v), "name": name(v), "error": (total / n) if n else None, "n_matches": n,
                      "reported_error": reported.get(v)})
    errs = [t["error"] for t in tiles if t["error"] is not None]
    return {
        "links": out_links,
        "tiles": tiles,
        "removed_links": [{"a": vid(a), "b": vid(b)} for a, b in sorted(removed)],
        "unconnected_views": [vid(v) for v in sorted(sums) if sums[v][1] == 0 and v not in solved_with],
        "mean_tile_error": float(np.mean(errs)) if errs else None,
        "max_tile_error": float(np.max(errs)) if errs else None,
        "model": rep.get("model"),
        "method": rep.get("method"),
        "iterations": rep.get("iterations"),
        "final_error": num(rep.get("final_error")),
        "max_error": num(rep.get("max_error")),
        "converged": rep.get("converged"),
        "has_report": bool(rep),
    }


def pair_models(
    matches_world: Mapping[tuple[ViewId, ViewId], tuple[np.ndarray, np.ndarray]], kind: str = "rigid",
) -> dict[tuple[ViewId, ViewId], np.ndarray]:
    """Refit each pair's model (world a -> world b, x y z) from its correspondences."""
    out = {}
    for (a, b), (pa, pb) in sorted(matches_world.items()):
        m = fit_pair_model(np.asarray(pa), np.asarray(pb), kind)
        if m is not None:
            out[(a, b)] = m
    return out


def _ordered_cycle(graph: nx.Graph, nodes: list) -> list | None:
    """The cycle's nodes in traversal order (cycle_basis already gives them so; checked)."""
    import networkx as nx

    k = len(nodes)
    if all(graph.has_edge(nodes[i], nodes[(i + 1) % k]) for i in range(k)):
        return nodes
    sub = graph.subgraph(nodes)
    try:
        edges = nx.find_cycle(sub)
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in edges]


def loop_closure(
    models: Mapping[tuple[ViewId, ViewId], np.ndarray],
    sample_points: Mapping[tuple[ViewId, ViewId], np.ndarray] | None = None,
) -> list[dict]:
    """Compose pairwise models around each cycle of the link graph and measure the mismatch.

    For pairs ``(a, b)`` with world models ``M_ab`` (points seen in ``a`` -> the same
    points seen in ``b``), a consistent set composes to the identity around every
    cycle. The closure error of a cycle ``v0 -> v1 -> ... -> v0`` is the displacement
    ``|C(x) - x|`` of ``C = M_{v_k v0} ... M_{v0 v1}`` at sample points ``x``.

    Parameters
    ----------
    models : mapping (a, b) -> 4x4
        Pairwise world models, x y z (an edge is used in either direction; reversed, its inverse).
    sample_points : mapping (a, b) -> (K, 3), optional
        World points where the error is measured, per pair (e.g. the centroid of its matches);
        the points of a cycle's edges are pooled. Default: the origin.

    Returns
    -------
    list of dict
        One per cycle of a cycle basis (``networkx.cycle_basis``): ``views``, ``length``,
        ``mean_error``, ``max_error`` (world units).
    """
    # networkx (0.2 s to import) only here: the QC report computes this beside its image reads, where
    # the import costs no time, instead of every command's start paying for it.
    import networkx as nx

    g = nx.Graph()
    for a, b in models:
        g.add_edge(a, b)

    def step(u, w):
        return models[(u, w)] if (u, w) in models else transforms.invert(models[(w, u)])

    out = []
    for nodes in sorted(nx.cycle_basis(g), key=lambda c: sorted(c)):
        start = min(nodes)
        i0 = nodes.index(start)
        nodes = nodes[i0:] + nodes[:i0]
        cyc = _ordered_cycle(g, nodes)
        if cyc is None:
            continue
        comp = np.eye(4)
        pts = []
        for i in range(len(cyc)):
            u, w = cyc[i], cyc[(i + 1) % len(cyc)]
            comp = step(u, w) @ comp
            if sample_points is not None:
                for key in ((u, w), (w, u)):
                    if key in sample_points:
                        pts.append(np.asarray(sample_points[key], dtype=np.float64).reshape(-1, 3))
        x = np.vstack(pts) if pts else np.zeros((1, 3))
        d = np.linalg.norm(transforms.apply(comp, x) - x, axis=1)
        out.append({"views": [vid(v) for v in cyc], "name": " > ".join(name(v) for v in cyc),
                    "length": len(cyc), "mean_error": float(d.mean()), "max_error": float(d.max())})
    return out


def _outline_xy(affine: np.ndarray, size) -> np.ndarray:
    corners = transforms.apply(affine, transforms.box_corners(np.zeros(3), np.asarray(size, float) - 1.0))[:, :2]
    try:
        hull = ConvexHull(corners)
        return corners[hull.vertices]
    except (QhullError, ValueError):
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def tile_layout_picture(
    geometry: Mapping[ViewId, tuple[np.ndarray, tuple[int, int, int]]],
    tiles: Sequence[dict],
    links: Sequence[dict],
    size: int = 360,
    vmax: float | None = None,
) -> bytes:
    """PNG: tiles' world boxes projected on XY, filled by their error, links coloured by distance after.

    Parameters
    ----------
    geometry : mapping view -> (view_to_world 4x4, size_xyz)
        Solved registrations.
    tiles, links : list of dict
        ``solver_metrics(...)["tiles"]`` and ``["links"]``.
    """
    err = {parse_vid(t): t["error"] for t in tiles}
    views = sorted(geometry)
    polys = [_outline_xy(*geometry[v]) for v in views]
    centre = {v: p.mean(axis=0) for v, p in zip(views, polys)}
    values = [np.nan if err.get(v) is None else err[v] for v in views]
    labels = [f"s{v[1]}" + ("" if np.isnan(e) else f"\n{e:.2f}") for v, e in zip(views, values)]
    lines = []
    for r in links:
        a, b = parse_vid(r["a"]), parse_vid(r["b"])
        if a in centre and b in centre:
            val = np.nan if r["mean_after"] is None else r["mean_after"]
            lines.append((centre[a], centre[b], val, r.get("status") != "used"))
    return layout_picture(polys, labels, values, lines, size=size, value_label="world units", vmax=vmax)
