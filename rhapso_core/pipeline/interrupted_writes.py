"""Temporary files a killed run leaves behind, and clearing them before a re-run.

Local writes are atomic through a temporary file renamed over the target: zarr's
``LocalStore`` writes ``<name>.<32 hex>.partial``, our XML and report writers
``.<name>.<8 chars>.tmp`` (``tempfile.mkstemp``). A process killed between the
write and the rename leaves that file behind. Readers never see it as data, but
zarr warns about it when listing a group and it makes a resumed output differ
from a clean one, so a run that takes over a dead run's lock removes them first.

Only names of exactly those shapes are removed, and only under the run's own
outputs: the folder beside the aligned XML may also hold the input dataset.
Object stores need nothing: a PUT is atomic and leaves no temporary object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from rhapso_core.io import is_s3

_ZARR_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
_MKSTEMP_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def is_interrupted_write(name: str) -> bool:
    """True for a file name of the shape an atomic local write uses before its rename."""
    return bool(_ZARR_PARTIAL.search(name) or _MKSTEMP_TMP.match(name))


def sweep_interrupted_writes(trees: Iterable[str] = (), folders: Iterable[str] = ()) -> list[str]:
    """Delete interrupted-write temporaries; return the paths removed.

    Parameters
    ----------
    trees : iterable of str
        Output folders searched recursively (a point store, a fused OME-Zarr, a work folder).
    folders : iterable of str
        Folders searched at their top level only (the folder that holds an output XML).
        S3 paths and paths that do not exist are skipped.
    """
    removed: list[str] = []

    def clear(folder: str, names: Iterable[str]) -> None:
        for name in names:
            if is_interrupted_write(name):
                path = os.path.join(folder, name)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(path)

    for tree in trees:
        if is_s3(tree) or not os.path.isdir(tree):
            continue
        for folder, _, names in os.walk(tree):
            clear(folder, names)
    for folder in folders:
        if is_s3(folder) or not os.path.isdir(folder):
            continue
        clear(folder, [e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)])
    return removed
