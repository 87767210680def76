"""Image-based pairwise stitching: phase correlation over each pair's overlap, then a global
translation solve of the links (BigStitcher's "Calculate pairwise shifts" + "Optimize globally").

Pure computation on arrays and image sources; :mod:`rhapso_core.pipeline.phase` runs it over a
dataset, reading only the overlap boxes.
"""

from rhapso_core.stitching.globalopt import PHASE_LABEL, anchor_links, solve_phase_links, solver_links
from rhapso_core.stitching.pairwise import choose_level, correlate_views, level_affine, overlap_box
from rhapso_core.stitching.params import StitchingParams
from rhapso_core.stitching.phase import PhaseResult, ncc, phase_correlate
from rhapso_core.stitching.records import PhaseLink, PhaseRoundRecord, registration_hash

__all__ = [
    "PHASE_LABEL",
    "PhaseLink",
    "PhaseResult",
    "PhaseRoundRecord",
    "StitchingParams",
    "anchor_links",
    "choose_level",
    "correlate_views",
    "level_affine",
    "ncc",
    "overlap_box",
    "phase_correlate",
    "registration_hash",
    "solve_phase_links",
    "solver_links",
]
