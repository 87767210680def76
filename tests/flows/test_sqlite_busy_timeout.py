"""The local API's SQLite connections wait seconds for a lock, not Prefect's 60 s
(flows/sqlite_busy_timeout.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration

from flows import sqlite_busy_timeout


async def _write_while_locked(url: str, db_path) -> tuple[int, float, str]:
    """Prefect's SQLite set-up on a fresh engine; another connection holds the write lock while
    the engine's connection tries to write: (its busy timeout, seconds until it gave up, error)."""
    config = AioSqliteConfiguration(connection_url=url)
    engine = await config.engine()
    try:
        async with engine.connect() as conn:
            busy_ms = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            await conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        error = ""
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        except sa.exc.OperationalError as exc:
            error = str(exc.orig)
        waited = time.monotonic() - t0
        holder.rollback()
        holder.close()
        return busy_ms, waited, error
    finally:
        await engine.dispose()


def test_a_locked_write_gives_up_after_the_local_apis_timeout(tmp_path, monkeypatch):
    """Tolerance: PRAGMA busy_timeout reads exactly BUSY_TIMEOUT_MS, and a write against a held
    lock fails with "database is locked" between 0.9x and 3x that timeout (Prefect's own
    set-up would wait 60 s)."""
    monkeypatch.setattr(AioSqliteConfiguration, "setup_sqlite", AioSqliteConfiguration.setup_sqlite)
    assert sqlite_busy_timeout.install(busy_timeout_ms=1000)
    assert sqlite_busy_timeout.install(busy_timeout_ms=1000)  # twice: wraps Prefect's set-up once
    db = tmp_path / "api.db"
    busy_ms, waited, error = asyncio.run(_write_while_locked(f"sqlite+aiosqlite:///{db}", db))
    assert busy_ms == 1000
    assert "database is locked" in error
    assert 0.9 <= waited <= 3.0, waited

