"""Prefect artifact writes in the background, in the order they were made, against the local API.

Every artifact a flow publishes (a stage's progress bar, the matching and solver tables,
the notes) is an HTTP request to the Prefect API that the flow's thread waits for: 1.0-1.3 s
of a 10 s ``rhapso stitch`` of 6 small tiles (py-spy of the main thread: progress bars 0.5 s,
tables 0.25 s, the rest notes), while the stages that follow had nothing to wait for. Within
:func:`in_background` each write is queued to one thread of this process instead and the flow
goes on; the server still does the same work.

Only against the local API that a command runs (:func:`flows.runtime.prefect_api`: the kept or
the temporary server, :mod:`flows.local_api_app`): a write beside the flow's own requests can
find SQLite locked, and that server runs such a write again within milliseconds
(:mod:`flows.locked_write_retry`), where Prefect's client, against any other server, waits 2 s
and more (measured: 2.2-2.4 s lost in half the runs). Elsewhere (``PREFECT_API_URL``, a
deployment's worker, ``prefect server start``) every write is made at once, as before.

* **Same artifacts, same runs.** A write runs in a copy of the caller's context (Prefect
  reads the flow and task run it belongs to from there), one at a time in the order made, so
  a progress bar's updates follow its creation and a key's versions their order.
* **Nothing left unwritten, no hang.** A top-level flow run waits for its writes before it
  ends (:func:`flush`, called by :class:`flows.lean_flow.LeanFlow`), and so does the end of
  :func:`in_background`; each wait is bounded (:data:`FLUSH_TIMEOUT_S`: an API that went away
  makes each write retry for up to a minute, where before the first one failed the run), and
  writes still queued after it are named in a warning and dropped when the process exits
  (the writer is a daemon thread).
* **Its own client.** A write may run after the flow run that made it has ended and closed
  its API client, so the thread uses one client of its own per API address (a test process
  meets several servers).
* **A failed write does not fail the run.** Artifacts are what a person reads in the UI,
  not results: a write that fails (the API gone, a rejected payload) is logged as a warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from typing import Any

log = logging.getLogger(__name__)

#: Longest wait of a flush (seconds). A write to a live API takes milliseconds; Prefect's client
#: retries one to an API that went away for about a minute.
FLUSH_TIMEOUT_S = 120.0

_lock = threading.Lock()
_background = [0]  # open in_background(True) blocks
_queue: queue.SimpleQueue = queue.SimpleQueue()
_writer: list[threading.Thread] = []
_pending: list[tuple[str, Future]] = []
_client: dict[str, Any] = {"url": None, "context": None}  # touched by the writer thread only


@contextlib.contextmanager
def in_background(enabled: bool = True) -> Iterator[None]:
    """Within the block (``enabled``), :func:`submit` queues; on leaving it, the writes are made."""
    with _lock:
        _background[0] += bool(enabled)
    try:
        yield
    finally:
        with _lock:
            _background[0] -= bool(enabled)
        flush(FLUSH_TIMEOUT_S)


def queued() -> bool:
    """Whether :func:`submit` queues now (inside :func:`in_background`) rather than writing at once."""
    return bool(_background[0])


def submit(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """``fn(*args, **kwargs)`` (a Prefect artifact call): queued to run after the writes queued before
    it, in a copy of this context, inside :func:`in_background`; made now elsewhere. ``what`` names it
    in the warning if it fails."""
    if not _background[0]:
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))  # as before: in the caller's thread, its errors its own
        return done
    fut: Future = Future()
    with _lock:
        if not _writer or not _writer[0].is_alive():
            _writer[:] = [threading.Thread(target=_loop, name="rhapso-artifacts", daemon=True)]
            _writer[0].start()
        _queue.put((fut, contextvars.copy_context(), what, fn, args, kwargs))
        _pending.append((what, fut))
        if len(_pending) > 256:  # keep the list short in a long run: drop the finished
            _pending[:] = [(w, f) for w, f in _pending if not f.done()]
    return fut


def flush(timeout: float | None = FLUSH_TIMEOUT_S) -> bool:
    """Wait until every write queued so far has been made (or has failed and been logged), at most
    ``timeout`` seconds; False (and a warning naming them) where some are still queued."""
    with _lock:
        pending, _pending[:] = list(_pending), []
    if not pending:
        return True
    _, left = wait([f for _, f in pending], timeout=timeout)
    if left:
        names = [w for w, f in pending if f in left]
        log.warning("%d Prefect artifact writes still queued after %.0f s (%s): they are dropped if the "
                    "process exits first", len(names), timeout, ", ".join(names[:5]))
        with _lock:
            _pending[:0] = [(w, f) for w, f in pending if f in left]
    return not left


def _loop() -> None:
    while True:
        fut, ctx, what, fn, args, kwargs = _queue.get()
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(ctx.run(_write, what, fn, args, kwargs))
        except BaseException as exc:  # noqa: BLE001 - _write logs every Exception; anything else ends only this write
            fut.set_exception(exc)


def _write(what: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    try:
        from prefect.context import SyncClientContext

        own = _client_context()
        if own is not None:
            SyncClientContext.__var__.set(own)  # in this copy of the caller's context only
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a UI artifact must not fail the run
        log.warning("could not write the Prefect artifact %s: %s: %s", what, type(exc).__name__, exc)
        return None


def _client_context():
    """This thread's client for the API the caller's settings name (PREFECT_API_URL), opened once;
    None where they name none (Prefect would start an ephemeral server per client: the caller's is used)."""
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return None
    if _client["context"] is not None and _client["url"] == url:
        return _client["context"]
    if _client["context"] is not None:
        try:
            _client["context"].client.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - the old server may be gone
            pass
    SyncClientContext.__var__.set(None)  # not the caller's client: a new one (get_client reads this)
    ctx = SyncClientContext()
    ctx.client.__enter__()
    _client.update(url=url, context=ctx)
    return ctx
