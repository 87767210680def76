"""``open_image``: one entry point for every image format a dataset can point to."""

from __future__ import annotations

from typing import Any

from .errors import ImageIOError
from .multiscale import MultiscaleImage
from .tiff_source import open_tiff_image, open_tiff_series
from .uri import fs_for, join_uri, normalize_uri
from .zarr_source import open_zarr_image

__all__ = ["KINDS", "infer_kind", "open_image"]

KINDS = ("ome-zarr", "zarr", "n5", "hdf5", "tiff")


def infer_kind(uri: str, *, files: list[str] | None = None, storage_options: dict[str, Any] | None = None) -> str:
    """Guess the image kind from a URI's suffixes (any path component), else from its content.

    ``.tif``/``.tiff`` or explicit ``files`` -> ``"tiff"``; ``.n5`` -> ``"n5"``;
    ``.h5``/``.hdf5``/``.hdf`` -> ``"hdf5"``; ``.zarr`` -> ``"zarr"``. A folder
    holding TIFF files and no zarr metadata is a TIFF plane series; anything else
    is tried as zarr (OME metadata, when present, makes it ``"ome-zarr"``).
    """
    if files:
        return "tiff"
    parts = [p.lower() for p in normalize_uri(uri).replace("\\", "/").split("/")]
    for p in reversed(parts):
        if p.endswith((".tif", ".tiff")):
            return "tiff"
        if p.endswith(".n5"):
            return "n5"
        if p.endswith((".h5", ".hdf5", ".hdf")):
            return "hdf5"
        if p.endswith(".zarr"):
            return "zarr"
    fs, path = fs_for(uri, storage_options)
    try:
        names = [n.rsplit("/", 1)[-1] for n in fs.ls(path, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return "zarr"  # let the zarr reader report the missing path
    if any(n in (".zarray", ".zgroup", "zarr.json", "attributes.json") for n in names):
        return "n5" if "attributes.json" in names and "zarr.json" not in names else "zarr"
    if any(n.lower().endswith((".tif", ".tiff")) for n in names):
        return "tiff"
    return "zarr"


def open_image(
    uri: str,
    *,
    kind: str | None = None,
    dataset: str | None = None,
    files: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    channel: int | None = None,
    timepoint: int | None = None,
) -> MultiscaleImage:
    """Open an image lazily as a :class:`MultiscaleImage` (an ``ImageSource``).

    Parameters
    ----------
    uri : str
        Local path or ``s3://`` URL of the image, its container, or (TIFF
        series) the folder of plane files.
    kind : {"ome-zarr", "zarr", "n5", "hdf5", "tiff"}, optional
        Format; inferred from ``uri`` (see :func:`infer_kind`) when None.
        ``"zarr"`` also reads OME metadata when present.
    dataset : str, optional
        Path inside the container (e.g. a BDV zarr ``path`` such as
        ``"tile_0.zarr"``), joined to ``uri``.
    files : list of str, optional
        TIFF plane files in z order (relative to ``uri`` unless absolute).
    storage_options : dict, optional
        s3fs options: ``{"anon": True}``, ``{"key": ..., "secret": ...}``,
        ``{"client_kwargs": {"endpoint_url": ...}}``. Without an endpoint,
        ``AWS_ENDPOINT_URL`` is honoured.
    channel, timepoint : int, optional
        Index on the channel / time axis for 4D/5D images (default 0).

    Returns
    -------
    MultiscaleImage
        Reads return (z, y, x) arrays.

    Raises
    ------
    ImageIOError
        Missing path, unreadable data, or a format not readable yet (N5, HDF5).
    """
    full = join_uri(uri, dataset or "")
    k = kind if kind is not None else infer_kind(full, files=files, storage_options=storage_options)
    if k not in KINDS:
        raise ImageIOError(f"{full}: unknown image kind {k!r}; expected one of {', '.join(KINDS)}")
    if k in ("n5", "hdf5"):
        why = "zarr 3 has no N5 store" if k == "n5" else "h5py is not installed"
        raise ImageIOError(
            f"{full}: {k.upper()} images are not readable yet ({why}); the XML model still parses such datasets"
        )
    if k == "tiff":
        if files is not None or not full.lower().endswith((".tif", ".tiff")):
            fs, path = fs_for(full, storage_options)
            if files is not None or fs.isdir(path):
                return open_tiff_series(full, files=files, storage_options=storage_options, channel=channel)
        return open_tiff_image(full, storage_options=storage_options, channel=channel, timepoint=timepoint)
    img = open_zarr_image(full, storage_options=storage_options, channel=channel, timepoint=timepoint)
    if k == "ome-zarr" and img.kind != "ome-zarr":
        raise ImageIOError(f"{full}: kind 'ome-zarr' requested but the group has no OME-NGFF multiscales metadata")
    return img
