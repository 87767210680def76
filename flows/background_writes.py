"""API writes a stage makes off its flow's thread, in order, finished before the stage returns.

A progress artifact is one HTTP request to create and one per update, each 20-100 ms against a
busy server, made by the flow's thread between waiting for one task and the next. A fusion
stage writes one artifact for its work units and one per pyramid level, whose blocks take less
time than the requests on small jobs: 0.3-0.5 s of ``rhapso fuse``'s wall time on a 21 Mvox
job went to them (``docs/benchmarks.md``, "Per-flow-run overhead"). Inside :func:`in_background`
those writes go to one writer thread instead, in the order they were made, each with the
context (flow run, task run, client) of the code that made it, while the flow goes on to its
next tasks; the block ends when every write has finished. What the UI shows is the same: the
same artifacts, updated to the same values, linked to the same runs, all written before the
stage's flow run ends. A write that fails fails the stage when the block ends (the first error,
raised again), as it failed the stage when it was made.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_active: contextvars.ContextVar[_Writer | None] = contextvars.ContextVar("rhapso_background_writes", default=None)


class _Writer:
    def __init__(self) -> None:
        # One thread: the writes keep their order (an artifact is created before it is updated).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rhapso-api-writes")
        self._futures: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        ctx = contextvars.copy_context()
        self._futures.append(self._executor.submit(ctx.run, fn, *args, **kwargs))

    def close(self, raise_errors: bool) -> None:
        self._executor.shutdown(wait=True)
        if raise_errors:
            for f in self._futures:
                f.result()  # the first failed write's error


@contextlib.contextmanager
def in_background() -> Iterator[None]:
    """Writes made through :func:`write` in this block (this thread and its context) run on a
    writer thread; the block ends when they have all run."""
    writer = _Writer()
    token = _active.set(writer)
    failed = True
    try:
        yield
        failed = False
    finally:
        _active.reset(token)
        writer.close(raise_errors=not failed)  # the block's own error comes first


def write(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """``fn(*args, **kwargs)``: now, or on the writer thread inside :func:`in_background`."""
    writer = _active.get()
    if writer is None:
        fn(*args, **kwargs)
    else:
        writer.submit(fn, *args, **kwargs)
