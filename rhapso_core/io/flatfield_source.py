"""A view read through BigStitcher's flat-field correction (bright and dark images).

BigStitcher's ``spimreconstruction.wrapped.flatfield.*`` loaders (multiview-reconstruction's
``FlatFieldCorrectedRandomAccessibleInterval``) give each voxel as

    clip((x - dark) * mean(bright - dark) / (bright - dark))        (0 where bright == dark)

with ``bright`` and ``dark`` in-plane images (x, y) broadcast over z, ``mean`` over the whole
``bright - dark`` image, the result clipped to the pixel type's range and stored in that type.
A missing bright image counts as 1 everywhere, a missing dark image as 0. At a pyramid level
the two images are averaged over the level's in-plane blocks first, and the mean is taken
over the averaged images, as BigStitcher's multiresolution loader does.

The level images are block means over the level's voxels (this project's pyramid geometry:
level voxel ``i`` covers level-0 voxels ``[f i, f i + f)``; BigStitcher's own downsampling of
them may weigh its windows otherwise), whole blocks only, a level voxel beyond them taking the
edge value as BigStitcher's border extension gives it; integers are rounded half up (imglib2's
``Util.round`` on the non-negative values the clip leaves).

Every stage reads through this, alignment and fusion alike: the objective's fall-off moves
detected points toward each tile's centre (``docs/accuracy.md``, "Vignetting"), and is seen
as seams in a fused image.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from rhapso_core.image_source import Box, ImageSource, clip_box

from .errors import ImageIOError

__all__ = ["FlatFieldCorrectedSource", "read_field_image", "corrected"]


def read_field_image(uri: str, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """A bright or dark image as float64 ``(y, x)``, read-only: a TIFF file, or a zarr / N5
    container (its root array, or its first level) as BigStitcher reads them. A 3-D image must
    have one plane. Kept for the next views that name the same file (every view of a channel
    usually does, and every task opens its views anew)."""
    key = (uri, repr(sorted((storage_options or {}).items())))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    img = _read_field_image(uri, storage_options)
    img.setflags(write=False)
    with _CACHE_LOCK:
        _CACHE[key] = img
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
    return img


_CACHE: dict[tuple[str, str], np.ndarray] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16


def _read_field_image(uri: str, storage_options: dict[str, Any] | None) -> np.ndarray:
    low = uri.lower().rstrip("/")
    try:
        if low.endswith((".tif", ".tiff")):
            import tifffile

            from .uri import fs_for

            fs, path = fs_for(uri, storage_options)
            with fs.open(path, "rb") as f:
                img = np.asarray(tifffile.imread(f))
        else:
            from .open import open_image

            src = open_image(uri, storage_options=storage_options)
            img = np.asarray(src.read(tuple((0, n) for n in src.level_shape(0)), 0))
    except ImageIOError:
        raise
    except (OSError, ValueError) as exc:
        raise ImageIOError(f"{uri}: cannot read the flat-field image ({exc})") from None
    img = np.squeeze(img)
    if img.ndim != 2:
        raise ImageIOError(f"{uri}: a flat-field image must be 2-D (y, x), got shape {tuple(np.shape(img))}")
    return img.astype(np.float64)


def _block_means(img: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Means over the whole ``fy x fx`` blocks (BigStitcher's downsampled size, rounded down)."""
    if fy <= 1 and fx <= 1:
        return img
    ny, nx = max(img.shape[0] // fy, 1), max(img.shape[1] // fx, 1)
    by, bx = min(fy, img.shape[0]), min(fx, img.shape[1])
    return img[: ny * by, : nx * bx].reshape(ny, by, nx, bx).mean(axis=(1, 3))


def _to_shape(img: np.ndarray, shape_yx: tuple[int, ...]) -> np.ndarray:
    """Extended by its edge values (BigStitcher's border extension) or cut to ``shape_yx``."""
    pad_y, pad_x = max(shape_yx[0] - img.shape[0], 0), max(shape_yx[1] - img.shape[1], 0)
    if pad_y or pad_x:
        img = np.pad(img, ((0, pad_y), (0, pad_x)), mode="edge")
    return img[: shape_yx[0], : shape_yx[1]]


def corrected(raw: np.ndarray, bright: np.ndarray, dark: np.ndarray, mean: float, dtype) -> np.ndarray:
    """``raw`` (z, y, x) corrected by in-plane ``bright`` and ``dark`` (y, x, the same box) and the
    mean of ``bright - dark``, in ``dtype`` (see the module docstring)."""
    denom = bright - dark
    with np.errstate(divide="ignore", invalid="ignore"):
        # BigStitcher's order of operations, (x - dark) * mean / (bright - dark), so that a value
        # half-way between two integers rounds the same way.
        v = (raw.astype(np.float64) - dark) * mean / denom
    v = np.where(denom == 0, 0.0, v)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        v = np.floor(np.clip(v, info.min, info.max) + 0.5)
        return np.clip(v, info.min, info.max).astype(dt)
    if dt.kind == "f":
        fi = np.finfo(dt)
        return np.clip(v, -fi.max, fi.max).astype(dt)
    return v.astype(dt)


class FlatFieldCorrectedSource:
    """An :class:`ImageSource` whose reads are corrected by a bright and a dark image.

    Parameters
    ----------
    inner : ImageSource
        The view as the wrapped loader gives it.
    bright, dark : ndarray (y, x) or None
        Level-0 images (:func:`read_field_image`); None: 1 (bright) or 0 (dark) everywhere.
    name : str
        Names the view in errors.
    """

    def __init__(self, inner: ImageSource, bright: np.ndarray | None, dark: np.ndarray | None, name: str = "view"):
        self.inner = inner
        self.name = name
        shape_yx = tuple(int(n) for n in inner.level_shape(0)[1:])
        for what, img in (("bright", bright), ("dark", dark)):
            if img is not None and tuple(img.shape) != shape_yx:
                raise ImageIOError(
                    f"{name}: the {what} image is {img.shape[1]} x {img.shape[0]} (x, y) but the view is "
                    f"{shape_yx[1]} x {shape_yx[0]}"
                )
        self._bright = np.ones(shape_yx) if bright is None else np.asarray(bright, np.float64)
        self._dark = np.zeros(shape_yx) if dark is None else np.asarray(dark, np.float64)
        self._levels: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        self._lock = threading.Lock()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.inner.dtype)

    @property
    def n_levels(self) -> int:
        return self.inner.n_levels

    def level_shape(self, level: int) -> tuple[int, int, int]:
        return self.inner.level_shape(level)

    def level_factors(self, level: int) -> tuple[int, int, int]:
        return self.inner.level_factors(level)

    def _level(self, level: int) -> tuple[np.ndarray, np.ndarray, float]:
        with self._lock:
            got = self._levels.get(level)
            if got is None:
                _, fy, fx = (int(f) for f in self.inner.level_factors(level))
                shape_yx = tuple(int(n) for n in self.inner.level_shape(level)[1:])
                bright, dark = _block_means(self._bright, fy, fx), _block_means(self._dark, fy, fx)
                mean = float(np.mean(bright - dark))  # over the images themselves, as BigStitcher
                got = self._levels[level] = (_to_shape(bright, shape_yx), _to_shape(dark, shape_yx), mean)
            return got

    def read(self, box: Box, level: int = 0) -> np.ndarray:
        box = clip_box(box, self.level_shape(level))
        raw = np.asarray(self.inner.read(box, level))
        bright, dark, mean = self._level(level)
        (_, _), (y0, y1), (x0, x1) = box
        return corrected(raw, bright[y0:y1, x0:x1], dark[y0:y1, x0:x1], mean, raw.dtype)
