"""Which views to match, and the world region where they overlap.

Views are compared by their world-frame bounding boxes under the current
registrations (:func:`rhapso_core.transforms.view_bounding_box`); the overlap
box of a pair is the intersection of the two boxes. Only points inside it take
part in matching (:func:`points_in_box`), so a tile's far side never produces
candidates.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rhapso_core import transforms

__all__ = ["Pair", "select_pairs", "points_in_box", "overlap_box"]


@dataclass(frozen=True, eq=False)
class Pair:
    """Two views to match.

    Attributes
    ----------
    a, b : ViewId
        The views, ``a`` before ``b`` in the input order; ``(timepoint, setup)`` tuples in
        this project, any hashable works.
    overlap_box_world : (2, 3) float64
        ``[min_xyz, max_xyz]`` of the intersection of both views' world bounding boxes
        (world frame, x y z). For ``mode="all"`` pairs that do not overlap it is empty
        (some min > max).
    """

    a: Hashable
    b: Hashable
    overlap_box_world: np.ndarray

    @property
    def overlaps(self) -> bool:
        return bool(np.all(self.overlap_box_world[0] <= self.overlap_box_world[1]))


def overlap_box(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Intersection ``(2, 3)`` of two ``[min_xyz, max_xyz]`` boxes (empty when some min > max)."""
    a = np.asarray(box_a, dtype=np.float64)
    b = np.asarray(box_b, dtype=np.float64)
    return np.stack([np.maximum(a[0], b[0]), np.minimum(a[1], b[1])])


def _timepoint(view: Hashable, attributes: Mapping[Hashable, Mapping[str, Any]] | None) -> Any:
    if attributes is not None and "timepoint" in attributes.get(view, {}):
        return attributes[view]["timepoint"]
    if isinstance(view, tuple) and len(view) == 2:
        return view[0]
    raise ValueError(
        f"select_pairs: cannot tell the timepoint of view {view!r}; pass views as (timepoint, setup) "
        "or give attributes[view]['timepoint']"
    )


def select_pairs(
    views: Mapping[Hashable, tuple[np.ndarray, Sequence[float]]],
    mode: Literal["overlapping", "all"] = "overlapping",
    group_by: Sequence[str] = (),
    attributes: Mapping[Hashable, Mapping[str, Any]] | None = None,
    same_timepoint: bool = True,
    margin: float = 0.0,
) -> list[Pair]:
    """Pairs of views to match.

    Parameters
    ----------
    views : mapping ViewId -> (view_to_world (4, 4), size_xyz (3,))
        Each view's current registration (view voxel -> world, x y z) and its size in
        voxels (x y z); voxel centres span ``[0, size - 1]``.
    mode : {"overlapping", "all"}
        ``"overlapping"`` (default): only pairs whose world bounding boxes intersect
        (after growing each box by ``margin``). ``"all"``: every pair.
    group_by : sequence of str
        Attribute names (e.g. ``("channel",)``, ``("channel", "illumination")``) whose
        values must be equal for two views to be paired: views are split into groups
        by these attributes and matched within each group only. Default: no split.
    attributes : mapping ViewId -> mapping, optional
        Per-view attributes (``channel``, ``illumination``, ``tile``, ``timepoint`` ...)
        read by ``group_by`` and, if present, for the timepoint.
    same_timepoint : bool
        Pair only views of the same timepoint (default True; the timepoint is
        ``view[0]`` of a ``(timepoint, setup)`` view id unless ``attributes`` gives it).
    margin : float
        Grow every box by this much on each side before testing overlap (world units,
        default 0). The reported overlap box is not grown.

    Returns
    -------
    list of Pair
        In input order of ``views`` (``a`` precedes ``b``).
    """
    if mode not in ("overlapping", "all"):
        raise ValueError(f"select_pairs: mode must be 'overlapping' or 'all', got {mode!r}")
    keys = list(views)
    group_by = tuple(group_by)
    if group_by and attributes is None:
        raise ValueError(f"select_pairs: group_by={group_by} needs an attributes mapping")
    boxes = {}
    for v in keys:
        affine, size = views[v]
        lo, hi = transforms.view_bounding_box(np.asarray(affine, dtype=np.float64), size)
        boxes[v] = np.stack([lo, hi])

    def group_key(v):
        key = []
        if same_timepoint:
            key.append(_timepoint(v, attributes))
        for name in group_by:
            attrs = attributes.get(v)
            if attrs is None or name not in attrs:
                raise ValueError(f"select_pairs: view {v!r} has no attribute {name!r} to group by")
            key.append(attrs[name])
        return tuple(key)

    ids: dict = {}
    group = np.array([ids.setdefault(group_key(v), len(ids)) for v in keys], dtype=np.int64)
    lo = np.stack([boxes[v][0] for v in keys]) if keys else np.zeros((0, 3))
    hi = np.stack([boxes[v][1] for v in keys]) if keys else np.zeros((0, 3))
    pairs = []
    # One vectorised comparison per view against all later views (not a loop over pairs).
    for i in range(len(keys)):
        j = np.arange(i + 1, len(keys))
        j = j[group[j] == group[i]]
        box_lo = np.maximum(lo[i], lo[j])
        box_hi = np.minimum(hi[i], hi[j])
        if mode == "overlapping":
            hit = np.all(box_lo - margin <= box_hi + margin, axis=1)
            j, box_lo, box_hi = j[hit], box_lo[hit], box_hi[hit]
        for jj, bl, bh in zip(j.tolist(), box_lo, box_hi):
            pairs.append(Pair(keys[i], keys[jj], np.stack([bl, bh])))
    return pairs


def points_in_box(points_world: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Mask of the points inside a world box (boundary included).

    Parameters
    ----------
    points_world : (N, 3) float
        Points in the world frame, x y z.
    box : (2, 3) float
        ``[min_xyz, max_xyz]`` in the world frame.
    margin : float
        Grow the box by this much on each side (world units, default 0).

    Returns
    -------
    (N,) bool
    """
    p = np.asarray(points_world, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points_in_box: points must be (N, 3), got {p.shape}")
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (2, 3):
        raise ValueError(f"points_in_box: box must be (2, 3) [min_xyz, max_xyz], got {b.shape}")
    return np.all((p >= b[0] - margin) & (p <= b[1] + margin), axis=1)
