"""Faces of a single-plane grid: the overlap of two planes is an area, not an empty volume.

Before, the volume of two planes' shared box was 0 (no depth), so a 2-D mosaic had no faces:
failed pairs were never linked by phase correlation and every anchor was dropped as a corner.
"""

from __future__ import annotations

from rhapso_core import transforms
from rhapso_core.pipeline.match import PairRecord
from rhapso_core.pipeline.phase_fallback import _faces


def _record(a, b):
    return PairRecord((0, a), (0, b), "beads", 10, 10, 0, 0, float("nan"), "too_few_inliers", "", None)


def test_a_2x2_plane_grid_has_four_faces_and_two_corners():
    step = 205.0  # 256-pixel tiles, 20 % overlap
    geometry = {(0, i): (transforms.translation([step * (i % 2), step * (i // 2), 0.0]), (256, 256, 1))
                for i in range(4)}
    pairs = [(0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2)]
    faces = _faces(geometry, [_record(a, b) for a, b in pairs], 0.25)
    assert faces == {frozenset(((0, a), (0, b))) for a, b in pairs[:4]}
    # Two planes at different depths do not overlap at all.
    apart = dict(geometry)
    apart[(0, 1)] = (transforms.translation([step, 0.0, 3.0]), (256, 256, 1))
    assert frozenset(((0, 0), (0, 1))) not in _faces(apart, [_record(a, b) for a, b in pairs], 0.25)
    # 3-D tiles as before: volumes.
    geometry3 = {v: (g[0], (256, 256, 32)) for v, g in geometry.items()}
    assert _faces(geometry3, [_record(a, b) for a, b in pairs], 0.25) == faces
