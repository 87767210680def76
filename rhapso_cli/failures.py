"""How the ``rhapso`` command ends on a failure: one line naming the file, exit status 2.

The line comes from the error the stage raised (already one line naming the file,
element or parameter for bad input), from an ``OSError``'s file name and reason
(disk full, name too long, permission denied), or from the first line of any other
error. Errors raised in a Ray worker arrive wrapped; the worker's own error is
reported. Prefect logs a failed run's traceback at ERROR level: on the console that
is hidden unless ``-v`` (it still reaches the Prefect API and the UI), and ``-v``
prints the traceback before the line.
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from collections.abc import Iterable

EXIT_FAILED = 2

_OS_HINTS = {
    errno.ENOSPC: "no space left on the device (free space, or choose another output)",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long (choose a shorter output path)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}

#: Error types whose message is written for the user (one line naming the culprit).
_USER_ERRORS = (ValueError, KeyError, LookupError)


def _unwrap(exc: BaseException) -> BaseException:
    """The original error of one raised in a Ray worker (``RayTaskError.cause``) or chained by Prefect."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if type(exc).__name__.startswith("RayTaskError") and isinstance(cause, BaseException):
            exc = cause
            continue
        break
    return exc


def _first_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def one_line(exc: BaseException) -> str:
    """The user's line for ``exc`` (without the ``rhapso CMD: error:`` prefix)."""
    exc = _unwrap(exc)
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, FileExistsError)) and exc.errno:
        reason = _OS_HINTS.get(exc.errno, exc.strerror or errno.errorcode.get(exc.errno, "OS error"))
        where = exc.filename or _first_line(str(exc))
        return f"{where}: {reason}" if where else reason
    msg = _first_line(str(exc))
    if isinstance(exc, KeyError):
        msg = msg.strip("'\"")
    if isinstance(exc, (OSError,) + _USER_ERRORS) and msg:
        if isinstance(exc, OSError) and getattr(exc, "filename", None) and str(exc.filename) not in msg:
            msg = f"{exc.filename}: {msg}"
        return msg
    return f"{type(exc).__name__}: {msg or 'no message'} (rerun with -v for the traceback)"


def report_failure(command: str, exc: BaseException, verbose: bool) -> int:
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"rhapso {command}: error: {one_line(exc)}", file=sys.stderr)
    return EXIT_FAILED


class _DropRunErrors(logging.Filter):
    """Console only: drop ERROR records of Prefect's run loggers (they repeat the failure with
    its traceback, which the command reports as one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith("prefect"))


def quiet_run_errors(handlers: Iterable[logging.Handler]) -> list[tuple[logging.Handler, logging.Filter]]:
    added = []
    for h in handlers:
        f = _DropRunErrors()
        h.addFilter(f)
        added.append((h, f))
    return added
