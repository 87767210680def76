"""Affine transforms: the one convention every stage uses.

Frames and axis order
---------------------
* BigStitcher XML stores each ``ViewTransform`` as 12 numbers, a row-major 3x4
  matrix acting on ``(x, y, z)``.
* In this package an affine is a ``(4, 4)`` float64 matrix acting on homogeneous
  column vectors ``(x, y, z, 1)``. Point arrays are ``(N, 3)`` in x, y, z order.
* A view's *view-voxel -> world* transform is ``T1 @ T2 @ ... @ Tn`` for the XML
  list ``[T1, ..., Tn]``: the first listed transform is applied last. A solve
  therefore *prepends* its correction (BigStitcher's semantics).
* Image arrays are indexed ``(z, y, x)``. :func:`xyz_to_zyx` converts an affine
  between the two axis orders, so array code never permutes by hand.
* View-voxel coordinates put voxel centres on integers: voxel ``(i, j, k)``
  (x, y, z) covers ``[i - 0.5, i + 0.5]`` and the view's content spans
  ``[0, size - 1]`` in each axis (BigStitcher / ImgLib2 convention).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "identity",
    "from_xml_values",
    "to_xml_values",
    "compose",
    "apply",
    "invert",
    "translation",
    "scaling",
    "xyz_to_zyx",
    "view_bounding_box",
    "box_corners",
]

_PERM = np.array(
    [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64
)


def identity() -> np.ndarray:
    return np.eye(4)


def from_xml_values(values: Sequence[float] | str) -> np.ndarray:
    """Build a 4x4 affine from BigStitcher's 12 row-major numbers (a string or a sequence)."""
    if isinstance(values, str):
        values = [float(v) for v in values.split()]
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (12,):
        raise ValueError(f"an affine needs 12 numbers (row-major 3x4), got {arr.size}")
    out = np.eye(4)
    out[:3, :] = arr.reshape(3, 4)
    return out


def to_xml_values(affine: np.ndarray) -> list[float]:
    """The 12 row-major numbers BigStitcher writes for a 4x4 affine."""
    a = np.asarray(affine, dtype=np.float64)
    return [float(v) for v in a[:3, :].ravel()]


def compose(transforms: Iterable[np.ndarray]) -> np.ndarray:
    """``T1 @ T2 @ ... @ Tn``: the XML order, first listed applied last."""
    out = np.eye(4)
    for t in transforms:
        out = out @ np.asarray(t, dtype=np.float64)
    return out


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to ``(N, 3)`` points (same axis order as the affine)."""
    pts = np.asarray(points, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return pts @ a[:3, :3].T + a[:3, 3]


def invert(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    out = np.eye(4)
    inv = np.linalg.inv(a[:3, :3])
    out[:3, :3] = inv
    out[:3, 3] = -inv @ a[:3, 3]
    return out


def translation(t: Sequence[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = np.asarray(t, dtype=np.float64)
    return out


def scaling(s: Sequence[float]) -> np.ndarray:
    out = np.eye(4)
    out[[0, 1, 2], [0, 1, 2]] = np.asarray(s, dtype=np.float64)
    return out


def xyz_to_zyx(affine: np.ndarray) -> np.ndarray:
    """The same map expressed on (z, y, x) vectors (the inverse conversion is the same call)."""
    return _PERM @ np.asarray(affine, dtype=np.float64) @ _PERM


def box_corners(lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of an axis-aligned box given by its min and max corner."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    sel = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=bool)
    return np.where(sel, hi, lo)


def view_bounding_box(affine: np.ndarray, size_xyz: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """World-frame bounding box ``(min_xyz, max_xyz)`` of a view's voxel centres ``[0, size - 1]``."""
    size = np.asarray(size_xyz, dtype=np.float64)
    corners = apply(affine, box_corners(np.zeros(3), size - 1.0))
    return corners.min(axis=0), corners.max(axis=0)
