"""Synthetic tile grids with known ground truth, for the solver's tests and benchmark.

A grid of views, each placed by a nominal (metadata) registration ``V_v``
(a translation on the grid), while the truth is ``T_v = D_v @ V_v`` with a small
random world -> world deviation ``D_v`` (translation, rigid about the tile centre,
or affine). Matches between face neighbours are sampled as true world points
``x`` in the overlap and reported where the nominal registrations put them:
``pa = V_a T_a^-1 x (+ noise)``, ``pb = V_b T_b^-1 x (+ noise)``. The exact
correction is then ``M_v = G @ D_v`` for any global ``G`` (the gauge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core import transforms
from rhapso_core.solver.records import Link, ViewId

__all__ = ["SyntheticGrid", "make_grid", "correction_rms"]


@dataclass
class SyntheticGrid:
    views: dict[ViewId, tuple[np.ndarray, tuple[int, int, int]]]  # nominal view_to_world, size xyz
    truth: dict[ViewId, np.ndarray]  # true deviation D_v (world -> world)
    links: list[Link]
    grid_index: dict[ViewId, tuple[int, int, int]]


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k


def make_grid(
    shape: tuple[int, int, int] = (4, 3, 2),
    kind: str = "translation",
    *,
    tile_size: tuple[int, int, int] = (200, 200, 100),
    overlap: float = 0.15,
    shift: float = 5.0,
    max_rotation_deg: float = 0.5,
    max_affine: float = 0.003,
    matches_per_link: int = 50,
    noise: float = 0.2,
    timepoint: int = 0,
    seed: int = 0,
) -> SyntheticGrid:
    """A grid of ``shape`` (x, y, z tiles) with ground truth of ``kind`` (translation, rigid, affine).

    Parameters
    ----------
    shape : (int, int, int)
        Tiles along x, y, z; setups are numbered x fastest.
    kind : {"translation", "rigid", "affine"}
        The true deviation model.
    tile_size : (int, int, int)
        View size in voxels (x, y, z).
    overlap : float
        Fraction of the tile size shared with each neighbour.
    shift : float
        Max true translation per axis (voxels).
    max_rotation_deg, max_affine : float
        Rigid: max rotation (degrees); affine: also a random linear perturbation up to this (unitless).
    matches_per_link : int
        Matches per face-neighbour link.
    noise : float
        Std of the Gaussian localisation noise added to every matched point (voxels).
    """
    rng = np.random.default_rng(seed)
    size = np.asarray(tile_size, dtype=np.float64)
    spacing = (size - 1) * (1 - overlap)
    views, truth, index = {}, {}, {}
    setup = 0
    for iz in range(shape[2]):
        for iy in range(shape[1]):
            for ix in range(shape[0]):
                v = (timepoint, setup)
                setup += 1
                nominal = transforms.translation(np.array([ix, iy, iz]) * spacing)
                centre = transforms.apply(nominal, (size - 1)[None] / 2)[0]
                d = np.eye(4)
                if kind in ("rigid", "affine"):
                    lin = _rotation(rng, max_rotation_deg)
                    if kind == "affine":
                        lin = lin @ (np.eye(3) + rng.uniform(-max_affine, max_affine, (3, 3)))
                    d[:3, :3] = lin
                    d[:3, 3] = centre - lin @ centre
                elif kind != "translation":
                    raise ValueError(f"unknown kind {kind!r}")
                d[:3, 3] += rng.uniform(-shift, shift, 3)
                views[v] = (nominal, tuple(int(s) for s in tile_size))
                truth[v] = d
                index[v] = (ix, iy, iz)
    by_index = {ijk: v for v, ijk in index.items()}
    links = []
    for v in sorted(views):
        ijk = np.array(index[v])
        for axis in range(3):
            o = ijk.copy()
            o[axis] += 1
            w = by_index.get(tuple(int(c) for c in o))
            if w is None:
                continue
            # Sample in the nominal overlap shrunk by the max deviation, then treat as true world points.
            lo_a, hi_a = transforms.view_bounding_box(views[v][0], tile_size)
            lo_b, hi_b = transforms.view_bounding_box(views[w][0], tile_size)
            lo = np.maximum(lo_a, lo_b) + 2 * shift
            hi = np.minimum(hi_a, hi_b) - 2 * shift
            lo[axis], hi[axis] = lo_b[axis] + 2, hi_a[axis] - 2
            x = rng.uniform(lo, hi, (matches_per_link, 3))
            ta, tb = truth[v] @ views[v][0], truth[w] @ views[w][0]
            pa = transforms.apply(views[v][0] @ transforms.invert(ta), x) + rng.normal(0, noise, x.shape)
            pb = transforms.apply(views[w][0] @ transforms.invert(tb), x) + rng.normal(0, noise, x.shape)
            links.append(Link(v, w, pa, pb))
    return SyntheticGrid(views=views, truth=truth, links=links, grid_index=index)


def correction_rms(
    grid: SyntheticGrid, corrections: dict[ViewId, np.ndarray], gauge: str = "first", n: int = 4
) -> float:
    """RMS (voxels) over every view's voxel grid of ``|M_v V_v u - G D_v V_v u|``.

    The gauge ``G`` is the global transform a solve cannot determine:
    ``"first"`` makes the first view exact (``G = M_0 D_0^-1``, right for a solve
    that keeps the first view fixed); ``"translation"``, ``"rigid"`` or
    ``"affine"`` is the best global transform of that model (least squares over
    all sample points). ``n`` sample points per axis span each view's box.
    """
    from rhapso_core.models import make_model

    first = min(grid.views)
    truth_pts, solved_pts = [], []
    for v, (nominal, size) in sorted(grid.views.items()):
        axes = [np.linspace(0, s - 1, n) for s in size]
        u = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        world = transforms.apply(nominal, u)
        truth_pts.append(transforms.apply(grid.truth[v], world))
        solved_pts.append(transforms.apply(corrections[v], world))
    p, q = np.concatenate(truth_pts), np.concatenate(solved_pts)
    if gauge == "first":
        g = corrections[first] @ transforms.invert(grid.truth[first])
    else:
        g = make_model(gauge).fit(p, q)
    return float(np.sqrt(np.mean(np.sum((transforms.apply(g, p) - q) ** 2, axis=1))))
