"""Retry, cache and resource policies shared by the tasks."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

import rhapso_core


def _code_version() -> str:
    """Hash of the computation package's sources: a code change invalidates cached results."""
    h = hashlib.sha256()
    root = Path(rhapso_core.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


CODE_VERSION = _code_version()

#: Inputs (which include the XML's content hash), the task's source and the core's code.
CACHE_POLICY = INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=lambda ctx, params: CODE_VERSION)

#: Back-off between retries of transient I/O failures (seconds).
RETRY_DELAYS = [2, 10, 30]

_FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def is_transient(exc: BaseException) -> bool:
    """Network, storage-service and timeout errors are worth a retry; bad input is not."""
    if isinstance(exc, (ValueError, KeyError, TypeError, FileNotFoundError, PermissionError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_OR_READ_ONLY:
        return False  # a full disk or a read-only one stays so for the seconds a retry waits
    name = type(exc).__module__ + "." + type(exc).__name__
    if any(k in name for k in ("botocore", "aiobotocore", "aiohttp", "s3fs", "urllib3", "ClientError")):
        return True
    return isinstance(exc, OSError)


def retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except BaseException as exc:  # the failed state re-raises the task's exception
        return is_transient(exc)
    return False


def ray_hints(memory_bytes: float, num_cpus: float = 1.0) -> dict:
    """Ray resource hints for a task whose working set is ``memory_bytes``."""
    from rhapso_core.cost import reserved_memory

    return {"num_cpus": num_cpus, "memory": reserved_memory(memory_bytes)}
