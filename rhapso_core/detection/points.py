"""The interest-point record every detection function returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["InterestPoints"]


@dataclass(frozen=True)
class InterestPoints:
    """Detected points of one view (or one chunk of it).

    Attributes
    ----------
    ids : (N,) int64
        Point ids, unique within a view and label once merged.
    loc_xyz : (N, 3) float64
        Sub-voxel positions in full-resolution *view voxel* coordinates, x y z order
        (voxel centres on integers).
    intensity : (N,) float32
        Image value at the integer peak of the working (downsampled) grid, in the
        image's own units (mean over the downsampling block).
    dog : (N,) float32
        Fitted DoG value at the sub-voxel peak (normalised-intensity units; negative for minima).
    """

    ids: np.ndarray
    loc_xyz: np.ndarray
    intensity: np.ndarray
    dog: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "ids", np.asarray(self.ids, dtype=np.int64).reshape(-1))
        object.__setattr__(
            self, "loc_xyz", np.asarray(self.loc_xyz, dtype=np.float64).reshape(-1, 3)
        )
        object.__setattr__(
            self, "intensity", np.asarray(self.intensity, dtype=np.float32).reshape(-1)
        )
        object.__setattr__(self, "dog", np.asarray(self.dog, dtype=np.float32).reshape(-1))
        n = self.ids.shape[0]
        if not (self.loc_xyz.shape[0] == self.intensity.shape[0] == self.dog.shape[0] == n):
            raise ValueError(
                "InterestPoints: ids, loc_xyz, intensity and dog must have the same length, got "
                f"{n}, {self.loc_xyz.shape[0]}, {self.intensity.shape[0]}, {self.dog.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> InterestPoints:
        return cls(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0, np.float32),
                   np.zeros(0, np.float32))

    @classmethod
    def concat(cls, parts: Sequence[InterestPoints]) -> InterestPoints:
        """Join several records (ids are kept as they are; renumber with :meth:`renumbered`)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.loc_xyz for p in parts]),
            np.concatenate([p.intensity for p in parts]),
            np.concatenate([p.dog for p in parts]),
        )

    def subset(self, index) -> InterestPoints:
        """Points selected by a boolean mask or an integer index array (order kept)."""
        return InterestPoints(self.ids[index], self.loc_xyz[index], self.intensity[index],
                              self.dog[index])

    def sorted_by_position(self) -> InterestPoints:
        """Points in a canonical order (z, then y, then x) so results do not depend on chunking."""
        order = np.lexsort((self.loc_xyz[:, 0], self.loc_xyz[:, 1], self.loc_xyz[:, 2]))
        return self.subset(order)

    def renumbered(self, start: int = 0) -> InterestPoints:
        """Same points with ids ``start, start + 1, ...`` in their current order."""
        return InterestPoints(np.arange(start, start + len(self), dtype=np.int64), self.loc_xyz,
                              self.intensity, self.dog)
