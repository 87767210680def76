"""The local Prefect API server collects cyclic garbage in a thread of its own, not on its event loop.

Why (the local API's stalls, ``docs/benchmarks.md``, ninth measurement): about one ``rhapso
stitch`` in 25-50 waited exactly SQLite's busy timeout for nothing. Caught in the act (a watch on
SQLite's lock in ``/proc/locks``, native stacks of the server): the event loop's thread was inside
the cyclic collector, finalizing a garbage ``sqlite3.Cursor``, most likely one whose statement had
failed earlier ("database is locked": SQLAlchemy 2.0.59's aiosqlite adapter closes a failed
statement's cursor only on cancellation, not on an error, and the exception's traceback holds it
in a cycle). Finalizing it resets its statement, which
takes its connection's mutex; that connection's thread was inside ``sqlite3_step``, holding the
mutex while it waited in the busy handler for the write lock; and the lock's holder, another
connection, was a coroutine that needed the event loop to go on to its commit. So nothing moved
until the waiter's busy timeout ran out. (Reproduced outside Prefect: a cursor whose insert
failed on a locked database, freed while a second insert on its connection waits, blocks its
freeing thread for the whole wait; SQLite releases the GIL meanwhile.)

CPython runs the collector in whichever thread allocates past the threshold, most often the
loop's. Here automatic collection is off and a daemon thread collects by the same thresholds,
looking every :data:`POLL_S`; a finalizer that blocks on a connection's mutex then blocks that
thread alone, and the loop lets the lock's holder commit. Objects freed by reference counting
are unchanged (they are freed where their last reference goes), and finalizers already ran on
threads other than the loop's (the aiosqlite and AnyIO threads allocate too), so no finalizer
meets a thread it could not have met before.
"""

from __future__ import annotations

import gc
import threading
import time

#: Seconds between two looks at the collector's counts (a look costs a microsecond). Cyclic
#: garbage waits at most this long beyond CPython's own threshold.
POLL_S = 0.05

#: At least this many seconds between two full (generation 2) collections. CPython defers a full
#: collection until the objects that survived since the last one are a quarter of the long-lived
#: ones, a figure Python code cannot read, so the rate is bounded instead: a full pass over the
#: server's heap once its application exists (290,000 tracked objects) took 90-110 ms here, which
#: :func:`install`'s ``gc.freeze()`` spares later passes.
FULL_MIN_INTERVAL_S = 10.0

_thread: threading.Thread | None = None


def due_generation(count: tuple[int, int, int], threshold: tuple[int, int, int],
                   full_allowed: bool = True) -> int | None:
    """The generation CPython's automatic collection would collect now (the oldest whose count is
    over its threshold), or None. A full collection only when ``full_allowed``; else the next one."""
    for gen in (2, 1, 0):
        if threshold[gen] and count[gen] > threshold[gen]:
            if gen == 2 and not full_allowed:
                continue
            return gen
    return None


def _collect_forever(poll_s: float) -> None:
    last_full = time.monotonic()
    while True:
        time.sleep(poll_s)
        now = time.monotonic()
        gen = due_generation(gc.get_count(), gc.get_threshold(), now - last_full >= FULL_MIN_INTERVAL_S)
        if gen is None:
            continue
        gc.collect(gen)
        if gen == 2:
            last_full = now


def install(poll_s: float = POLL_S) -> bool:
    """Turn this process's automatic collection off and collect in a daemon thread instead, with
    everything alive now (the imported server stack) frozen out of later passes. For a server
    process only (it changes the whole interpreter), once its application exists; False if
    already installed."""
    global _thread
    if _thread is not None:
        return False
    gc.disable()
    gc.collect()
    gc.freeze()
    _thread = threading.Thread(target=_collect_forever, args=(poll_s,), name="gc-off-the-loop", daemon=True)
    _thread.start()
    return True
