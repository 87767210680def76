"""A smooth non-affine tile distortion: a sinusoidal shift of view voxels that depends on z.

A warped tile images the specimen point ``true_affine @ warp(v)`` at view voxel ``v``
(x, y, z), where

    warp(v) = v + amplitude_xyz * sin(2 pi * periods * v_z / depth + phase)

(``depth`` is the tile's size along z in view voxels, so ``periods`` whole sine periods
fit in the stack). Each axis may move; a z component must keep ``z -> z + a_z sin(...)``
increasing (``2 pi periods |a_z| / depth < 1``) so the mapping stays one-to-one. No
single affine follows such a shift, which is what split-affine alignment is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ZWarp", "WarpError", "max_z_slope"]

_NEWTON_STEPS = 30
_NEWTON_TOL = 1e-10  # view voxels


class WarpError(ValueError):
    """A warp is malformed or cannot be inverted."""


def max_z_slope(amplitude_z: float, periods: float, depth: float) -> float:
    """Largest ``|d(shift_z)/dz|`` of a warp (unitless); the warp folds where it reaches 1."""
    return 2.0 * np.pi * float(periods) * abs(float(amplitude_z)) / float(depth)


@dataclass(frozen=True)
class ZWarp:
    """The z-dependent shift of one tile's view voxels (see the module docstring).

    Attributes
    ----------
    amplitude_xyz : (3,) ndarray
        Signed shift amplitude along x, y, z (view voxels).
    periods : float
        Sine periods over the tile depth.
    phase : float
        Phase of the sine at ``z = 0`` (radians).
    depth : float
        Tile size along z (view voxels).
    """

    amplitude_xyz: np.ndarray
    periods: float
    phase: float
    depth: float

    def __post_init__(self) -> None:
        a = np.asarray(self.amplitude_xyz, dtype=np.float64).reshape(-1)
        if a.shape != (3,) or not np.all(np.isfinite(a)):
            raise WarpError(f"warp amplitude_xyz must be 3 finite numbers (view voxels), got {self.amplitude_xyz!r}")
        if not (self.depth > 0 and np.isfinite(self.periods) and np.isfinite(self.phase)):
            raise WarpError(f"warp needs depth > 0 and finite periods / phase, got {self.depth}, {self.periods}, {self.phase}")
        if max_z_slope(a[2], self.periods, self.depth) >= 1.0:
            raise WarpError(
                f"warp amplitude along z {a[2]:g} voxels with {self.periods:g} periods over {self.depth:g} voxels folds "
                f"the stack (need 2 pi periods |a_z| / depth < 1)"
            )
        object.__setattr__(self, "amplitude_xyz", a)

    def _angle(self, z: np.ndarray) -> np.ndarray:
        return 2.0 * np.pi * self.periods * np.asarray(z, dtype=np.float64) / self.depth + self.phase

    def shift(self, z: np.ndarray) -> np.ndarray:
        """Shift ``(N, 3)`` (view voxels, xyz) of the voxels at view z ``(N,)``."""
        return np.sin(self._angle(z))[..., None] * self.amplitude_xyz

    def apply(self, points_xyz: np.ndarray) -> np.ndarray:
        """Warped positions ``v + shift(v_z)`` of view voxels ``(N, 3)`` (xyz)."""
        p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        return p + self.shift(p[:, 2])

    def invert(self, warped_xyz: np.ndarray) -> np.ndarray:
        """View voxels ``v`` with ``apply(v) == warped_xyz`` ``(N, 3)`` (xyz).

        Only z is implicit (the shift depends on z alone): Newton's method on
        ``z + a_z sin(...) = u_z``, which converges because the map is increasing;
        x and y follow from the solved z. Exact to ~1e-10 voxels.
        """
        u = np.asarray(warped_xyz, dtype=np.float64).reshape(-1, 3)
        z = u[:, 2].copy()
        a_z = self.amplitude_xyz[2]
        if a_z != 0.0:
            k = 2.0 * np.pi * self.periods / self.depth
            for _ in range(_NEWTON_STEPS):
                ang = self._angle(z)
                step = (z + a_z * np.sin(ang) - u[:, 2]) / (1.0 + a_z * k * np.cos(ang))
                z -= step
                if np.all(np.abs(step) < _NEWTON_TOL):
                    break
            else:  # pragma: no cover - the slope check in __post_init__ makes this unreachable
                raise WarpError("warp inverse did not converge")
        out = u - self.shift(z)
        out[:, 2] = z
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "amplitude_xyz": [float(v) for v in self.amplitude_xyz],
            "periods": float(self.periods),
            "phase": float(self.phase),
            "depth": float(self.depth),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "warp") -> "ZWarp":
        try:
            return cls(
                amplitude_xyz=np.asarray(d["amplitude_xyz"], dtype=np.float64),
                periods=float(d["periods"]),
                phase=float(d["phase"]),
                depth=float(d["depth"]),
            )
        except KeyError as exc:
            raise WarpError(f"{where}: lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise WarpError(f"{where}: {exc}") from None
