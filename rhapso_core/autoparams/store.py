"""The resolution beside a run's outputs: ``<out>.rhapso/resolved_params.json`` (atomic write)."""

from __future__ import annotations

import json

from rhapso_core.autoparams.records import Resolution
from rhapso_core.io import atomic_write_bytes, fs_for

__all__ = ["write_resolution", "read_resolution_dict", "RESOLVED_NAME"]

RESOLVED_NAME = "resolved_params.json"


def write_resolution(resolution: Resolution, uri: str, storage_options=None) -> str:
    """Write the resolution's JSON (parameters with sources and reasons, prealignment, facts)."""
    return atomic_write_bytes(uri, resolution.to_json().encode("utf-8"), storage_options)


def read_resolution_dict(uri: str, storage_options=None) -> dict | None:
    """A written resolution as a dict, or None when there is none at ``uri``."""
    fs, path = fs_for(uri, storage_options)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))
