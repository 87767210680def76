"""One QC report per run: every metric recomputed from the run's outputs, one self-contained HTML file.

Inputs are the run's artefacts (URIs, local or ``s3://``): the input XML (nominal
registrations), the solved XML, the interest-point store and label, optionally
the matching pair records and the solver report (small dicts the stages
return), the fused OME-Zarr and, for synthetic data, the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rhapso_core import transforms
from rhapso_core.io import atomic_write_bytes, is_s3, open_image
from rhapso_core.output_layout import REPORT_NAME, report_path
from rhapso_core.pipeline.dataset import open_view, view_geometry
from rhapso_core.pipeline.in_threads import in_threads
from rhapso_core.pointstore import PointStore
from rhapso_core.qc import pictures as pics
from rhapso_core.qc.detection import detection_metrics, detection_picture
from rhapso_core.qc.fusion import comparable_pairs, level_to_world, overlap_ncc_table, seam_visibility
from rhapso_core.qc.html import render_report
from rhapso_core.qc.matching import matching_metrics
from rhapso_core.qc.params import QCParams
from rhapso_core.qc.phase import phase_link_matches, phase_metrics
from rhapso_core.qc.sampling import choose_level, read_level
from rhapso_core.pipeline.border_matches import solved_matches
from rhapso_core.solver.params import SolverParams
from rhapso_core.qc.solver import link_residuals, loop_closure, pair_models, solver_metrics, tile_layout_picture
from rhapso_core.qc.verdict import verdict as judge
from rhapso_core.spimdata import load_xml

__all__ = ["REPORT_NAME", "compute_metrics", "build_report", "default_report_uri"]



def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def default_report_uri(solved_xml: str) -> str:
    """``qc_report.html`` in the solved XML's folder (local path or ``s3://``)."""
    return report_path(str(solved_xml))


def compute_metrics(
    input_xml: str,
    solved_xml: str,
    store_uri: str,
    label: str | Sequence[str] = "beads",
    *,
    pair_records: Sequence[Mapping] | None = None,
    solver_report: Mapping | None = None,
    fused_uri: str | None = None,
    ground_truth: str | os.PathLike | None = None,
    params: QCParams | None = None,
    storage_options: dict | None = None,
    pictures: bool = True,
    phase_links: Sequence[Mapping] | None = None,
    verify_reports: Sequence[Mapping | None] | None = None,
    min_matches: int = SolverParams.model_fields["min_matches"].default,
) -> tuple[dict, dict]:
    """Every QC metric of a run, and its pictures.

    Parameters
    ----------
    input_xml : str
        The XML the run started from (nominal registrations; detection and matching ran on it).
    solved_xml : str
        The XML written by the solve.
    store_uri : str
        Interest-point store (``interestpoints.zarr``).
    label : str or sequence of str
        Interest-point label, or several: the first is the detected and matched one
        (detection and matching figures); links of all of them enter the solver figures
        (a split-affine solve's fake correspondences).
    pair_records : list of dict, optional
        ``PairRecord.to_dict()`` of every matched pair (candidates, RANSAC status).
    solver_report : dict, optional
        ``solve_dataset``'s return value (or ``SolveResult.to_dict()``).
    fused_uri : str, optional
        Fused OME-Zarr (seam visibility and a projection).
    ground_truth : path, optional
        ``ground_truth.json`` of a synthetic dataset (adds the accuracy score).
    params : QCParams, optional
        Sizes read and thresholds; defaults when None.
    storage_options : dict, optional
        s3fs options.
    pictures : bool
        Also draw the pictures (PNG data URIs).
    phase_links : list of dict, optional
        ``PhaseLink.to_dict()`` of the run's phase-correlation rounds (adds the link section).
    verify_reports : list of dict, optional
        Each alignment round's after-solve check (``VerifyReport.to_dict()``, None for a
        round without one): reverted tiles and overlaps left worse fail the verdict.
    min_matches : int
        The solver's ``min_matches``: the solver section recomputes tile errors from the
        matches the solve used (:func:`~rhapso_core.pipeline.border_matches.solved_matches`). Where an
        affine round's overlap fit stood in for a pair's matches
        (:mod:`rhapso_core.pipeline.overlap_affine_links`), they are those replaced matches: a witness
        of the result that the solve did not fit.

    Returns
    -------
    (metrics, pictures)
        JSON-able metric sections and a dict of data URIs.
    """
    p = params or QCParams()
    sd_in = load_xml(input_xml, storage_options)
    sd_out = load_xml(solved_xml, storage_options)
    views = [v for v in sd_out.views() if v in set(sd_in.views())]
    geom_in = view_geometry(sd_in, views)
    geom_out = view_geometry(sd_out, views)
    before = {v: g[0] for v, g in geom_in.items()}
    after = {v: g[0] for v, g in geom_out.items()}
    sizes = {v: g[1] for v, g in geom_in.items()}

    store = _open_store(store_uri, storage_options)
    # Detection and matching are about the main (first) label; the solve may also have
    # used others (a split's fake correspondences), so links are read for every label.
    labels = [label] if isinstance(label, str) else list(label)
    label = labels[0]
    stored = {v: store.read_points(v, label) for v in views if store.has_points(v, label)}
    points = {v: sp.loc_xyz for v, sp in stored.items()}
    matches_voxel, matches_world, matched_world_main = {}, {}, {}
    for lab in labels:
        lab_stored = stored if lab == label else {
            v: store.read_points(v, lab) for v in views if store.has_points(v, lab)}
        for c in store.read_all_correspondences(lab, on_invalid="skip"):
            a, b = c.view_a, c.view_b
            if a not in lab_stored or b not in lab_stored or len(c.idx_a) == 0:
                continue
            pa, pb = lab_stored[a].loc_xyz[c.idx_a], lab_stored[b].loc_xyz[c.idx_b]
            wa, wb = transforms.apply(before[a], pa), transforms.apply(before[b], pb)
            if lab == label:
                matched_world_main[(a, b)] = (wa, wb)
            # The solver's figures are recomputed from the matches the solve used (border matches left out
            # by the same rule; its decision does not depend on the registrations it is made under, up to
            # the noise of a match times a registration change).
            use = solved_matches(lab_stored[a], lab_stored[b], c.idx_a, c.idx_b, sizes[a], sizes[b],
                                 min_matches, wa, wb)
            pa, pb, wa, wb = pa[use], pb[use], wa[use], wb[use]
            if (a, b) in matches_voxel:
                pa = np.concatenate([matches_voxel[(a, b)][0], pa])
                pb = np.concatenate([matches_voxel[(a, b)][1], pb])
                wa = np.concatenate([matches_world[(a, b)][0], wa])
                wb = np.concatenate([matches_world[(a, b)][1], wb])
            matches_voxel[(a, b)] = (pa, pb)
            matches_world[(a, b)] = (wa, wb)

    metrics: dict[str, Any] = {"views": [list(v) for v in views], "label": label}
    out_pics: dict[str, Any] = {}
    if phase_links:
        metrics["phase"] = phase_metrics(phase_links, before, after)

    metrics["detection"] = detection_metrics(points, geom_in, p.coverage_grid)
    pictured = list(views[: p.max_pictured_views]) if pictures and p.max_pictured_views else []
    if pictured:
        out_pics["detection"] = []  # drawn below, beside the overlaps' correlations

    mat = matching_metrics(matched_world_main, pair_records, min_inliers=p.min_inliers,
                           min_inlier_ratio=p.min_inlier_ratio, min_overlap_points=p.min_overlap_points)
    residuals = mat.pop("residuals")
    metrics["matching"] = mat
    if pictures and residuals.size:
        out_pics["residuals"] = pics.data_uri(pics.histogram_picture(
            residuals, size=(p.picture_size + 120, 160), xlabel="world units"))

    if phase_links and not matches_voxel:
        # A run of phase rounds only: its links are what the solve used.
        matches_voxel = phase_link_matches(phase_links, before)
    links = link_residuals(matches_voxel, before, after)
    sol = solver_metrics(links, views, solver_report)
    metrics["solver"] = sol
    centroids = {k: (pa.mean(axis=0, keepdims=True) + pb.mean(axis=0, keepdims=True)) / 2.0
                 for k, (pa, pb) in matches_world.items()}
    metrics["loops"] = []  # measured below, beside the image reads
    if pictures and views:
        # The colour bar ends at the warning threshold: a tile inside it never looks "bad".
        out_pics["layout"] = pics.data_uri(tile_layout_picture(geom_out, sol["tiles"], sol["links"],
                                                               size=p.picture_size + 120, vmax=p.max_tile_error))

    sources = {v: open_view(sd_in, v, storage_options) for v in views}
    pairs = comparable_pairs(sd_in, views, geom_in, geom_out)
    # Each overlap's correlation, the fused image's seams, the detection pictures and the loops' closure read
    # and compute apart: one pool of parts, the longest (the fused image) first, so that the cores stay busy.
    parts = []
    if fused_uri is not None:
        parts.append(lambda: _fused(fused_uri, sd_out, geom_out, p, storage_options, pictures))
    parts.append(lambda: loop_closure(pair_models(matches_world, p.loop_model), centroids))
    parts += [lambda pr=pr: overlap_ncc_table(sources, sizes, before, after, pairs=[pr], n_samples=p.ncc_samples,
                                              max_voxels=p.max_read_voxels)[0] for pr in pairs]
    parts += [lambda v=v: detection_picture(sources[v], points.get(v, np.zeros((0, 3))), max_voxels=p.max_read_voxels,
                                            max_side=p.picture_size,
                                            caption=f"t{v[0]} s{v[1]}: {len(points.get(v, ()))} pts")
              for v in pictured]
    got = in_threads(lambda part: part(), parts)
    fused_got = got.pop(0) if fused_uri is not None else None
    metrics["loops"] = got.pop(0)
    fusion: dict[str, Any] = {"ncc": got[:len(pairs)]}
    if pictured:
        out_pics["detection"] = [(pics.data_uri(png), f"timepoint {v[0]} setup {v[1]}")
                                 for v, png in zip(pictured, got[len(pairs):])]
    if fused_got is not None:
        fusion["seam"], fused_png = fused_got
        if fused_png is not None:
            out_pics["fused"] = pics.data_uri(fused_png)
    metrics["fusion"] = fusion

    if verify_reports:
        metrics["verify"] = [
            {"round": i, "reverted": list(r.get("reverted", [])), "still_worse": list(r.get("still_worse", [])),
             "summary": r.get("summary", "")}
            for i, r in enumerate(verify_reports, start=1) if r]
    if ground_truth is not None:
        from rhapso_core.synthetic.scoring import score

        gauge = "affine" if (sol.get("model") == "affine") else "rigid"
        metrics["truth"] = score(ground_truth, sd_out, gauge=gauge).to_dict()
    from rhapso_core.qc.intensity import intensity_metrics

    intensity = intensity_metrics(solved_xml, storage_options)
    if intensity is not None:
        metrics["intensity"] = intensity
    return _jsonable(metrics), out_pics


class _NoPoints:
    """A run without interest points (phase-correlation rounds only): an empty store."""

    def has_points(self, view, label) -> bool:
        return False

    def read_all_correspondences(self, label, on_invalid="skip"):
        return []


def _open_store(store_uri: str, storage_options):
    from rhapso_core.pointstore.layout import PointStoreError

    try:
        return PointStore(store_uri, storage_options=storage_options, mode="r")
    except PointStoreError:
        return _NoPoints()


def _fused(fused_uri, sd_out, geom_out, p: QCParams, storage_options, pictures: bool):
    import zarr

    from rhapso_core.pipeline.fuse import GRID_ATTR

    img = open_image(fused_uri, storage_options=storage_options)
    level = choose_level(img, p.max_read_voxels)
    data = read_level(img, level)
    grid = zarr.open_group(fused_uri, mode="r", storage_options=storage_options).attrs.asdict().get(GRID_ATTR)
    if grid is not None:
        origin, voxel = grid["origin_xyz"], grid["voxel_size_xyz"]
        fused_views = [tuple(v) for v in grid["views"]]
    else:  # fused elsewhere: assume its NGFF geometry is the world frame (no per-world scaling known)
        origin, voxel = img.origin_zyx[::-1], img.voxel_size_zyx[::-1]
        fused_views = list(geom_out)
    to_world = level_to_world(origin, voxel, img.level_factors(level))
    geometry = {v: geom_out[v] for v in fused_views if v in geom_out}
    seam = seam_visibility(data, to_world, geometry, p.seam_width)
    seam["level"] = int(level)
    png = None
    if pictures:
        from rhapso_core.qc.units import um_per_world_unit

        px_world = float(voxel[0]) * float(img.level_factors(level)[-1])  # x of this level, world units
        um = um_per_world_unit(sd_out) if grid is not None else None
        png = pics.mip_picture(pics.view_plane(data)[0], None, p.picture_size + 120,
                               pixel_size=px_world * um if um else px_world, unit="um" if um else "world units")
    return seam, png


def build_report(
    input_xml: str,
    solved_xml: str,
    store_uri: str,
    label: str | Sequence[str] = "beads",
    *,
    pair_records: Sequence[Mapping] | None = None,
    solver_report: Mapping | None = None,
    fused_uri: str | None = None,
    ground_truth: str | os.PathLike | None = None,
    out_html: str | None = None,
    params: QCParams | None = None,
    neuroglancer_base_url: str | None = None,
    neuroglancer_serve_root: str | None = None,
    title: str = "Rhapso QC report",
    storage_options: dict | None = None,
    phase_links: Sequence[Mapping] | None = None,
    verify_reports: Sequence[Mapping | None] | None = None,
    resolved_params: str | Mapping | None = None,
) -> dict:
    """Compute every QC metric of a run, judge it, and write one self-contained HTML report.

    Parameters
    ----------
    input_xml, solved_xml, store_uri, label, pair_records, solver_report, fused_uri, ground_truth, params, storage_options, phase_links, verify_reports
        See :func:`compute_metrics`.
    out_html : str, optional
        Where to write the page; default ``qc_report.html`` next to ``solved_xml``.
    neuroglancer_base_url, neuroglancer_serve_root : str, optional
        For local data: the HTTP URL serving ``neuroglancer_serve_root`` (see
        :func:`rhapso_core.qc.neuroglancer.serve_for_neuroglancer`); the report then links a
        Neuroglancer view. Data on S3 gets a link without them.
    title : str
        Page heading.
    resolved_params : str or mapping, optional
        The run's parameter resolution (``resolved_params.json`` or its dict): shown as a table.

    Returns
    -------
    dict
        ``verdict`` ("pass" / "warn" / "fail"), ``reasons``, ``thresholds``, ``report_uri``,
        ``neuroglancer_url`` (or None) and ``metrics`` (JSON-able).
    """
    p = params or QCParams()
    metrics, pictures = compute_metrics(
        input_xml, solved_xml, store_uri, label, pair_records=pair_records, solver_report=solver_report,
        fused_uri=fused_uri, ground_truth=ground_truth, params=p, storage_options=storage_options,
        phase_links=phase_links, verify_reports=verify_reports,
    )
    v = judge(metrics, p)
    from rhapso_core.qc.parameters import load_resolved

    resolved = load_resolved(resolved_params, storage_options)
    if resolved:
        metrics["parameters"] = _jsonable(resolved)
    ng = None
    if neuroglancer_base_url is not None or is_s3(str(solved_xml)):
        from rhapso_core.qc.neuroglancer import NeuroglancerError, neuroglancer_link

        try:
            ng = neuroglancer_link(solved_xml, fused_uri, base_url=neuroglancer_base_url,
                                   serve_root=neuroglancer_serve_root, storage_options=storage_options)
        except NeuroglancerError:
            ng = None
    meta = {"input XML": input_xml, "solved XML": solved_xml, "interest points": f"{store_uri} (label {label})",
            "fused image": fused_uri, "ground truth": None if ground_truth is None else str(ground_truth)}
    from rhapso_core.qc.units import um_per_world_unit, unit_note

    meta["units"] = unit_note(um_per_world_unit(load_xml(input_xml, storage_options)))
    page = render_report(metrics, v, pictures, meta, neuroglancer=ng, title=title)
    uri = out_html or default_report_uri(solved_xml)
    written = atomic_write_bytes(uri, page.encode("utf-8"), storage_options)
    return {**v, "report_uri": written, "neuroglancer_url": ng, "metrics": metrics}
