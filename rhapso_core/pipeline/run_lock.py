"""One writer per output folder: an exclusive lock object inside the folder.

Two runs writing the same folder at once can interleave their writes (a later
detection replaces a view's points and so drops the correspondences an earlier
run's solve is about to read). The lock makes the second run refuse with one
line naming the holder, before it writes anything.

The lock is the object ``<out>/.rhapso-run.lock`` holding a small JSON record
(run id, host, pid, start time), created exclusively: ``O_CREAT | O_EXCL`` on a
local disk, a conditional PUT (``If-None-Match: *``) on S3. It is deleted when
the run ends, failed or not. A lock left by a killed run on this host (its pid is
gone) is taken over, so re-running a killed run resumes without a manual step; a
lock from another host is only taken over when ``steal=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator

from rhapso_core.io import fs_for, is_s3
from rhapso_core.output_layout import LOCK_NAME, lock_path  # noqa: F401  (re-exported)

#: Locks this process holds, ``{out_dir: (record, storage_options)}``: an interrupted
#: command releases them on its way out (see :func:`release_held`).
_HELD: dict[str, tuple[dict, dict | None]] = {}


class OutputLockedError(ValueError):
    """Another run holds the output folder (the message names it)."""


def read_lock(out_dir: str, storage_options: dict | None = None) -> dict | None:
    """The holder's record, or None when the folder is not locked."""
    fs, path = fs_for(lock_path(out_dir), storage_options)
    try:
        with fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"run_id": "?", "raw": data[:200].decode("utf-8", "replace")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale(record: dict) -> bool:
    """A lock of this host whose process is gone (a killed run)."""
    return record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int) \
        and not _pid_alive(record["pid"])


def _create_exclusive(fs, path: str, data: bytes, s3: bool) -> bool:
    """Create ``path`` holding ``data`` only if absent; False if it exists."""
    if s3:
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:  # s3fs maps 412 PreconditionFailed to an OSError subclass
            if "412" in str(exc) or "Precondition" in str(exc):
                return False
            raise
        return True
    fs.makedirs(fs._parent(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def acquire(out_dir: str, run_id: str | None = None, storage_options: dict | None = None,
            steal: bool = False) -> dict:
    """Lock ``out_dir`` for one run; raise :class:`OutputLockedError` if another run holds it.

    Parameters
    ----------
    out_dir : str
        The run's output folder (local path or ``s3://`` prefix).
    run_id : str, optional
        Recorded in the lock (e.g. the Prefect flow run id). Default: a random id.
    steal : bool
        Replace a lock held by another run (only when that run is known dead).

    Returns
    -------
    dict
        The record written (pass it to :func:`release`). When a dead run's lock was
        taken over, ``record["took_over"]`` holds that run's record.
    """
    record = {"run_id": run_id or uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    data = json.dumps(record).encode()
    fs, path = fs_for(lock_path(out_dir), storage_options)
    s3 = is_s3(out_dir)
    for _ in range(2):
        if _create_exclusive(fs, path, data, s3):
            return record
        holder = read_lock(out_dir, storage_options)
        if holder is None:  # released between our create and our read: try again
            continue
        if holder.get("run_id") == record["run_id"]:
            return holder  # our own create whose reply was lost and retried (S3 answers 412)
        if steal or _stale(holder):
            fs.rm(path)
            # The dead run may have been killed mid-write: the new holder clears its temporaries.
            record["took_over"] = holder
            continue
        raise OutputLockedError(
            f"{out_dir}: output folder is in use by run {holder.get('run_id')} "
            f"(host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}); "
            f"wait for it, choose another output folder, or delete {lock_path(out_dir)} if that run is dead"
        )
    raise OutputLockedError(f"{out_dir}: could not take the output lock {lock_path(out_dir)}")


def release(out_dir: str, record: dict, storage_options: dict | None = None) -> None:
    """Delete the lock if it is still ours (a stolen lock is left to its new holder)."""
    holder = read_lock(out_dir, storage_options)
    if holder is not None and holder.get("run_id") == record.get("run_id"):
        fs, path = fs_for(lock_path(out_dir), storage_options)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)


@contextlib.contextmanager
def output_lock(out_dir: str, run_id: str | None = None, storage_options: dict | None = None,
                steal: bool = False) -> Iterator[dict]:
    """``with output_lock(out, run_id):`` hold the output folder for the block's duration."""
    record = acquire(out_dir, run_id, storage_options, steal)
    _HELD[out_dir] = (record, storage_options)
    try:
        yield record
    finally:
        _HELD.pop(out_dir, None)
        release(out_dir, record, storage_options)


def held_locks() -> dict[str, dict]:
    """``{out_dir: record}`` of the output locks this process holds now."""
    return {k: v[0] for k, v in _HELD.items()}


def release_held() -> list[str]:
    """Release every lock this process holds (a command stopped by a signal); returns the folders."""
    released = []
    for out_dir, (record, options) in list(_HELD.items()):
        with contextlib.suppress(Exception):
            release(out_dir, record, options)
            released.append(out_dir)
        _HELD.pop(out_dir, None)
    return released
