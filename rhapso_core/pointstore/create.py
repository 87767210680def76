"""Creating a point store's root once, atomically, however many processes try at the same time.

zarr's ``open_group(mode="a")`` creates a group by writing its ``zarr.json`` without
attributes; the store's identity attribute follows in a second write. Two tasks
creating one store could interleave those writes (the later create replacing the
earlier one's attributes after points were already written), and an interrupted
run could stop between them: either way the root was left with empty attributes
and every later run refused the folder as "not a point store".

Here the root's ``zarr.json`` is written once, complete with the identity
attribute, and only if absent: a hard link of a fully written temporary file on a
local disk (``link`` fails if the name exists), a conditional PUT
(``If-None-Match: *``) on S3. Whoever loses the race opens the winner's store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import Any

from .layout import SCHEMA_VERSION, STORE_ATTR, parse_view_key

ROOT_META = "zarr.json"


def root_document() -> bytes:
    """The root group's metadata, identity attribute included (zarr v3 ``zarr.json``)."""
    doc = {"attributes": {STORE_ATTR: {"schema_version": SCHEMA_VERSION}}, "zarr_format": 3, "node_type": "group"}
    return json.dumps(doc, indent=2).encode()


def _create_local(root: str, data: bytes) -> bool:
    os.makedirs(root, exist_ok=True)
    meta = os.path.join(root, ROOT_META)
    if os.path.exists(meta):
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{ROOT_META}.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, meta)
        except FileExistsError:
            return False
        except OSError as exc:  # a filesystem without hard links: exclusive create, then write
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            try:
                out = os.open(meta, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as f:
                f.write(data)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _create_remote(fs, root: str, data: bytes) -> bool:
    path = f"{root.rstrip('/')}/{ROOT_META}"
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:  # s3fs reports 412 PreconditionFailed as an OSError
        if "412" in str(exc) or "Precondition" in str(exc):
            return False
        raise
    return True


def create_root_if_absent(uri: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Write the store's root metadata if no root exists; True when this call created it."""
    target = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" not in target:
        return _create_local(target, root_document())
    import fsspec

    fs, path = fsspec.core.url_to_fs(target, **(storage_options or {}))
    if fs.exists(f"{path.rstrip('/')}/{ROOT_META}"):
        return False
    return _create_remote(fs, path, root_document())


def looks_half_created(child_names) -> bool:
    """A root without the identity attribute whose children are all view groups of a point store:
    the identity write was lost (an interrupted or raced create of an earlier version)."""
    return all(parse_view_key(n) is not None for n in child_names)
