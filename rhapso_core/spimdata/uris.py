"""Local paths and ``scheme://`` URIs, resolved the way BigStitcher resolves XML paths.

A relative ``BasePath`` is relative to the folder holding the XML; image-loader
paths with ``type="relative"`` are relative to the resolved base path. URIs keep
their scheme (``s3://bucket/key``); local paths become absolute, normalised paths.
"""

from __future__ import annotations

import os
import posixpath

__all__ = ["is_url", "normalize", "parent", "join", "relative_to"]


def is_url(s: str) -> bool:
    """True for ``scheme://...`` (``s3://``, ``gs://``, ``file://``, ``memory://``)."""
    head, sep, _ = s.partition("://")
    return bool(sep) and head.isalnum() and len(head) > 1


def _split(url: str) -> tuple[str, str]:
    scheme, _, rest = url.partition("://")
    return scheme, rest


def normalize(s: str) -> str:
    """Absolute normalised local path, or a URI with ``.``/``..`` segments resolved.

    Java's ``file:/data/x`` (what BigStitcher 2.x writes for absolute local paths)
    is a local path like ``file:///data/x``.
    """
    if s.startswith("file:/") and not s.startswith("file://"):
        s = s[len("file:") :]
    if is_url(s):
        scheme, rest = _split(s)
        if scheme == "file":
            return normalize(rest)
        lead = "/" if rest.startswith("/") else ""
        norm = posixpath.normpath(rest)
        norm = norm.lstrip("/") if not lead else norm
        return f"{scheme}://{'' if norm == '.' else norm}"
    return os.path.normpath(os.path.abspath(s))


def parent(s: str) -> str:
    """The folder holding a file (local path or URI)."""
    if is_url(s):
        scheme, rest = _split(s)
        if scheme == "file":
            return parent(rest)
        return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"
    return os.path.dirname(os.path.abspath(s))


def join(base: str, rel: str) -> str:
    """``rel`` resolved against the folder ``base``; an absolute ``rel`` is returned normalised."""
    if is_url(rel) or os.path.isabs(rel):
        return normalize(rel)
    if is_url(base):
        scheme, rest = _split(base)
        if scheme != "file":
            return normalize(f"{scheme}://{posixpath.join(rest, rel)}")
        base = rest
    return normalize(os.path.join(base, rel))


def relative_to(target: str, folder: str) -> str | None:
    """``target`` as a path relative to ``folder``, or None when no relative path exists
    (different schemes or buckets)."""
    if is_url(target) != is_url(folder):
        return None
    if is_url(target):
        ts, tr = _split(normalize(target))
        fs, fr = _split(normalize(folder))
        if ts != fs or tr.split("/", 1)[0] != fr.split("/", 1)[0]:
            return None
        return posixpath.relpath("/" + tr, "/" + fr)
    try:
        return os.path.relpath(normalize(target), normalize(folder))
    except ValueError:  # different drives on Windows
        return None
