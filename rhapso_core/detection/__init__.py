"""Difference-of-Gaussian interest-point detection (BigStitcher semantics).

Public API: :class:`DetectionParams`, :class:`InterestPoints`, :func:`detect_dog`
(in-memory block), :func:`detect_view` (a view through an ImageSource, chunked),
:func:`plan_detection` + :func:`detect_chunk` + :func:`merge_points` (the same, one task
per chunk for an orchestrator).
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.detection.params import DetectionParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.detection.merge": ('cap_spatially', 'combine_close', 'merge_points',),
    "rhapso_core.detection.points": ('InterestPoints',),
    "rhapso_core.detection.view": ('ChunkTask', 'DetectionError', 'DetectionPlan', 'choose_level', 'detect_chunk', 'detect_dog', 'detect_view', 'plan_detection', 'resolve_intensity_range',),
})

__all__ = [
    "DetectionParams", "InterestPoints", "detect_dog", "detect_view", "detect_chunk",
    "plan_detection", "merge_points", "combine_close", "cap_spatially", "choose_level",
    "resolve_intensity_range", "ChunkTask", "DetectionPlan", "DetectionError",
]
