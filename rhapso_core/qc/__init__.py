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

from rhapso_core._lazy import lazy_exports
from rhapso_core.qc.params import QCParams
from rhapso_core.qc.verdict import verdict

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.qc.detection": ('coverage', 'detection_metrics', 'detection_picture', 'overlap_regions',),
    "rhapso_core.qc.fusion": ('level_to_world', 'ncc', 'overlap_ncc', 'overlap_ncc_table', 'seam_visibility',),
    "rhapso_core.qc.matching": ('matching_metrics', 'pair_residuals',),
    "rhapso_core.qc.neuroglancer": ('neuroglancer_link', 'neuroglancer_state', 'neuroglancer_url', 'serve_for_neuroglancer', 'source_url',),
    "rhapso_core.qc.report": ('REPORT_NAME', 'build_report', 'compute_metrics', 'default_report_uri',),
    "rhapso_core.qc.solver": ('link_residuals', 'loop_closure', 'pair_models', 'solver_metrics', 'tile_layout_picture',),
})

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
