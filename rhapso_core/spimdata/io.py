"""Load and save SpimData XML: local paths or any fsspec URI (``s3://...``)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

import fsspec

from . import uris
from .model import SpimData
from .xml_read import parse_spimdata
from .xml_write import to_xml_bytes

__all__ = ["load_xml", "save_xml", "from_xml_bytes", "to_xml_bytes"]


def from_xml_bytes(data: bytes, source: str = "<bytes>", strict: bool = True) -> SpimData:
    """Parse XML held in memory; ``source`` names it in errors and resolves relative paths
    (pass the XML's path or URI, or keep the default and call ``with_source_uri`` later)."""
    sd = parse_spimdata(data, source, strict)
    return sd.replace(source_uri=None) if source == "<bytes>" else sd


def load_xml(uri: str | os.PathLike, storage_options: dict | None = None, *, strict: bool = True) -> SpimData:
    """Read a BigStitcher SpimData XML.

    Parameters
    ----------
    uri : str or path-like
        Local path, ``file://``, ``s3://bucket/key.xml`` or any fsspec URI.
    storage_options : dict, optional
        Passed to :func:`fsspec.open` (credentials, ``endpoint_url`` via
        ``client_kwargs``, ``anon=True``, ...).
    strict : bool, default True
        Refuse (``SpimDataError``) missing sections, views of the sequence without a
        registration, unparsable affines and unknown loader formats. ``strict=False``
        tolerates them (see ``SpimData.issues``) so partial files round-trip.

    Raises
    ------
    SpimDataError
        One line naming the file and element: malformed or truncated XML, missing
        required elements, a non-missing view without a registration, a bad affine.
    FileNotFoundError
        The file does not exist.
    """
    s = os.fspath(uri)
    source = uris.normalize(s)
    with fsspec.open(s, "rb", **(storage_options or {})) as f:
        data = f.read()
    return parse_spimdata(data, source, strict)


def _rebased(sd: SpimData, target: str) -> SpimData:
    """Keep a relative BasePath pointing at the same folder when saving elsewhere
    (BigStitcher's behaviour on "save as")."""
    text = sd.base_path_text.strip() or "."
    if sd.base_path_type != "relative" or uris.is_url(text) or sd.source_uri is None:
        return sd
    folder = uris.parent(target)
    if uris.parent(sd.source_uri) == folder:
        return sd
    old = sd.base_path
    rel = uris.relative_to(old, folder)
    if rel is None:
        return sd.replace(base_path_text=old, base_path_type="absolute")
    return sd.replace(base_path_text=rel.replace(os.sep, "/"))


def _atomic_write_local(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; give it the mode the old file had (or 0644).
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_xml(
    spimdata: SpimData,
    uri: str | os.PathLike,
    storage_options: dict | None = None,
    *,
    rebase_base_path: bool = True,
) -> SpimData:
    """Write SpimData XML atomically.

    Local files: a temporary file in the same folder (created if missing), fsynced,
    then ``os.replace``; readers never see a partial file. Object stores: the whole
    object in one PUT.

    Parameters
    ----------
    spimdata : SpimData
    uri : str or path-like
        Destination (local path or fsspec URI).
    storage_options : dict, optional
        Passed to fsspec for remote destinations.
    rebase_base_path : bool, default True
        When a loaded document with a relative ``<BasePath>`` is saved into another
        folder, rewrite the BasePath so it still points at the same data (relative
        if possible, else absolute). ``False`` writes it unchanged.

    Returns
    -------
    SpimData
        What was written, with ``source_uri`` set to the destination.
    """
    target = uris.normalize(os.fspath(uri))
    out = _rebased(spimdata, target) if rebase_base_path else spimdata
    data = to_xml_bytes(out)
    if uris.is_url(target):
        fs, path = fsspec.core.url_to_fs(target, **(storage_options or {}))
        fs.pipe_file(path, data)
    else:
        _atomic_write_local(target, data)
    return out.replace(source_uri=target)
