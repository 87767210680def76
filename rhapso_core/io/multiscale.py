""":class:`MultiscaleImage`: the :class:`~rhapso_core.image_source.ImageSource` every reader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..image_source import Box, box_is_empty, clip_box
from .errors import ImageIOError

__all__ = ["LevelReader", "StoredLevel", "MultiscaleImage", "factors_from_shapes", "factors_from_scales"]


class LevelReader(Protocol):
    """One pyramid level: a lazy (z, y, x) array read one box at a time."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def read(self, box: Box) -> np.ndarray:
        """Read a box already clipped to ``shape`` and not empty."""


class StoredLevel:
    """Base of the readers of one stored level (a :class:`LevelReader`): ``shape`` and ``dtype``
    from ``_shape`` / ``_dtype``; the attributes named in ``_handles`` (open files, stores) are
    dropped when pickled, so a level sent to another process reopens its file on first read."""

    _shape: tuple[int, int, int]
    _dtype: np.dtype
    _handles: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._handles:
            state[name] = None
        return state


@dataclass
class MultiscaleImage:
    """A lazily read multiscale 3D image with its physical geometry.

    Attributes
    ----------
    uri : str
        Where the image lives (container URI, joined with the dataset path).
    kind : str
        The registered format that read it: ``"ome-zarr"``, ``"zarr"``, ``"tiff"``,
        ``"n5"``, ``"hdf5"`` (see :mod:`rhapso_core.io.registry`).
    levels : list of LevelReader
        ``levels[0]`` is full resolution.
    factors : list of (int, int, int)
        Cumulative downsampling factor (z, y, x) of each level relative to level 0.
    voxel_size_zyx : (float, float, float)
        Level-0 voxel size in ``unit`` (1.0 where the file does not say).
    unit : str or None
        Physical unit of the space axes, e.g. ``"micrometer"``; None if unknown.
    origin_zyx : (float, float, float)
        Physical position of level-0 voxel (0, 0, 0)'s centre (the NGFF
        translation of level 0; zeros where the file does not say).
    """

    uri: str
    kind: str
    levels: list[LevelReader]
    factors: list[tuple[int, int, int]]
    voxel_size_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str | None = None
    origin_zyx: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        if not self.levels or len(self.levels) != len(self.factors):
            raise ImageIOError(f"{self.uri}: {len(self.levels)} levels but {len(self.factors)} factors")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.levels[0].dtype)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Level-0 shape (z, y, x)."""
        return self.level_shape(0)

    def _check_level(self, level: int) -> None:
        if not 0 <= level < len(self.levels):
            raise ImageIOError(f"{self.uri}: level {level} out of range [0, {len(self.levels)})")

    def level_shape(self, level: int) -> tuple[int, int, int]:
        self._check_level(level)
        return tuple(int(n) for n in self.levels[level].shape)  # type: ignore[return-value]

    def level_factors(self, level: int) -> tuple[int, int, int]:
        self._check_level(level)
        return tuple(int(f) for f in self.factors[level])  # type: ignore[return-value]

    def level_voxel_size_zyx(self, level: int) -> tuple[float, float, float]:
        """Physical voxel size (z, y, x) of a level."""
        f = self.level_factors(level)
        return tuple(float(v * k) for v, k in zip(self.voxel_size_zyx, f))  # type: ignore[return-value]

    def level_origin_zyx(self, level: int) -> tuple[float, float, float]:
        """Physical centre of a level's voxel (0, 0, 0): ``origin + (f - 1) / 2 * voxel_size``."""
        f = self.level_factors(level)
        return tuple(  # type: ignore[return-value]
            float(o + (k - 1) / 2.0 * v) for o, v, k in zip(self.origin_zyx, self.voxel_size_zyx, f)
        )

    def read(self, box: Box, level: int = 0) -> np.ndarray:
        """Read a (z, y, x) box of a level; the box is clipped to the level's extent.

        Only the chunks (zarr), strips/tiles (single TIFF) or plane files (TIFF
        series) that intersect the box are read.
        """
        shape = self.level_shape(level)
        b = clip_box(box, shape)
        if box_is_empty(b):
            return np.zeros(tuple(hi - lo for lo, hi in b), dtype=self.dtype)
        out = np.asarray(self.levels[level].read(b))
        want = tuple(hi - lo for lo, hi in b)
        if out.shape != want:  # a reader bug, not a user error: fail loudly
            raise AssertionError(f"{self.uri}: level {level} read {out.shape} for box {b}")
        return out

    def close(self) -> None:
        for lv in self.levels:
            close = getattr(lv, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> MultiscaleImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _factor_candidates(n0: int, n: int) -> list[int]:
    """Factors f with ``n == ceil(n0 / f)`` or ``n == floor(n0 / f)``."""
    if n <= 0:
        return [1]
    span = range(max(1, n0 // (n + 1)), n0 // max(n - 1, 1) + 2) if n > 1 else range(1, 2 * n0 + 2)
    return [f for f in span if -(-n0 // f) == n or n0 // f == n] or [max(1, round(n0 / n))]


def _pick(cands: list[int], ratio: float) -> int:
    # Pyramids are nearly always powers of two: prefer those, then the closest to the size ratio.
    pow2 = [f for f in cands if f & (f - 1) == 0]
    return min(pow2 or cands, key=lambda f: (abs(f - ratio), f))


def factors_from_shapes(shapes_zyx: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """Integer per-axis factors of each level relative to the first, from shapes alone.

    A level of size ``n`` fits factor ``f`` if ``n == ceil(n0 / f)`` or
    ``n == floor(n0 / f)`` (writers differ on edge handling). Small axes are
    ambiguous (``ceil(5 / 3) == ceil(5 / 4)``): they take the factor of the
    level's largest axis when it fits, else the nearest power of two.
    """
    s0 = [int(n) for n in shapes_zyx[0]]
    out = []
    for s in shapes_zyx:
        cands = [_factor_candidates(a, int(b)) for a, b in zip(s0, s)]
        big = int(np.argmax(s0))
        lead = _pick(cands[big], s0[big] / max(int(s[big]), 1))
        out.append(tuple(lead if lead in c else _pick(c, a / max(int(b), 1)) for c, a, b in zip(cands, s0, s)))
    return out  # type: ignore[return-value]


def factors_from_scales(
    scales_zyx: Sequence[Sequence[float]], *, uri: str = ""
) -> list[tuple[int, int, int]]:
    """Integer factors from per-level physical scales (NGFF ``scale`` of the space axes)."""
    s0 = np.asarray(scales_zyx[0], dtype=np.float64)
    if np.any(s0 <= 0):
        raise ImageIOError(f"{uri}: level-0 scale {s0.tolist()} is not positive")
    out = []
    for i, s in enumerate(scales_zyx):
        r = np.asarray(s, dtype=np.float64) / s0
        f = np.rint(r)
        if np.any(f < 1) or np.any(np.abs(r - f) > 1e-3 * f):
            raise ImageIOError(
                f"{uri}: level {i} scale {list(s)} is not an integer multiple of level 0 scale {s0.tolist()}"
            )
        out.append(tuple(int(k) for k in f))
    return out  # type: ignore[return-value]
