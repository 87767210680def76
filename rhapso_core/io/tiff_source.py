"""Read TIFF images lazily: one (multi-page) 3D file, or one 2D file per z plane."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import fsspec
import numpy as np
import tifffile
import zarr

from ..image_source import Box
from .errors import ImageIOError
from .multiscale import MultiscaleImage, StoredLevel, factors_from_shapes
from .uri import fs_for, is_s3, join_uri, normalize_uri

__all__ = ["open_tiff_image", "open_tiff_series", "list_tiff_planes"]

_TIFF_SUFFIXES = (".tif", ".tiff")
_UNITS = {"um": "micrometer", "µm": "micrometer", "\\u00b5m": "micrometer", "micron": "micrometer",
          "micrometer": "micrometer", "nm": "nanometer", "nanometer": "nanometer", "mm": "millimeter",
          "millimeter": "millimeter"}


def _open_tiff(uri: str, storage_options: dict[str, Any] | None) -> tifffile.TiffFile:
    """Open a TIFF from a local path or through fsspec (S3); the caller closes it."""
    if is_s3(uri):
        fs, path = fs_for(uri, storage_options)
        if not fs.isfile(path):
            raise ImageIOError(f"{uri}: no such TIFF file")
        # An fsspec OpenFile (not an open stream) so that TiffFile.close() closes it too.
        return tifffile.TiffFile(fsspec.core.OpenFile(fs, path, mode="rb"))
    if not os.path.isfile(uri):
        raise ImageIOError(f"{uri}: no such TIFF file")
    try:
        return tifffile.TiffFile(uri)
    except tifffile.TiffFileError as e:
        raise ImageIOError(f"{uri}: not a readable TIFF ({e})") from None


def _axis_map(axes: str, uri: str) -> tuple[tuple[int | None, int, int], int | None, int | None]:
    """(z, y, x) array axes, channel axis and time axis from a tifffile axes string.

    tifffile writes ``Q`` (or ``I``) for an unnamed page axis: with no ``Z`` we read a
    single such axis as z, which is what a plain multi-page stack means.
    """
    if "Y" not in axes or "X" not in axes:
        raise ImageIOError(f"{uri}: TIFF series axes {axes!r} have no Y and X")
    others = [i for i, a in enumerate(axes) if a not in "YXCTSZ"]
    if "Z" in axes:
        z: int | None = axes.index("Z")
    elif len(others) == 1:
        z = others[0]
    elif not others:
        z = None
    else:
        raise ImageIOError(f"{uri}: cannot tell which of the TIFF axes {axes!r} is z")
    c = axes.index("C") if "C" in axes else (axes.index("S") if "S" in axes else None)
    t = axes.index("T") if "T" in axes else None
    return (z, axes.index("Y"), axes.index("X")), c, t


def _pin(shape, zyx, c_ax, t_ax, channel, timepoint, uri) -> list[int | None]:
    pinned: list[int | None] = [0] * len(shape)
    for ax in zyx:
        if ax is not None:
            pinned[ax] = None
    for ax, want, what in ((c_ax, channel, "channel"), (t_ax, timepoint, "timepoint")):
        if want is None:
            continue
        if ax is None:
            if want != 0:
                raise ImageIOError(f"{uri}: {what} {want} requested but the TIFF has no {what} axis")
            continue
        if not 0 <= want < shape[ax]:
            raise ImageIOError(f"{uri}: {what} {want} out of range [0, {shape[ax]})")
        pinned[ax] = int(want)
    return pinned


def _read_pinned(arr, pinned: Sequence[int | None], zyx, box: Box) -> np.ndarray:
    """Index any-rank array ``arr`` with (z, y, x) ``box``; result (z, y, x)."""
    index: list[Any] = list(pinned)
    kept = []
    for ax, (lo, hi) in zip(zyx, box):
        if ax is None:
            continue
        index[ax] = slice(lo, hi)
        kept.append(ax)
    out = np.asarray(arr[tuple(index)])
    out = np.transpose(out, np.argsort(np.argsort(kept)))
    return out[np.newaxis] if zyx[0] is None else out


def _geometry(tif: tifffile.TiffFile) -> tuple[tuple[float, float, float], str | None]:
    """Voxel size (z, y, x) and unit from ImageJ or OME metadata; (1, 1, 1), None otherwise."""
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r"<Pixels\b[^>]*>", tif.ome_metadata)
        if m:
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group(0)))
            v = tuple(float(attrs.get(f"PhysicalSize{a}", 1.0)) for a in "ZYX")
            unit = _UNITS.get(attrs.get("PhysicalSizeXUnit", "µm").lower(), attrs.get("PhysicalSizeXUnit"))
            if any(f"PhysicalSize{a}" in attrs for a in "ZYX"):
                return v, unit  # type: ignore[return-value]
    ij = tif.imagej_metadata
    if ij and ij.get("unit"):
        tags = tif.pages.first.tags
        def inv(tag: str) -> float:
            t = tags.get(tag)
            if t is None:
                return 1.0
            num, den = t.value
            return float(den) / float(num) if num else 1.0
        return (float(ij.get("spacing", 1.0)), inv("YResolution"), inv("XResolution")), _UNITS.get(
            str(ij["unit"]).lower(), str(ij["unit"])
        )
    return (1.0, 1.0, 1.0), None


class TiffLevel(StoredLevel):
    """One pyramid level of one series of a TIFF file, read through tifffile's zarr store.

    The file is opened on first read and reopened after unpickling, so an
    image can be sent to another process.
    """

    _handles = ("_tif", "_arr")

    def __init__(self, uri: str, storage_options, level: int, shape: Sequence[int], dtype, pinned, zyx):
        self.uri, self.storage_options, self.level = uri, storage_options, level
        self._full_shape = tuple(int(n) for n in shape)
        self._dtype = np.dtype(dtype)
        self._pinned, self._zyx = list(pinned), zyx
        z, y, x = zyx
        self._shape = (self._full_shape[z] if z is not None else 1, self._full_shape[y], self._full_shape[x])
        self._tif: tifffile.TiffFile | None = None
        self._arr = None

    def read(self, box: Box) -> np.ndarray:
        if self._arr is None:
            self._tif = _open_tiff(self.uri, self.storage_options)
            self._arr = zarr.open(self._tif.aszarr(series=0, level=self.level), mode="r")
        return _read_pinned(self._arr, self._pinned, self._zyx, box)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
        self._tif, self._arr = None, None

    def __del__(self):
        # Readers are often dropped without close(); do not leak the file handle.
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass


def open_tiff_image(
    uri: str,
    *,
    storage_options: dict[str, Any] | None = None,
    channel: int | None = None,
    timepoint: int | None = None,
) -> MultiscaleImage:
    """Open a single TIFF (multi-page stack, ImageJ hyperstack or OME-TIFF, with its pyramid).

    Axes come from tifffile's series axes: ``Z`` (or the one unnamed page axis
    ``Q``/``I``) is z; ``C``/``S`` is selected by ``channel`` and ``T`` by
    ``timepoint`` (default 0). Reads go through tifffile's zarr store, so only
    the strips or tiles a box touches are decoded.
    """
    u = normalize_uri(uri)
    with _open_tiff(u, storage_options) as tif:
        series = tif.series[0]
        zyx, c_ax, t_ax = _axis_map(series.axes, u)
        voxel, unit = _geometry(tif)
        levels = []
        for i, lv in enumerate(series.levels):
            pinned = _pin(lv.shape, zyx, c_ax, t_ax, channel, timepoint, u)
            levels.append(TiffLevel(u, storage_options, i, lv.shape, lv.dtype, pinned, zyx))
    return MultiscaleImage(
        uri=u,
        kind="tiff",
        levels=levels,
        factors=factors_from_shapes([lv.shape for lv in levels]),
        voxel_size_zyx=voxel,
        unit=unit,
    )


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", os.path.basename(name))]


def list_tiff_planes(uri: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """URIs of the ``.tif``/``.tiff`` files directly in a folder, in natural name order.

    Natural order (``p2`` before ``p10``) equals plain name order for zero-padded names.
    """
    u = normalize_uri(uri)
    fs, path = fs_for(u, storage_options)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        raise ImageIOError(f"{u}: no such folder of TIFF planes") from None
    names = sorted((e for e in entries if e.lower().endswith(_TIFF_SUFFIXES)), key=_natural_key)
    if is_s3(u):
        return ["s3://" + n for n in names]
    return [str(n) for n in names]


class TiffPlaneSeries(StoredLevel):
    """A z stack stored as one 2D TIFF per plane; a read opens only the planes it needs.

    Not tifffile's ``TiffSequence``: that globs local paths only, and its zarr
    store decodes whole planes, while here a box reads just the rows it needs
    (through each plane's zarr store) from local or S3 files alike.
    """

    def __init__(self, files: Sequence[str], storage_options, channel: int | None, uri: str):
        if not files:
            raise ImageIOError(f"{uri}: no TIFF plane files")
        self.files = [normalize_uri(f) for f in files]
        self.storage_options = storage_options
        self.uri = uri
        with _open_tiff(self.files[0], storage_options) as tif:
            s = tif.series[0]
            self._plane_shape = tuple(int(n) for n in s.shape)
            self._axes = s.axes
            self._dtype = np.dtype(s.dtype)
            zyx, c_ax, t_ax = _axis_map(s.axes, self.files[0])
            self.voxel_size_zyx, self.unit = _geometry(tif)
        if zyx[0] is not None and s.shape[zyx[0]] != 1:
            raise ImageIOError(f"{self.files[0]}: plane file holds {s.shape[zyx[0]]} planes, expected one")
        self._zyx = zyx
        self._pinned = _pin(self._plane_shape, zyx, c_ax, t_ax, channel, None, self.files[0])
        self._shape = (len(self.files), self._plane_shape[zyx[1]], self._plane_shape[zyx[2]])

    def read(self, box: Box) -> np.ndarray:
        (z0, z1), yb, xb = box
        out = np.empty((z1 - z0, yb[1] - yb[0], xb[1] - xb[0]), dtype=self._dtype)
        for k, z in enumerate(range(z0, z1)):
            f = self.files[z]
            with _open_tiff(f, self.storage_options) as tif:
                s = tif.series[0]
                if tuple(s.shape) != self._plane_shape or s.axes != self._axes:
                    raise ImageIOError(
                        f"{f}: plane shape {tuple(s.shape)} ({s.axes}) differs from the first plane's "
                        f"{self._plane_shape} ({self._axes})"
                    )
                arr = zarr.open(tif.aszarr(series=0, level=0), mode="r")
                out[k] = _read_pinned(arr, self._pinned, self._zyx, ((0, 1), yb, xb))[0]
        return out


def open_tiff_series(
    uri: str,
    *,
    files: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    channel: int | None = None,
) -> MultiscaleImage:
    """Open a z stack stored as one 2D TIFF per plane.

    Parameters
    ----------
    uri : str
        Folder holding the planes, or the base that relative ``files`` are joined to.
    files : list of str, optional
        Plane files in z order (kept as given). Default: every ``.tif``/``.tiff``
        in ``uri``, in natural name order.
    storage_options : dict, optional
        s3fs options for ``s3://`` URIs.
    channel : int, optional
        Sample / channel index within each plane (RGB planes), default 0.
    """
    u = normalize_uri(uri)
    if files is None:
        plane_uris = list_tiff_planes(u, storage_options)
        if not plane_uris:
            raise ImageIOError(f"{u}: folder has no .tif/.tiff planes")
    else:
        plane_uris = [f if is_s3(f) or os.path.isabs(f) else join_uri(u, f) for f in files]
    series = TiffPlaneSeries(plane_uris, storage_options, channel, u)
    return MultiscaleImage(
        uri=u,
        kind="tiff",
        levels=[series],
        factors=[(1, 1, 1)],
        voxel_size_zyx=series.voxel_size_zyx,
        unit=series.unit,
    )


# ---------------------------------------------------------------------- registration


def _open_tiff_kind(uri, dataset, *, files, storage_options, channel, timepoint) -> MultiscaleImage:
    full = join_uri(uri, dataset)
    if files is not None or not full.lower().endswith(_TIFF_SUFFIXES):
        fs, path = fs_for(full, storage_options)
        if files is not None or fs.isdir(path):
            return open_tiff_series(full, files=files, storage_options=storage_options, channel=channel)
    return open_tiff_image(full, storage_options=storage_options, channel=channel, timepoint=timepoint)


def _register() -> None:
    from .registry import ImageFormat, register_format

    register_format(
        ImageFormat(
            "tiff",
            _open_tiff_kind,
            suffixes=_TIFF_SUFFIXES,
            sniff=lambda names: any(n.lower().endswith(_TIFF_SUFFIXES) for n in names),
            description="TIFF stack, OME-TIFF pyramid, or a folder of one TIFF per z plane",
        )
    )


_register()
