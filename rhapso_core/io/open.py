"""``open_image``: one entry point for every image format a dataset can point to."""

from __future__ import annotations

from typing import Any

from .multiscale import MultiscaleImage
from .registry import get_format, kind_from_listing, kind_from_suffix, registered_formats
from .uri import fs_for, join_uri, normalize_uri

__all__ = ["KINDS", "infer_kind", "open_image", "known_kinds"]

# The built-in kinds; the registry (rhapso_core.io.registry) may hold more.
KINDS = ("ome-zarr", "zarr", "n5", "hdf5", "tiff")


def known_kinds() -> list[str]:
    """Every registered kind (built-in and added), in registration order."""
    return [f.kind for f in registered_formats()]


def infer_kind(uri: str, *, files: list[str] | None = None, storage_options: dict[str, Any] | None = None) -> str:
    """Guess the image kind from a URI's suffixes (any path component), else from its content.

    ``files`` -> ``"tiff"``; otherwise the registered format whose suffix ends the
    last matching path component (``.tif``/``.tiff`` tiff, ``.n5`` n5,
    ``.h5``/``.hdf5``/``.hdf`` hdf5, ``.zarr`` zarr); otherwise the first format
    whose content sniffing accepts the folder's entries (N5 ``attributes.json``,
    zarr metadata, TIFF files). Anything else is tried as zarr (OME metadata, when
    present, makes it ``"ome-zarr"``), so the zarr reader reports a missing path.
    """
    if files:
        return "tiff"
    parts = [p.lower() for p in normalize_uri(uri).replace("\\", "/").split("/")]
    by_suffix = kind_from_suffix(parts)
    if by_suffix is not None:
        return by_suffix
    fs, path = fs_for(uri, storage_options)
    try:
        names = [n.rsplit("/", 1)[-1] for n in fs.ls(path, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return "zarr"  # let the zarr reader report the missing path
    return kind_from_listing(names) or "zarr"


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
    kind : {"ome-zarr", "zarr", "n5", "hdf5", "tiff"} or another registered kind, optional
        Format; inferred from ``uri`` (see :func:`infer_kind`) when None.
        ``"zarr"`` also reads OME metadata when present; ``"n5"`` and ``"hdf5"``
        read the BigDataViewer layouts (``dataset`` = ``setup0/timepoint0`` or
        ``t00000/s00``) and plain datasets.
    dataset : str, optional
        Path inside the container (a BDV zarr ``path`` such as ``"tile_0.zarr"``,
        an N5 group, an HDF5 group), joined to ``uri``.
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
        Missing path, unreadable data, or an unknown kind.
    """
    full = join_uri(uri, dataset or "")
    k = kind if kind is not None else infer_kind(full, files=files, storage_options=storage_options)
    fmt = get_format(k, uri=full)
    return fmt.open(
        uri, dataset or "", files=files, storage_options=storage_options, channel=channel, timepoint=timepoint
    )
