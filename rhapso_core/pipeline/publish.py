"""Publishing a run's results together: written under a staged name, moved into place at the end.

A run's small result files (the aligned XML) are written to a hidden staged name
in the same folder (so relative paths inside them stay valid) and renamed over
the published name only once every other result of the run is complete. A run
refused or stopped halfway therefore never leaves its new XML beside another
run's fused image.
"""

from __future__ import annotations

import contextlib
import os

from rhapso_core.io import fs_for, is_s3
from rhapso_core.output_layout import staged_name  # noqa: F401  (re-exported)


def published_name(path: str) -> str:
    """The inverse of :func:`staged_name`; any other path is returned as it is.

    Files named after a run's XML (the intensity coefficients) take the published name,
    so they match the XML once it is moved into place.
    """
    sep = "/" if is_s3(path) else os.sep
    folder, _, name = path.rstrip("/").rpartition(sep)
    stem, ext = (name[:-4], ".xml") if name.endswith(".xml") else (name, "")
    if not (name.startswith(".") and stem.endswith(".staged")):
        return path
    published = stem[1:-len(".staged")] + ext
    return f"{folder}{sep}{published}" if folder else published


def publish(staged: str, final: str, storage_options: dict | None = None) -> str:
    """Move ``staged`` over ``final`` (an atomic rename locally; a copy then delete on S3)."""
    if is_s3(final):
        fs, src = fs_for(staged, storage_options)
        _, dst = fs_for(final, storage_options)
        fs.mv(src, dst)
    else:
        os.replace(staged, final)
    return final


def remove_outputs(paths, storage_options: dict | None = None) -> list[str]:
    """Delete a replaced run's published outputs (files or trees); returns what was removed."""
    removed = []
    for p in paths:
        fs, path = fs_for(p, storage_options)
        with contextlib.suppress(FileNotFoundError):
            if fs.exists(path):
                fs.rm(path, recursive=fs.isdir(path))
                removed.append(p)
    return removed
