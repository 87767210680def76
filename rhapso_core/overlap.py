"""Where two views overlap: their world bounding boxes, the intersection, and that box in a view's voxels.

Frames: world boxes are ``(min_xyz, max_xyz)`` of the views' voxel centres under their
view -> world affines (x y z); view boxes are ``(2, 3)`` arrays ``[min, max]`` of view
voxels, x y z, inclusive. One implementation for stitching, pair retries, the parameter
survey, intensity sampling, QC and detection's overlap regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhapso_core import transforms

__all__ = ["world_box", "box_intersection", "boxes_overlap", "world_overlap", "overlap_box", "world_box_in_view"]

Box = tuple[np.ndarray, np.ndarray]


def world_box(affine: np.ndarray, size_xyz: Sequence[int], *, flat_half_voxel: bool = False) -> Box:
    """World box of a view's voxel centres ``[0, size - 1]``.

    ``flat_half_voxel``: a single-voxel axis (one plane) counts half a voxel each side, so two
    planes whose recorded z differ by a fraction of a voxel still overlap.
    """
    if not flat_half_voxel:
        return transforms.view_bounding_box(affine, size_xyz)
    size = np.asarray(size_xyz, dtype=np.float64)
    flat = size <= 1
    c = transforms.apply(affine, transforms.box_corners(np.where(flat, -0.5, 0.0), np.where(flat, 0.5, size - 1.0)))
    return c.min(axis=0), c.max(axis=0)


def box_intersection(a: Box, b: Box) -> Box:
    """The intersection of two world boxes; empty when ``hi < lo`` on some axis."""
    return np.maximum(a[0], b[0]), np.minimum(a[1], b[1])


def boxes_overlap(a: Box, b: Box, *, strict: bool = True) -> bool:
    """True when the boxes share a volume (``strict``) or at least touch."""
    lo, hi = box_intersection(a, b)
    return bool(np.all(hi > lo) if strict else np.all(hi >= lo))


def world_overlap(a2w: np.ndarray, size_a, b2w: np.ndarray, size_b, *, flat_half_voxel: bool = False) -> Box:
    """The intersection of two views' world boxes (possibly empty: see :func:`box_intersection`)."""
    return box_intersection(world_box(a2w, size_a, flat_half_voxel=flat_half_voxel),
                            world_box(b2w, size_b, flat_half_voxel=flat_half_voxel))


def overlap_box(a2w: np.ndarray, size_a, b2w: np.ndarray, size_b, *, strict: bool = False,
                flat_half_voxel: bool = False) -> Box | None:
    """:func:`world_overlap`, or None when it is empty (``strict``: also when it has no volume)."""
    lo, hi = world_overlap(a2w, size_a, b2w, size_b, flat_half_voxel=flat_half_voxel)
    empty = np.any(hi <= lo) if strict else np.any(hi < lo)
    return None if empty else (lo, hi)


def world_box_in_view(affine: np.ndarray, size_xyz: Sequence[int], lo: np.ndarray, hi: np.ndarray, *,
                      whole_voxels: bool = False) -> np.ndarray | None:
    """The world box ``[lo, hi]`` in the view's voxels, ``(2, 3)`` x y z, clipped to the view; None if it
    has no volume there (along a single-plane axis: if it does not reach within half a voxel of the
    plane). ``whole_voxels``: widened to the voxels that contain its corners."""
    corners = transforms.apply(transforms.invert(affine), transforms.box_corners(lo, hi))
    vlo, vhi = corners.min(axis=0), corners.max(axis=0)
    # A single-plane axis has no volume: the box meets the plane when it reaches within half a voxel.
    flat = np.asarray(size_xyz) <= 1
    meets_plane = (vlo <= 0.5) & (vhi >= -0.5)
    if whole_voxels:
        vlo, vhi = np.floor(vlo), np.ceil(vhi)
    top = np.asarray(size_xyz, dtype=np.float64) - 1.0
    vlo, vhi = np.clip(vlo, 0.0, top), np.clip(vhi, 0.0, top)
    ok = np.where(flat, meets_plane, vhi > vlo)
    return np.stack([vlo, vhi]) if np.all(ok) else None
