"""The image-format registry: each format is one module that registers an :class:`ImageFormat`.

A format says what it is called (its *kind*, the name ``open_image(kind=...)`` and
:class:`~rhapso_core.spimdata.ImageLocation` use), how to recognise it (path-component
suffixes, then the names found in a folder), and how to open it lazily as a
:class:`~rhapso_core.io.multiscale.MultiscaleImage`.

The built-in formats live in the modules of :data:`BUILTIN_FORMAT_MODULES`; they are
imported on first use, so a heavy reader dependency (h5py, tensorstore) is only
imported where that format is read. Adding a format: write the module (calling
:func:`register_format` at import) and add its name to that tuple, see
``docs/extending.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rhapso_core._registry import Registry

from .errors import ImageIOError
from .multiscale import MultiscaleImage

__all__ = [
    "BUILTIN_FORMAT_MODULES",
    "ImageFormat",
    "Opener",
    "register_format",
    "get_format",
    "registered_formats",
    "kind_from_suffix",
    "kind_from_listing",
]

# Order matters twice: it is the order of content sniffing (first match wins) and of
# the kinds listed in error messages.
BUILTIN_FORMAT_MODULES: tuple[str, ...] = (
    "rhapso_core.io.zarr_source",
    "rhapso_core.io.tiff_source",
    "rhapso_core.io.bdv_n5",
    "rhapso_core.io.bdv_hdf5",
)


class Opener(Protocol):
    def __call__(
        self,
        uri: str,
        dataset: str,
        *,
        files: list[str] | None,
        storage_options: dict[str, Any] | None,
        channel: int | None,
        timepoint: int | None,
    ) -> MultiscaleImage:
        """Open ``dataset`` (a path inside the container, ``""`` for the container itself) of ``uri``."""


@dataclass(frozen=True)
class ImageFormat:
    """One readable image format.

    Attributes
    ----------
    kind : str
        The name callers pass as ``kind`` (``"ome-zarr"``, ``"hdf5"``, ...).
    open : Opener
        Returns a lazy :class:`MultiscaleImage`; errors are one-line
        :class:`~rhapso_core.io.errors.ImageIOError` naming the file.
    suffixes : tuple of str
        Lower-case endings of a path component that mark this format (``".h5"``);
        the component nearest the end of the URI decides.
    sniff : callable, optional
        Given the entry names of a folder, True if the folder is this format
        (``attributes.json`` for N5). Tried in registration order.
    description : str
        One line for error messages and docs.
    """

    kind: str
    open: Opener
    suffixes: tuple[str, ...] = ()
    sniff: Callable[[Sequence[str]], bool] | None = None
    description: str = ""


_REGISTRY: Registry[ImageFormat] = Registry(BUILTIN_FORMAT_MODULES)
_FORMATS = _REGISTRY.entries


def register_format(fmt: ImageFormat) -> ImageFormat:
    """Add (or replace, for the same kind) a format; returns it so modules can keep a handle."""
    return _REGISTRY.register(fmt.kind, fmt)


def _ensure_loaded() -> None:
    _REGISTRY.ensure_loaded()


def registered_formats() -> list[ImageFormat]:
    """All formats in registration order."""
    _ensure_loaded()
    return list(_FORMATS.values())


def get_format(kind: str, *, uri: str = "") -> ImageFormat:
    """The format registered as ``kind``; an unknown kind is a one-line error naming ``uri``."""
    _ensure_loaded()
    fmt = _FORMATS.get(kind)
    if fmt is None:
        raise ImageIOError(f"{uri}: unknown image kind {kind!r}; expected one of {', '.join(_FORMATS)}")
    return fmt


def kind_from_suffix(parts: Sequence[str]) -> str | None:
    """The kind whose suffix ends the last matching path component (lower-case parts)."""
    _ensure_loaded()
    for p in reversed(parts):
        for fmt in _FORMATS.values():
            if fmt.suffixes and p.endswith(fmt.suffixes):
                return fmt.kind
    return None


def kind_from_listing(names: Sequence[str]) -> str | None:
    """The first format whose ``sniff`` accepts a folder's entry names."""
    _ensure_loaded()
    for fmt in _FORMATS.values():
        if fmt.sniff is not None and fmt.sniff(names):
            return fmt.kind
    return None
