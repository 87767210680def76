"""Image-based pairwise stitching: phase correlation over each pair's overlap, then a global
translation solve of the links (BigStitcher's "Calculate pairwise shifts" + "Optimize globally").

Pure computation on arrays and image sources; :mod:`rhapso_core.pipeline.phase` runs it over a
dataset, reading only the overlap boxes.
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.stitching.params import StitchingParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.stitching.globalopt": ("PHASE_LABEL", "anchor_links", "consistent_links", "link_weight", "solve_phase_links",
                                          "solver_links"),
    "rhapso_core.stitching.pairwise": ("choose_level", "correlate_views", "level_affine", "overlap_box"),
    "rhapso_core.stitching.phase": ("PhaseResult", "ncc", "phase_correlate"),
    "rhapso_core.stitching.records": ("PhaseLink", "PhaseRoundRecord", "registration_hash"),
})

__all__ = [
    "PHASE_LABEL",
    "PhaseLink",
    "PhaseResult",
    "PhaseRoundRecord",
    "StitchingParams",
    "anchor_links",
    "choose_level",
    "consistent_links",
    "correlate_views",
    "level_affine",
    "link_weight",
    "ncc",
    "overlap_box",
    "phase_correlate",
    "registration_hash",
    "solve_phase_links",
    "solver_links",
]
