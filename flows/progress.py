"""Progress of a running stage, for whoever listens in this process (the command line's
display): no Prefect here, so a listener needs nothing but this module.

The flows report through :class:`flows.artifacts.Progress` (which also updates Prefect's
progress artifact); a listener receives a :class:`ProgressEvent` at a stage's start
and each time one of its units finishes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    what: str  # the stage's units, e.g. "views detected", "fusion work units"
    done: int
    total: int
    elapsed_s: float  # since the stage's first event


_listeners: list[Callable[[ProgressEvent], None]] = []
_lock = threading.Lock()


def report(event: ProgressEvent) -> None:
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        try:
            fn(event)
        except Exception:  # a display must never fail the run
            log.debug("progress listener failed", exc_info=True)


def note(text: str) -> None:
    """A one-line message for listeners that show them (a listener with a ``note`` method)."""
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        show = getattr(fn, "note", None)
        if show is None:
            continue
        try:
            show(text)
        except Exception:  # a display must never fail the run
            log.debug("progress listener failed", exc_info=True)


@contextlib.contextmanager
def listening(fn: Callable[[ProgressEvent], None]) -> Iterator[None]:
    with _lock:
        _listeners.append(fn)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(fn)
