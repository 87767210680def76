"""Small records returned by the point store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .layout import ViewId

__all__ = ["StoredPoints", "Correspondences", "ViewInterestPointsEntry"]


@dataclass(frozen=True, eq=False)
class StoredPoints:
    """Interest points of one view and label.

    Attributes
    ----------
    view : (int, int)
        ``(timepoint, setup)``.
    label : str
        Interest point label, e.g. ``"beads"``.
    ids : (N,) int64
        Point ids, unique within the view (BigStitcher's interest point ids).
    loc_xyz : (N, 3) float64
        Positions in full-resolution view-voxel coordinates, x y z order.
    intensity : (N,) float32
        Image intensity at each point (NaN where unknown).
    dog : (N,) float32
        Difference-of-Gaussian response at each point (NaN where unknown).
    params : str
        Detection parameters as written into the XML's ``params`` attribute.
    token : str
        Identifier of this write; correspondences remember it to detect re-detection.
    border_margin_xyz : (3,) tuple of float or None
        Full-resolution view voxels from the view's border within which the detector's
        localisation read voxels past the border (biased positions): the solve leaves
        matches there out where the pair can spare them. None: not recorded.
    """

    view: ViewId
    label: str
    ids: np.ndarray
    loc_xyz: np.ndarray
    intensity: np.ndarray
    dog: np.ndarray
    params: str = ""
    token: str = ""
    border_margin_xyz: tuple[float, float, float] | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True, eq=False)
class Correspondences:
    """Matched points between two views for one label, oriented ``view_a -> view_b``.

    Row ``k`` says point ``idx_a[k]`` of ``view_a`` (id ``ids_a[k]``) corresponds
    to point ``idx_b[k]`` of ``view_b`` (id ``ids_b[k]``). Indices are positions in
    the arrays returned by :meth:`PointStore.read_points`.
    """

    view_a: ViewId
    view_b: ViewId
    label: str
    idx_a: np.ndarray
    idx_b: np.ndarray
    ids_a: np.ndarray
    ids_b: np.ndarray
    params: str = ""

    def __len__(self) -> int:
        return int(self.idx_a.shape[0])


class ViewInterestPointsEntry(NamedTuple):
    """One ``<ViewInterestPointsFile timepoint= setup= label= params=>path</...>`` entry."""

    timepoint: int
    setup: int
    label: str
    params: str
    path: str
