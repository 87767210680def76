"""Read BigDataViewer HDF5 (``bdv.hdf5``) views, and plain HDF5 datasets, lazily with h5py.

BDV layout (bigdataviewer-core ``bdv/img/hdf5/Util.java``, ``Hdf5ImageLoader.java``)::

    s{setup:02d}/resolutions     double[levels][3]  per-level factors, rows x, y, z
    s{setup:02d}/subdivisions    int[levels][3]     chunk sizes, rows x, y, z
    t{tp:05d}/s{setup:02d}/{level}/cells            the level's voxels, (z, y, x)

Pixel type: files written before bigdataviewer-core 10.4.10 store uint16 images as
int16 and carry no ``dataType`` attribute on ``s{setup:02d}``; BDV reads those bits
as uint16, and so do we. Newer files set ``dataType`` and store the type natively.

A read of a box slices the ``cells`` dataset, so h5py decodes only the chunks the
box touches and the result is the box's size: memory is bounded by the box.
Partitioned files are resolved from the XML (:func:`rhapso_core.spimdata.locate`
points a view at its partition file); opening the master also works, through
the external links BDV writes into it.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..image_source import Box
from .errors import ImageIOError
from .multiscale import MultiscaleImage, StoredLevel, factors_from_shapes
from .uri import fs_for, is_s3, join_uri, normalize_uri

__all__ = ["open_hdf5_image", "HDF5_SUFFIXES", "split_hdf5_path"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_VIEW_GROUP = re.compile(r"^t(\d+)/s(\d+)$")


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def split_hdf5_path(uri: str, dataset: str = "") -> tuple[str, str]:
    """(file URI, path inside the file) for ``uri`` joined with ``dataset``.

    The file is ``uri`` itself when it names a file; otherwise the last path
    component with an HDF5 suffix (``/x/data.h5/t00000/s00`` -> ``/x/data.h5``,
    ``t00000/s00``).
    """
    u = normalize_uri(uri)
    if os.path.isfile(u):  # a local file named without an HDF5 suffix
        return u, dataset.strip("/")
    parts = join_uri(u, dataset).replace("\\", "/").split("/")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].lower().endswith(HDF5_SUFFIXES):
            return "/".join(parts[: i + 1]) or "/", "/".join(parts[i + 1 :])
    return u, dataset.strip("/")


def _open_file(uri: str, storage_options: dict[str, Any] | None):
    import h5py

    try:
        if is_s3(uri):
            fs, path = fs_for(uri, storage_options)
            if not fs.isfile(path):
                raise ImageIOError(f"{uri}: no such HDF5 file")
            return h5py.File(fs.open(path, "rb"), "r")
        if not os.path.isfile(uri):
            raise ImageIOError(f"{uri}: no such HDF5 file")
        return h5py.File(uri, "r")
    except ImageIOError:
        raise
    except OSError as e:
        raise ImageIOError(f"{uri}: not a readable HDF5 file ({_one_line(e)})") from None


_DTYPES = {
    "uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32,
    "int32": np.int32, "uint64": np.uint64, "int64": np.int64, "float32": np.float32, "float64": np.float64,
}


class Hdf5Level(StoredLevel):
    """One level's ``cells`` dataset, read by box; the file handle is opened per process."""

    _handles = ("_file",)

    def __init__(self, file_uri, path, shape, stored_dtype, dtype, storage_options, handle=None):
        self.file_uri = file_uri
        self.path = path
        self._shape = tuple(int(n) for n in shape)
        self._stored = np.dtype(stored_dtype)
        self._dtype = np.dtype(dtype)
        self.storage_options = storage_options
        self._file = handle

    def _dataset(self):
        if self._file is None:
            self._file = _open_file(self.file_uri, self.storage_options)
        try:
            return self._file[self.path]
        except KeyError:
            raise ImageIOError(f"{self.file_uri}: dataset {self.path!r} does not exist") from None

    def read(self, box: Box) -> np.ndarray:
        ds = self._dataset()
        (z0, z1), (y0, y1), (x0, x1) = box
        try:
            out = ds[z0:z1, y0:y1, x0:x1] if ds.ndim == 3 else ds[y0:y1, x0:x1][np.newaxis]
        except (OSError, ValueError, RuntimeError) as e:
            raise ImageIOError(
                f"{self.file_uri}: {self.path}: cannot decode the chunk data of box (z, y, x) {tuple(box)} "
                f"(corrupt chunk?): {_one_line(e)}"
            ) from None
        out = np.asarray(out)
        if self._dtype != self._stored:
            out = out.view(self._dtype)  # same item size: legacy int16 bits are uint16 values
        return out

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


def _pixel_type(setup_group, stored: np.dtype, where: str) -> np.dtype:
    """What the stored bits mean: the ``dataType`` attribute, else BDV's legacy int16 -> uint16 rule."""
    attr = setup_group.attrs.get("dataType") if setup_group is not None else None
    if attr is None:
        return np.dtype(np.uint16) if stored == np.dtype(np.int16) else stored
    name = attr.decode() if isinstance(attr, bytes) else str(np.asarray(attr).reshape(-1)[0] if np.ndim(attr) else attr)
    want = _DTYPES.get(name.lower())
    if want is None:
        raise ImageIOError(f"{where}: unknown dataType attribute {name!r}")
    want = np.dtype(want)
    if want.itemsize != stored.itemsize:
        raise ImageIOError(f"{where}: dataType {name!r} does not match the stored type {stored}")
    return want


def _bdv_factors(setup_group, n_levels: int, shapes, where: str) -> list[tuple[int, int, int]]:
    res = setup_group.get("resolutions") if setup_group is not None else None
    if res is None:
        return factors_from_shapes(shapes)
    r = np.asarray(res[()], dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 3 or r.shape[0] < n_levels:
        raise ImageIOError(f"{where}/resolutions: shape {r.shape} does not describe {n_levels} levels of (x, y, z)")
    f = np.rint(r[:n_levels])
    if np.any(f < 1) or np.any(np.abs(r[:n_levels] - f) > 1e-6):
        raise ImageIOError(f"{where}/resolutions: factors {r[:n_levels].tolist()} are not positive integers")
    return [(int(z), int(y), int(x)) for x, y, z in f]


def open_hdf5_image(
    uri: str,
    dataset: str = "",
    *,
    storage_options: dict[str, Any] | None = None,
    channel: int | None = None,
    timepoint: int | None = None,
) -> MultiscaleImage:
    """Open a BDV view group (``t00000/s00``) or a 3D dataset of an HDF5 file.

    Parameters
    ----------
    uri : str
        The ``.h5`` file (local, or ``s3://`` through fsspec), or a path through it.
    dataset : str
        Path inside the file: a BDV view group ``t{tp:05d}/s{setup:02d}`` (its
        levels ``0, 1, ...`` with ``cells`` each) or a 3D/2D dataset.
    channel, timepoint : int, optional
        Only 0 (HDF5 views are single-channel 3D); other values are refused.
    """
    import h5py

    file_uri, inner = split_hdf5_path(uri, dataset)
    for what, v in (("channel", channel), ("timepoint", timepoint)):
        if v not in (None, 0):
            raise ImageIOError(f"{file_uri}: {inner}: {what} {v} requested but HDF5 views have no {what} axis")
    f = _open_file(file_uri, storage_options)
    keep_open = False
    try:
        node = f[inner] if inner else f["/"]
    except KeyError:
        f.close()
        raise ImageIOError(f"{file_uri}: no dataset or group {inner!r} in the file") from None
    try:
        if isinstance(node, h5py.Dataset):
            if node.ndim not in (2, 3):
                raise ImageIOError(f"{file_uri}: {inner}: cannot read a {node.ndim}-dimensional dataset as a 3D image")
            shape = node.shape if node.ndim == 3 else (1, *node.shape)
            lv = Hdf5Level(file_uri, node.name, shape, node.dtype, node.dtype, storage_options, f)
            keep_open = True
            return MultiscaleImage(uri=join_uri(file_uri, inner), kind="hdf5", levels=[lv], factors=[(1, 1, 1)])
        names = sorted((int(k) for k in node.keys() if k.isdigit() and "cells" in node[k]))
        if not names or names[0] != 0:
            hint = " (a BDV file: name a view group such as t00000/s00)" if "t00000" in node or any(
                k.startswith("t") and k[1:].isdigit() for k in node.keys()
            ) else ""
            raise ImageIOError(f"{file_uri}: group {inner or '/'!r} holds no level datasets 0/cells, 1/cells, ...{hint}")
        # Levels are 0, 1, ... without gaps (resolutions rows are indexed by level).
        names = [k for i, k in enumerate(names) if k == i]
        m = _VIEW_GROUP.match(inner.strip("/"))
        setup_group = f.get(f"s{int(m.group(2)):02d}") if m else None
        cells = [node[f"{k}/cells"] for k in names]
        for k, c in zip(names, cells):
            if c.ndim != 3:
                raise ImageIOError(f"{file_uri}: {inner}/{k}/cells has {c.ndim} dimensions, expected 3 (z, y, x)")
        stored = np.dtype(cells[0].dtype)
        where = f"{file_uri}: s{int(m.group(2)):02d}" if m else f"{file_uri}: {inner}"
        dtype = _pixel_type(setup_group, stored, where)
        # All levels share this handle; after a pickle each level reopens the file on first read.
        levels = [Hdf5Level(file_uri, c.name, c.shape, stored, dtype, storage_options, f) for c in cells]
        keep_open = True
        factors = _bdv_factors(setup_group, len(levels), [lv.shape for lv in levels], where)
        return MultiscaleImage(uri=join_uri(file_uri, inner), kind="hdf5", levels=levels, factors=factors)
    finally:
        if not keep_open:
            f.close()


# ---------------------------------------------------------------------- registration


def _open_kind(uri, dataset, *, files, storage_options, channel, timepoint) -> MultiscaleImage:
    return open_hdf5_image(uri, dataset, storage_options=storage_options, channel=channel, timepoint=timepoint)


def _register() -> None:
    from .registry import ImageFormat, register_format

    register_format(
        ImageFormat(
            "hdf5",
            _open_kind,
            suffixes=HDF5_SUFFIXES,
            description="BigDataViewer HDF5 (bdv.hdf5) view group t{tp:05d}/s{setup:02d}, or a plain 3D dataset",
        )
    )


_register()
