"""Per-view intensity maps and the per-channel flat field, and applying them to pixels.

A view's sampled value ``x`` at view voxel ``v`` (x, y, z; level 0, centres on
integers) is mapped to

    y = A(v) * x' + B(v),      x' = (x - d) / F(u, w) + d

* ``A``, ``B``: the view's linear map, one ``(a, b)`` per cell of a coarse grid of
  ``cells_xyz`` cells over the view (one cell: one map per view). As in
  BigStitcher-Spark (mvr ``TransformCoefficients``) a cell's coefficient sits at the
  cell's centre and the map is interpolated linearly between centres (clamped
  beyond the outer ones): view voxel ``v`` is at coefficient coordinate
  ``v / (size / cells) - 0.5`` per axis.
* ``F``: the channel's flat field (vignetting), a centrally symmetric polynomial of the
  in-plane position ``u = 2 v_x / (n_x - 1) - 1``, ``w = 2 v_y / (n_y - 1) - 1`` with ``F(0, 0) = 1``,
  acting on the signal above the camera's dark level ``d`` (counts).

``x'`` is the flat-field corrected value; without a flat field (``F = 1``) this is ``y = A x + B``: BigStitcher's affine
``<IntensityAdjustments>`` model ``(a, b)`` for one cell, or BigStitcher-Spark's
coefficient field for a grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["FlatField", "ViewIntensity", "flatfield_terms", "cell_weights_1d", "cell_weights"]


def flatfield_terms(degree: int) -> tuple[tuple[int, int], ...]:
    """Exponents ``(i, j)`` of the monomials ``u^i w^j`` of a flat field: even ``i + j``, ``2 <= i + j <= degree``.

    Only centrally symmetric terms: an odd term (a vignette off the tile's centre) changes
    the two sides of every overlap in opposite directions, exactly as a gain gradient
    across the tile grid does, so overlaps cannot tell it from the per-view gains.
    """
    return tuple((i, t - i) for t in range(2, degree + 1, 2) for i in range(t, -1, -1))


@dataclass(frozen=True)
class FlatField:
    """``F(u, w) = 1 + sum_k c_k u^i_k w^j_k`` and the dark level ``d`` (counts) it acts above."""

    degree: int
    coefficients: tuple[float, ...]
    dark: float

    def __post_init__(self):
        if len(self.coefficients) != len(flatfield_terms(self.degree)):
            raise ValueError(
                f"flat field of degree {self.degree} needs {len(flatfield_terms(self.degree))} coefficients, "
                f"got {len(self.coefficients)}"
            )

    def basis(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Monomials ``(K, *u.shape)`` at normalised positions."""
        return np.stack([u ** i * w ** j for i, j in flatfield_terms(self.degree)])

    def evaluate(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        u, w = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(w, np.float64))
        return 1.0 + np.tensordot(np.asarray(self.coefficients, np.float64), self.basis(u, w), axes=1)

    def to_dict(self) -> dict:
        return {"degree": self.degree, "coefficients": [float(c) for c in self.coefficients], "dark": float(self.dark)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "flat field") -> "FlatField":
        try:
            return cls(int(d["degree"]), tuple(float(c) for c in d["coefficients"]), float(d["dark"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: malformed flat field ({exc})") from None


def normalised_position(v: np.ndarray, n: int) -> np.ndarray:
    """View voxel coordinate -> ``[-1, 1]`` across an axis of ``n`` voxels."""
    return 2.0 * np.asarray(v, np.float64) / max(n - 1, 1) - 1.0


def level_voxel_centres(shape_zyx, box_start_zyx, level_factors_zyx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """View-voxel coordinates (z, y, x) of a level box's voxel centres, one array per axis.

    Level voxel ``i`` of a level with factor ``f`` sits at view voxel ``f * i + (f - 1) / 2``;
    the box starts at level voxel ``box_start_zyx``.
    """
    f = np.asarray(level_factors_zyx, np.float64)
    return tuple(f[k] * (box_start_zyx[k] + np.arange(shape_zyx[k], dtype=np.float64)) + (f[k] - 1.0) / 2.0
                 for k in range(3))  # type: ignore[return-value]


def cell_weights_1d(v: np.ndarray, size: int, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation between cell centres along one axis.

    Returns ``(i0, i1, f)``: coefficient ``(1 - f) c[i0] + f c[i1]`` at view voxel ``v``.
    """
    v = np.asarray(v, np.float64)
    if cells == 1:
        z = np.zeros(v.shape, np.int64)
        return z, z, np.zeros(v.shape)
    c = np.clip(v / (size / cells) - 0.5, 0.0, cells - 1.0)
    i0 = np.minimum(np.floor(c).astype(np.int64), cells - 2)
    return i0, i0 + 1, c - i0


def cell_weights(points_xyz: np.ndarray, size_xyz: Sequence[int], cells_xyz: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell indices ``(N, k)`` and weights ``(N, k)`` of points (view voxels, x y z).

    ``k`` is 2 per axis with more than one cell (8 at most, 1 for one cell per view). Flat index of cell ``(cx, cy, cz)`` is ``(cz * ny + cy) * nx + cx``, the C order of
    a ``(z, y, x)`` array of cells.
    """
    p = np.asarray(points_xyz, np.float64).reshape(-1, 3)
    per_axis = [cell_weights_1d(p[:, a], int(size_xyz[a]), int(cells_xyz[a])) for a in range(3)]
    nx, ny = int(cells_xyz[0]), int(cells_xyz[1])
    idx, wts = [], []
    corners = [(0, 1) if int(c) > 1 else (0,) for c in cells_xyz]
    for bz in corners[2]:
        for by in corners[1]:
            for bx in corners[0]:
                ix = per_axis[0][bx]
                iy = per_axis[1][by]
                iz = per_axis[2][bz]
                wx = per_axis[0][2] if bx else 1.0 - per_axis[0][2]
                wy = per_axis[1][2] if by else 1.0 - per_axis[1][2]
                wz = per_axis[2][2] if bz else 1.0 - per_axis[2][2]
                idx.append((iz * ny + iy) * nx + ix)
                wts.append(wx * wy * wz)
    return np.stack(idx, axis=1), np.stack(wts, axis=1)


def _lerp(c0, c1, f):
    # (1 - f) c0 + f c1 as cell_weights_1d defines it; exactly c0 where f is 0 (one cell).
    return c0 * (1.0 - f) + c1 * f


def _in_plane(cells_zyx: np.ndarray, wy, wx) -> np.ndarray:
    """``(cz, ny, nx)``: the cell coefficients interpolated along x, then y (float64)."""
    (iy0, iy1, fy), (ix0, ix1, fx) = wy, wx
    t = _lerp(cells_zyx[:, :, ix0], cells_zyx[:, :, ix1], fx)
    return _lerp(t[:, iy0, :], t[:, iy1, :], fy[:, None])


@numba.njit(cache=True, nogil=True)
def _map_planes(src, a_cells, b_cells, iz0, iz1, fz, fl, d, flat, out):  # pragma: no cover - compiled
    """``out[z] = a * x + b`` plane by plane, ``a`` and ``b`` the z interpolation of the in-plane
    fields (float64, rounded to float32), ``x`` the pixel in float32, flat-field corrected when
    ``flat`` (``(x - d) / fl + d``). One pass without temporaries; the same operations, in the same
    order and precision, as the NumPy expressions they replace (numba contracts no
    multiply-add without fastmath)."""
    nz, ny, nx = src.shape
    for z in range(nz):
        c0, c1, f = iz0[z], iz1[z], fz[z]
        g = 1.0 - f
        for y in range(ny):
            for x in range(nx):
                a = np.float32(a_cells[c0, y, x] * g + a_cells[c1, y, x] * f)
                b = np.float32(b_cells[c0, y, x] * g + b_cells[c1, y, x] * f)
                v = np.float32(src[z, y, x])
                if flat:
                    v = (v - d) / fl[y, x] + d
                out[z, y, x] = a * v + b


@dataclass(frozen=True)
class ViewIntensity:
    """One view's intensity map (see the module docstring).

    ``a`` and ``b`` are ``(cz, cy, cx)`` arrays of cell coefficients (``(1, 1, 1)`` for
    one map per view); ``flatfield`` is the view's channel's, or None.
    """

    size_xyz: tuple[int, int, int]
    a: np.ndarray
    b: np.ndarray
    flatfield: FlatField | None = None

    def __post_init__(self):
        a = np.asarray(self.a, np.float64)
        b = np.asarray(self.b, np.float64)
        if a.ndim != 3 or a.shape != b.shape:
            raise ValueError(f"intensity coefficients a {a.shape} and b {b.shape} must be equal (z, y, x) grids")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError("intensity coefficients must be finite")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    @property
    def cells_xyz(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.a.shape[::-1])  # type: ignore[return-value]

    @classmethod
    def affine(cls, size_xyz, a: float, b: float, flatfield: FlatField | None = None) -> "ViewIntensity":
        return cls(tuple(size_xyz), np.full((1, 1, 1), float(a)), np.full((1, 1, 1), float(b)), flatfield)

    def is_identity(self) -> bool:
        return self.flatfield is None and bool(np.all(self.a == 1.0) and np.all(self.b == 0.0))

    def map_points(self, values: np.ndarray, points_xyz: np.ndarray) -> np.ndarray:
        """Mapped values at view voxel points ``(N, 3)`` x y z."""
        p = np.asarray(points_xyz, np.float64).reshape(-1, 3)
        idx, w = cell_weights(p, self.size_xyz, self.cells_xyz)
        a = np.sum(self.a.ravel()[idx] * w, axis=1)
        b = np.sum(self.b.ravel()[idx] * w, axis=1)
        x = np.asarray(values, np.float64)
        if self.flatfield is None:
            return a * x + b
        ff = self.flatfield
        f = ff.evaluate(normalised_position(p[:, 0], self.size_xyz[0]), normalised_position(p[:, 1], self.size_xyz[1]))
        return a * ((x - ff.dark) / f + ff.dark) + b

    def map_box(self, src_zyx: np.ndarray, box_start_zyx: Sequence[int], level_factors_zyx: Sequence[float]) -> np.ndarray:
        """Mapped float32 copy of a box read from a pyramid level.

        ``box_start_zyx`` is the level voxel of ``src[0, 0, 0]``; level voxel ``i`` sits at
        view voxel ``f * i + (f - 1) / 2``. The map is evaluated at each level voxel's
        centre; fusion interpolates the mapped values, which for a map that is smooth
        over a voxel equals mapping the interpolated value.

        A voxel's value depends on its own position only, never on the box around it (the
        same bits from any box that holds it: fusion may map a view's box once for several
        blocks), and memory is the float32 result plus the in-plane fields (two float64 planes
        per z cell).
        """
        vz, vy, vx = level_voxel_centres(src_zyx.shape, box_start_zyx, level_factors_zyx)
        sx, sy, sz = self.size_xyz
        cx, cy, cz = self.cells_xyz
        wy, wx = cell_weights_1d(vy, sy, cy), cell_weights_1d(vx, sx, cx)
        # The cells interpolated in x, then y, for each z cell; then each plane in z, one
        # plane at a time. The order is fixed: a contraction order chosen per call (einsum's
        # optimize) made a voxel's last bit depend on the box's shape.
        a_cells, b_cells = _in_plane(self.a, wy, wx), _in_plane(self.b, wy, wx)
        iz0, iz1, fz = cell_weights_1d(vz, sz, cz)
        fl = d = None
        if self.flatfield is not None:
            ff = self.flatfield
            fl = ff.evaluate(normalised_position(vx, sx)[None, :], normalised_position(vy, sy)[:, None]).astype(np.float32)
            d = np.float32(ff.dark)
        out = np.empty(src_zyx.shape, np.float32)
        if fl is None:
            fl, d = np.ones((1, 1), np.float32), None
        _map_planes(np.ascontiguousarray(src_zyx), a_cells, b_cells, iz0, iz1, fz,
                    np.ascontiguousarray(fl), np.float32(0.0 if d is None else d), d is not None, out)
        return out
