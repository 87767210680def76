"""What produced an output folder, so a re-run with other inputs is refused before it writes.

A run records, in ``<out>/.rhapso-run.json``, the SHA-256 of its input XML and the
parameters that shape its results (every stage's, not ``runtime`` nor ``qc``:
CPUs, Ray address and report thresholds do not change a byte of the outputs).
A later run into the same folder compares: the same inputs resume, other inputs
are refused unless the user passed ``overwrite`` - before anything is written, so
the folder never pairs a new registration with an old fused image. ``state``
says whether the recorded run completed (``complete``), is running or was
killed (``running``) or was stopped by the user (``cancelled``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass

from rhapso_core.io import fs_for, is_s3
from rhapso_core.output_layout import RECORD_NAME, record_path  # noqa: F401  (re-exported)

#: Parameter sections that do not change the bytes of a run's outputs.
NOT_RESULT_SHAPING = ("runtime", "qc", "synthetic")


class RerunMismatchError(ValueError):
    """The output folder holds a run of other inputs or parameters (the message names them)."""


@dataclass(frozen=True)
class RunRecord:
    """One run's identity: its input XML (path and SHA-256), result-shaping parameters, state."""

    input_xml: str
    input_sha256: str
    params: dict
    state: str = "running"
    updated: str = ""


def shaping_params(params) -> dict:
    """The result-shaping parameters of a :class:`~rhapso_core.config.PipelineParams`, flat
    ``{"stage.name": value}`` (JSON values, so records compare after a round trip)."""
    dumped = json.loads(json.dumps(params.model_dump(mode="json", exclude=set(NOT_RESULT_SHAPING)), default=str))
    flat: dict = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = obj

    walk("", dumped)
    return flat


def read_record(out_dir: str, storage_options: dict | None = None) -> RunRecord | None:
    fs, path = fs_for(record_path(out_dir), storage_options)
    try:
        data = json.loads(fs.cat_file(path))
        return RunRecord(**{k: data[k] for k in ("input_xml", "input_sha256", "params", "state", "updated")
                            if k in data})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None  # an unreadable record says nothing: the run is treated as an unrecorded one


def write_record(out_dir: str, record: RunRecord, storage_options: dict | None = None) -> None:
    """Replace the record atomically (temporary file renamed over it; one PUT on S3)."""
    record = RunRecord(**{**asdict(record), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    data = json.dumps(asdict(record), indent=1, sort_keys=True).encode()
    if is_s3(out_dir):
        fs, path = fs_for(record_path(out_dir), storage_options)
        fs.pipe_file(path, data)
        return
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{RECORD_NAME}.", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, record_path(out_dir))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def differences(old: RunRecord, input_sha256: str, params: dict) -> list[str]:
    """What differs between a recorded run and a new one, as short phrases."""
    diffs = []
    if old.input_sha256 != input_sha256:
        diffs.append(f"the input XML ({old.input_xml}) is not the same file content")
    defaults = None
    for key in sorted(set(old.params) | set(params)):
        a, b = old.params.get(key, "<unset>"), params.get(key, "<unset>")
        if a == b:
            continue
        if key not in old.params or key not in params:
            # A parameter added or removed by an upgrade of this software since the recorded run:
            # at its default it reproduces the earlier behaviour, so the run resumes.
            if defaults is None:
                from rhapso_core.config import PipelineParams

                defaults = shaping_params(PipelineParams())
            if key not in params or b == defaults.get(key, "<unset>"):
                continue
        diffs.append(f"{key} {json.dumps(a)} -> {json.dumps(b)}")
    return diffs


def check_rerun(out_dir: str, input_xml: str, input_sha256: str, params: dict, overwrite: bool,
                storage_options: dict | None = None) -> RunRecord | None:
    """Refuse a run whose inputs differ from the run recorded in ``out_dir`` (unless ``overwrite``).

    Returns the previous record (None for a fresh folder), so the caller knows whether
    it resumes the same run or replaces another one.
    """
    old = read_record(out_dir, storage_options)
    if old is None or overwrite:
        return old
    diffs = differences(old, input_sha256, params)
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise RerunMismatchError(
            f"{out_dir}: holds the outputs of a run with other inputs ({shown}); nothing was written: "
            f"pass --overwrite to replace them, or choose another output folder"
        )
    return old
