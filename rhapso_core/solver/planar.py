"""The direct sparse solve for coplanar matches: solved in the plane's own frame.

The sparse solver fits 3-D affines (or translations). For matches that lie in one plane
(a 2-D mosaic, a thin stack whose points sit in one plane) it is run on the points
expressed in the plane's frame (two in-plane axes and the normal, origin at the points'
centre) with the height along the normal set to 0: the x and y rows then never see a
normal coordinate (its coefficients stay at their initial value, 0, through the
solver's ridge) and the normal row's targets are all 0, so it stays the identity. The
corrections are mapped back to the world frame with their out-of-plane terms set
exactly to identity: an in-plane solve, with the sparse solver's global optimum instead
of the iterative optimiser's slow convergence on bending modes of affine grids.
"""

from __future__ import annotations

import numpy as np

from rhapso_core.planar import Planarity, plane_basis
from rhapso_core.solver.graph import TileLink

__all__ = ["plane_frame", "flatten_links", "from_plane_frame"]


def plane_frame(plane: Planarity, links: list[TileLink]) -> np.ndarray:
    """World -> plane-frame rigid transform (4x4): rows of :func:`plane_basis`, origin at the points' mean."""
    r = plane_basis(plane.normal)
    pts = np.vstack([x for lk in links for x in (lk.pa, lk.pb)]) if links else np.zeros((1, 3))
    centre = pts.mean(axis=0)
    out = np.eye(4)
    out[:3, :3] = r
    out[:3, 3] = -r @ centre
    return out


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


def flatten_links(links: list[TileLink], frame: np.ndarray) -> list[TileLink]:
    """The links with points in the plane frame and their normal coordinate set to 0."""
    out = []
    for lk in links:
        pa, pb = _apply(frame, lk.pa), _apply(frame, lk.pb)
        pa[:, 2] = 0.0
        pb[:, 2] = 0.0
        out.append(TileLink(lk.ia, lk.ib, pa, pb, lk.w))
    return out


def to_plane_frame(models: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """World -> world corrections (T, 4, 4) expressed in the plane frame."""
    return np.einsum("ij,tjk,kl->til", frame, models, np.linalg.inv(frame))


def from_plane_frame(models: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Plane-frame corrections back to world -> world, out-of-plane terms set to identity."""
    m = np.array(models, dtype=np.float64)
    m[:, 2, :] = (0.0, 0.0, 1.0, 0.0)
    m[:, :, 2] = (0.0, 0.0, 1.0, 0.0)
    return np.einsum("ij,tjk,kl->til", np.linalg.inv(frame), m, frame)
