"""Interest-point matching: pair selection, RGLDM descriptors, seeded vectorised RANSAC.

Pure computation over world-frame point arrays (x y z); the orchestration reads
points, transforms them with the current registrations, and stores the
returned correspondences.

>>> import numpy as np
>>> from rhapso_core.matching import MatchingParams, match_points
>>> rng = np.random.default_rng(1)
>>> a = rng.uniform(0, 200, size=(400, 3))
>>> b = a + [30.0, -4.0, 2.0]
>>> m = match_points(a, b, MatchingParams(model="translation", num_iterations=500))
>>> m.status, m.n_inliers, bool(np.allclose(m.model[:3, 3], [30, -4, 2]))
('ok', 400, True)
"""

from .descriptors import Candidates, build_descriptors, match_descriptors, neighbor_vectors, subset_table
from .icp import icp_refine, one_to_one
from .match import PairMatch, match_points, model_for
from .pairs import Pair, overlap_box, points_in_box, select_pairs
from .params import MatchingParams
from .ransac import RansacResult, draw_samples, ransac, robust_filter

__all__ = [
    "MatchingParams",
    "Pair",
    "select_pairs",
    "points_in_box",
    "overlap_box",
    "Candidates",
    "subset_table",
    "neighbor_vectors",
    "build_descriptors",
    "match_descriptors",
    "RansacResult",
    "draw_samples",
    "ransac",
    "robust_filter",
    "icp_refine",
    "one_to_one",
    "PairMatch",
    "match_points",
    "model_for",
]
