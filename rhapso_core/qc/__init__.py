"""Validation and visualisation of a run: metrics for every stage, a verdict, an HTML report, Neuroglancer links.

Everything is computed from a run's outputs (XMLs, interest-point store, fused
image) as plain functions; :func:`build_report` is the one call the CLI and the
flows make.

Example
-------
>>> from rhapso_core.qc import build_report                      # doctest: +SKIP
>>> result = build_report("data/dataset.xml", "out/aligned.xml",  # doctest: +SKIP
...                       "out/interestpoints.zarr", "beads", fused_uri="out/fused.ome.zarr")
>>> result["verdict"], result["report_uri"]                       # doctest: +SKIP
('pass', '/.../out/qc_report.html')
"""

from rhapso_core.qc.detection import coverage, detection_metrics, detection_picture, overlap_regions
from rhapso_core.qc.fusion import level_to_world, ncc, overlap_ncc, overlap_ncc_table, seam_visibility
from rhapso_core.qc.matching import matching_metrics, pair_residuals
from rhapso_core.qc.neuroglancer import (
    neuroglancer_link,
    neuroglancer_state,
    neuroglancer_url,
    serve_for_neuroglancer,
    source_url,
)
from rhapso_core.qc.params import QCParams
from rhapso_core.qc.report import REPORT_NAME, build_report, compute_metrics, default_report_uri
from rhapso_core.qc.solver import link_residuals, loop_closure, pair_models, solver_metrics, tile_layout_picture
from rhapso_core.qc.verdict import verdict

__all__ = [
    "QCParams",
    "build_report",
    "compute_metrics",
    "default_report_uri",
    "REPORT_NAME",
    "verdict",
    "detection_metrics",
    "detection_picture",
    "coverage",
    "overlap_regions",
    "matching_metrics",
    "pair_residuals",
    "link_residuals",
    "solver_metrics",
    "pair_models",
    "loop_closure",
    "tile_layout_picture",
    "ncc",
    "overlap_ncc",
    "overlap_ncc_table",
    "level_to_world",
    "seam_visibility",
    "neuroglancer_state",
    "neuroglancer_url",
    "neuroglancer_link",
    "source_url",
    "serve_for_neuroglancer",
]
