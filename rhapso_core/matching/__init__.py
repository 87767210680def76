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

from rhapso_core._lazy import lazy_exports
from .params import MatchingParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.matching.descriptors": ('Candidates', 'build_descriptors', 'match_descriptors', 'neighbor_vectors', 'subset_table',),
    "rhapso_core.matching.icp": ('icp_refine', 'one_to_one',),
    "rhapso_core.matching.match": ('PairMatch', 'match_points', 'model_for',),
    "rhapso_core.matching.ransac": ('RansacResult', 'draw_samples', 'ransac', 'robust_filter',),
    "rhapso_core.matching.pairs": ('Pair', 'overlap_box', 'points_in_box', 'select_pairs',),
})

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
