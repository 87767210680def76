"""Detection QC: points per view and per overlap, spatial coverage, points over a projection.

Points are in full-resolution view-voxel coordinates, x y z (as stored by the
point store); overlaps come from the views' world boxes under the registrations
the points were detected with (the input XML).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rhapso_core import transforms
from rhapso_core.image_source import ImageSource
from rhapso_core.qc._records import ViewId, name, vid
from rhapso_core.qc.pictures import mip_picture, view_plane
from rhapso_core.qc.sampling import choose_level, read_level

__all__ = ["overlap_regions", "coverage", "detection_metrics", "detection_picture"]


def overlap_regions(
    geometry: Mapping[ViewId, tuple[np.ndarray, tuple[int, int, int]]],
) -> dict[ViewId, list[tuple[ViewId, np.ndarray]]]:
    """Per view, each other view of its timepoint it overlaps and the overlap's box in its voxel frame.

    Parameters
    ----------
    geometry : mapping view -> (view_to_world 4x4, size_xyz)
        As returned by :func:`rhapso_core.pipeline.dataset.view_geometry`.

    Returns
    -------
    dict view -> list of (other view, (2, 3) box)
        Box rows are min and max corners in the view's voxel frame (x y z), clipped to ``[0, size - 1]``.
    """
    boxes = {v: transforms.view_bounding_box(a, s) for v, (a, s) in geometry.items()}
    out: dict[ViewId, list[tuple[ViewId, np.ndarray]]] = {}
    for v, (affine, size) in sorted(geometry.items()):
        inv = transforms.invert(affine)
        top = np.asarray(size, dtype=np.float64) - 1.0
        lo, hi = boxes[v]
        rows = []
        for w in sorted(geometry):
            if w == v or w[0] != v[0]:
                continue
            ilo, ihi = np.maximum(lo, boxes[w][0]), np.minimum(hi, boxes[w][1])
            if np.any(ilo >= ihi):
                continue
            corners = transforms.apply(inv, transforms.box_corners(ilo, ihi))
            blo = np.clip(corners.min(axis=0), 0.0, top)
            bhi = np.clip(corners.max(axis=0), 0.0, top)
            if np.all(bhi > blo):
                rows.append((w, np.stack([blo, bhi])))
        out[v] = rows
    return out


def coverage(points_xyz: np.ndarray, size_xyz, grid_xyz=(8, 8, 1)) -> tuple[float, int, int]:
    """Fraction of a coarse grid's cells over the view that contain at least one point.

    Parameters
    ----------
    points_xyz : (N, 3) array
        View-voxel coordinates, x y z.
    size_xyz : 3 ints
        View size (voxels); the grid splits ``[-0.5, size - 0.5)`` evenly.
    grid_xyz : 3 ints, default (8, 8, 1)
        Cells along x, y, z.

    Returns
    -------
    (fraction, occupied cells, total cells)
    """
    grid = np.maximum(np.asarray(grid_xyz, dtype=np.int64), 1)
    total = int(np.prod(grid))
    p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    if p.shape[0] == 0:
        return 0.0, 0, total
    size = np.asarray(size_xyz, dtype=np.float64)
    cell = np.floor((p + 0.5) / size * grid).astype(np.int64)
    cell = np.clip(cell, 0, grid - 1)
    occupied = len(np.unique(np.ravel_multi_index(cell.T, tuple(grid))))
    return occupied / total, occupied, total


def _inside(p: np.ndarray, box: np.ndarray) -> np.ndarray:
    return np.all((p >= box[0]) & (p <= box[1]), axis=1)


def detection_metrics(
    points_xyz: Mapping[ViewId, np.ndarray],
    geometry: Mapping[ViewId, tuple[np.ndarray, tuple[int, int, int]]],
    coverage_grid=(8, 8, 1),
) -> dict:
    """Points per view, per overlap region and spatial coverage.

    Parameters
    ----------
    points_xyz : mapping view -> (N, 3) array
        Each view's interest points (view voxels, x y z); a view absent here has none.
    geometry : mapping view -> (view_to_world 4x4, size_xyz)
        Registrations the points were detected with.
    coverage_grid : 3 ints, default (8, 8, 1)
        Cells along x, y, z for :func:`coverage`.

    Returns
    -------
    dict
        ``views``: one row per view of ``geometry`` (``n_points``, ``coverage``,
        ``overlaps``: ``[{other, n_points, box_xyz}]``), plus ``total_points`` and
        ``mean_coverage``.
    """
    regions = overlap_regions(geometry)
    rows = []
    for v in sorted(geometry):
        p = np.asarray(points_xyz.get(v, np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
        frac, occ, total = coverage(p, geometry[v][1], coverage_grid)
        overlaps = [
            {"other": vid(w), "n_points": int(_inside(p, box).sum()), "box_xyz": box.round(3).tolist()}
            for w, box in regions[v]
        ]
        rows.append({**vid(v), "name": name(v), "n_points": int(p.shape[0]), "coverage": frac,
                     "cells_with_points": occ, "cells": total, "overlaps": overlaps})
    n = [r["n_points"] for r in rows]
    return {
        "views": rows,
        "total_points": int(sum(n)),
        "mean_coverage": float(np.mean([r["coverage"] for r in rows])) if rows else 0.0,
        "coverage_grid": [int(g) for g in coverage_grid],
    }


def detection_picture(
    source: ImageSource, points_xyz: np.ndarray, *, max_voxels: int = 2_000_000, max_side: int = 240,
    caption: str = "",
) -> bytes:
    """PNG: the view (a coarse level) with its points: one plane for single planes and thin
    stacks, the maximum-intensity projection along z otherwise (:func:`view_plane`).

    Parameters
    ----------
    source : ImageSource
        The view's pixels.
    points_xyz : (N, 3) array
        Its interest points (full-resolution view voxels, x y z).
    max_voxels : int
        The finest level with at most this many voxels is read.
    max_side : int
        Largest side of the picture (pixels).
    """
    level = choose_level(source, max_voxels)
    f = np.asarray(source.level_factors(level), dtype=np.float64)
    p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    # Level coordinates of the points: (p - (f - 1) / 2) / f, in (z, y, x).
    zyx = (p[:, [2, 1, 0]] - (f - 1.0) / 2.0) / f
    image, shown, label = view_plane(read_level(source, level), zyx[:, 0])
    caption = f"{caption} ({label})" if caption else label
    return mip_picture(image, zyx[shown][:, 1:], max_side, caption)
