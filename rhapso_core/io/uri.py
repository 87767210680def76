"""URIs for local paths and ``s3://`` objects, and atomic small-file writes.

A *URI* here is either a local path (relative, absolute or ``file://``) or an
``s3://bucket/key`` URL. S3 access goes through s3fs; its options are the
``storage_options`` dict every reader and writer accepts (``anon=True``,
``key``/``secret``, ``client_kwargs={"endpoint_url": ...}``). Without an explicit
endpoint, botocore honours the ``AWS_ENDPOINT_URL`` environment variable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from .errors import ImageIOError

__all__ = ["is_s3", "normalize_uri", "join_uri", "fs_for", "atomic_write_bytes", "read_bytes"]


def is_s3(uri: str | os.PathLike) -> bool:
    """True for ``s3://`` (and ``s3a://``) URLs."""
    return str(uri).lower().startswith(("s3://", "s3a://"))


def normalize_uri(uri: str | os.PathLike) -> str:
    """Canonical form: ``s3://bucket/key`` without a trailing slash, or an absolute local path.

    ``file://`` prefixes are dropped and ``s3a://`` becomes ``s3://``.
    """
    s = os.fspath(uri)
    if is_s3(s):
        rest = s.split("://", 1)[1].strip("/")
        while "//" in rest:
            rest = rest.replace("//", "/")
        return "s3://" + rest
    if s.startswith("file://"):
        s = s[len("file://") :]
    return str(Path(s).expanduser().absolute())


def join_uri(base: str | os.PathLike, *parts: str) -> str:
    """Join path components onto a URI with ``/`` (S3) or the OS separator (local).

    Empty parts are skipped, so ``join_uri(root, dataset or "")`` is safe.
    """
    out = normalize_uri(base)
    for p in parts:
        p = str(p).strip("/")
        if not p:
            continue
        out = out.rstrip("/") + "/" + p if is_s3(out) else os.path.join(out, p)
    return out


def fs_for(uri: str | os.PathLike, storage_options: dict[str, Any] | None = None):
    """The fsspec filesystem and filesystem path for a URI.

    Parameters
    ----------
    uri : str
        Local path or ``s3://`` URL.
    storage_options : dict, optional
        Passed to :class:`s3fs.S3FileSystem` for S3 URIs (ignored locally).

    Returns
    -------
    (fsspec.AbstractFileSystem, str)
        For S3 the path is ``bucket/key``; locally an absolute path.
    """
    u = normalize_uri(uri)
    if is_s3(u):
        return fsspec.filesystem("s3", **(storage_options or {})), u[len("s3://") :]
    return fsspec.filesystem("file"), u


def holds_data(uri: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> bool:
    """True if anything is at ``uri`` but an empty folder (S3: a fresh listing, not s3fs's cache)."""
    fs, path = fs_for(uri, storage_options)
    if is_s3(uri):
        fs.invalidate_cache(path)
    return fs.exists(path) and (not fs.isdir(path) or bool(fs.ls(path)))


def read_bytes(uri: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> bytes:
    """Whole content of a (small) file; a missing file raises :class:`ImageIOError`."""
    fs, path = fs_for(uri, storage_options)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise ImageIOError(f"{normalize_uri(uri)}: no such file") from None


def atomic_write_bytes(
    uri: str | os.PathLike, data: bytes, storage_options: dict[str, Any] | None = None
) -> str:
    """Write ``data`` so a reader sees either the old content or all of the new.

    Locally the bytes go to a temporary file in the same directory, which is
    then renamed over the target (``os.replace`` is atomic on one filesystem).
    On S3 a single PUT is already atomic: an object is never visible half written.
    Parent directories are created as needed.

    Parameters
    ----------
    uri : str
        Target local path or ``s3://`` URL.
    data : bytes
        The full new content.
    storage_options : dict, optional
        s3fs options for S3 targets.

    Returns
    -------
    str
        The normalised URI written.
    """
    u = normalize_uri(uri)
    if is_s3(u):
        fs, path = fs_for(u, storage_options)
        fs.pipe_file(path, bytes(data))
        return u
    target = Path(u)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; keep the target's mode, or use the usual 0644.
        os.fchmod(fd, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return u
