"""Image I/O: lazy multiscale readers (OME-Zarr, zarr, TIFF, BDV N5, BDV HDF5) and OME-Zarr writers.

Every reader returns a :class:`MultiscaleImage`, an
:class:`~rhapso_core.image_source.ImageSource` with physical geometry. Paths
are local or ``s3://`` (see :mod:`rhapso_core.io.uri`). Formats register
themselves in :mod:`rhapso_core.io.registry`; :func:`open_image` dispatches there.
"""

from .downsample import downsample_mean, downsampled_shape
from .errors import ImageIOError
from .multiscale import MultiscaleImage
from .ome_zarr_writer import LevelInfo, OmeZarrWriter, RootMetadata, create_ome_zarr, read_root, write_ome_zarr
from .open import infer_kind, known_kinds, open_image
from .registry import ImageFormat, register_format
from .uri import atomic_write_bytes, fs_for, is_s3, join_uri, normalize_uri
from .zarr_source import image_from_zarr

__all__ = [
    "ImageIOError",
    "MultiscaleImage",
    "open_image",
    "infer_kind",
    "known_kinds",
    "ImageFormat",
    "register_format",
    "image_from_zarr",
    "create_ome_zarr",
    "write_ome_zarr",
    "OmeZarrWriter",
    "RootMetadata",
    "read_root",
    "LevelInfo",
    "downsample_mean",
    "downsampled_shape",
    "atomic_write_bytes",
    "fs_for",
    "is_s3",
    "join_uri",
    "normalize_uri",
]
