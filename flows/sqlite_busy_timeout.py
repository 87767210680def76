"""The local Prefect API gives up on SQLite's write lock after seconds, not Prefect's 60.

Prefect's server sets ``PRAGMA busy_timeout = 60000`` on each SQLite connection: a statement
that finds the write lock taken waits up to 60 s for it. On this project's local API (the kept
and the temporary server, :mod:`flows.local_api_app`) that wait has been seen to be the whole
of a command's worst case: ``rhapso stitch`` of 6 small tiles, 7 s, took 66-69 s (4 runs of 45
in one session, 1 of 170 in the next), and a Ctrl-C'd ``align`` in CI held its server's exit for
more than 60 s (most likely the same wait: its server was alone on a new database). In a py-spy
dump of one (``docs/benchmarks.md``, fifth measurement) the server's event loop was idle, two
of its connections' threads sat inside SQLite, and the command waited on a subflow's state
write. In WAL mode the connection holding the write lock does not itself wait inside SQLite,
so the holder was a connection with a write transaction open and no statement running; a dump
of the server's tasks at a later wait found no live task using it, and the lock seemed to be released as
the first waiter gave up (``docs/benchmarks.md``). Waiting longer served nothing. Which code
leaves that transaction open: see the end of this note.

A whole stitch makes a few hundred writes in about 7 s, so a write holds the lock for
milliseconds (in the traces below a statement took 2 ms, median, and 10 ms at most outside the
stalls; a transaction is a few statements); a wait of
:data:`BUSY_TIMEOUT_MS` is far beyond that, and one that runs out is handled, sooner, by what
already handles a locked database: the request is run again by :mod:`flows.locked_write_retry`
and then by Prefect's client (503), and the task-run recorder and event persister put their
batch back on their queue. A server started with ``prefect server start`` keeps Prefect's 60 s.

**The wait is the stall.** Traced again on 2026-12-07 with a temporary hook in the kept API (not
committed: every statement's start and end, commit and rollback, per connection, and a thread
timing the event loop). About 1 stitch in 25 stalled (5 in some 130, the server restarted every
third). In the three traced, no statement started on any connection for the whole timeout
(5.0 s), while three or four writers waited inside SQLite for the lock; the thread timing the
loop (third trace) found it running nothing for 5.02 s. In one trace a flow run's state change had
written and its next statement started only as the stall ended; in the others no connection of
the engine held an unfinished write. Everything went on the moment the first waiter gave up. So
each stall lasts exactly this timeout (60 s with Prefect's, 5 s with the first value here), and a
shorter one makes it shorter: 1 s, still a hundred times the longest statement traced outside
the stalls. Found on 2026-12-08 (:mod:`flows.server_gc`): the loop's thread was inside the cyclic collector,
finalizing a failed statement's cursor, which waited for its connection's mutex while that
connection waited in SQLite for the lock, whose holder needed the loop. The collector now runs
off the loop; this timeout stays as the bound on any other wait.
"""

from __future__ import annotations

#: Milliseconds a statement of the local API waits for SQLite's lock (Prefect: 60000).
BUSY_TIMEOUT_MS = 1000


def install(busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> bool:
    """Make every SQLite connection this process's Prefect server opens from now on wait at most
    ``busy_timeout_ms`` for a lock, after Prefect's own connection set-up. Call before the
    server's first database use (its engine binds the set-up when it is created). False when
    this Prefect has no such set-up (another version: its own, unchanged)."""
    try:
        from prefect.server.database.configurations import AioSqliteConfiguration
    except ImportError:
        return False
    prefect_setup = getattr(AioSqliteConfiguration, "setup_sqlite", None)
    if prefect_setup is None:
        return False
    if getattr(prefect_setup, "rhapso_busy_timeout_ms", None) is not None:
        prefect_setup = prefect_setup.__wrapped__

    def setup_sqlite(self, conn, record):
        prefect_setup(self, conn, record)
        cursor = conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)};")
        finally:
            cursor.close()

    setup_sqlite.__wrapped__ = prefect_setup
    setup_sqlite.rhapso_busy_timeout_ms = int(busy_timeout_ms)
    AioSqliteConfiguration.setup_sqlite = setup_sqlite
    return True
