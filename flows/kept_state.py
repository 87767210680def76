"""The state folder of a process kept between commands (the local Prefect API,
:mod:`flows.kept_api`; the command process, :mod:`rhapso_cli.kept_process`): its lock files, its
JSON record written atomically, and whether a recorded PID is still that process. Standard
library only: the ``rhapso`` program reads these before it imports anything else."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path, mode: int = fcntl.LOCK_EX):
    with open(path, "a+") as f:
        fcntl.flock(f, mode)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def try_exclusive(f) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def read_record(path: Path, required: tuple[str, ...]) -> dict | None:
    """The JSON object in ``path`` when it has the ``required`` keys, else None (absent, half
    written by a writer that does not use :func:`write_record`, or another format)."""
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) and all(k in info for k in required) else None
    except (OSError, ValueError):
        return None


def write_record(path: Path, info: dict) -> None:
    """Replace ``path`` at once: a reader sees the old record or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie, not yet reaped by its parent, has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def is_process_of(pid: int, script: str, state: Path) -> bool:
    """The process ``pid`` is alive and runs ``script`` for the state folder ``state`` (not a
    reused PID: its command line names both). Without /proc, an existing PID is trusted."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return running(pid)
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return script.encode() in b" ".join(cmdline) and os.fsencode(state) in cmdline
