"""The application of the temporary local Prefect API (:mod:`flows.local_api`): Prefect's own,
less a start-up step that would change nothing, with its locked writes retried sooner
(:mod:`flows.locked_write_retry`).

On start, Prefect's server registers the block types of Prefect and of the installed Prefect
collections (prefect-aws, prefect-ray, ...) in its database, unless its memo
(``memo_store.toml``) says it registered the same ones in the same database before. Deciding
that costs the imports of every collection (1.4 s of a 5 s start on a quiet machine here:
prefect-aws pulls in aiobotocore and aiohttp), paid by every command's temporary server.

The block types a server would register follow from what is installed, so this records, after
a start that registered (or found Prefect's memo current), the installed versions of Prefect
and of the collections, the database and Prefect's memo. A later start that finds all four
unchanged skips the step, as Prefect's memo would have, without the imports. Anything else
(another version, another database, a memo rewritten by another server) runs Prefect's step
as before. A server started with ``prefect server start`` does not use this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path

from flows import server_gc, sqlite_busy_timeout
from flows.locked_write_retry import RetryLockedWrites

log = logging.getLogger(__name__)

#: Beside Prefect's memo store.
RECORD_NAME = "rhapso-block-registration.json"


def create_app():
    """uvicorn's factory (``--factory flows.local_api_app:create_app``): Prefect's ephemeral API
    application, its block registration skipped when :func:`installed_key` says it has nothing to do,
    a write refused by a locked database run again by the server first
    (:mod:`flows.locked_write_retry`), after a wait for SQLite's lock of seconds, not 60
    (:mod:`flows.sqlite_busy_timeout`), the process's cyclic garbage collected off the event loop
    (:mod:`flows.server_gc`).

    uvicorn calls it with its own SIGTERM handler installed, which defers the signal until the
    application has started: a command that stops its server while Prefect is still being imported
    (input refused after the early start, an interrupt) would wait seconds for nothing. Until the application exists (no database
    touched yet) SIGTERM ends the process at once; uvicorn's handler then takes over again."""
    import signal

    try:
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread: leave the handlers alone
        previous = None
    try:
        sqlite_busy_timeout.install()
        app = RetryLockedWrites(_create_app())
        server_gc.install()
        return app
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _create_app():
    import prefect.server.api.server as server

    original = getattr(server, "_memoize_block_auto_registration", None)
    if original is None:  # another Prefect: its own start-up, unchanged
        return server.create_app()
    server._memoize_block_auto_registration = skipping_when_current(original)
    try:
        return server.create_app()
    finally:
        server._memoize_block_auto_registration = original


def skipping_when_current(prefect_memoize):
    """Prefect's decorator of its registration step (``_memoize_block_auto_registration``), made
    to skip the step, its collection imports included, when :func:`_current`, and to record
    what is installed after running it."""

    def memoize(fn):
        prefect_step = prefect_memoize(fn)

        async def step(*args, **kwargs):
            if _current():
                return None
            await prefect_step(*args, **kwargs)
            _record()

        return step

    return memoize


def _paths_and_flags() -> tuple[Path, bool]:
    from prefect.settings import (
        PREFECT_API_BLOCKS_REGISTER_ON_START,
        PREFECT_MEMO_STORE_PATH,
        PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION,
    )

    active = bool(PREFECT_API_BLOCKS_REGISTER_ON_START.value() and PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION.value())
    return Path(PREFECT_MEMO_STORE_PATH.value()), active


def installed_key() -> str:
    """What the registered block types depend on: Prefect's version, the installed collections
    (the ``prefect.collections`` entry points, their distributions' versions) and the database."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    collections = sorted({(ep.dist.name if ep.dist else "", ep.dist.version if ep.dist else "", ep.name, ep.value)
                          for ep in metadata.entry_points(group="prefect.collections")})
    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    url = url.get_secret_value() if hasattr(url, "get_secret_value") else url
    text = json.dumps([metadata.version("prefect"), collections, str(url)])
    return hashlib.sha256(text.encode()).hexdigest()


def _prefect_memo(memo_path: Path) -> str | None:
    import tomllib

    try:
        return tomllib.loads(memo_path.read_text(encoding="utf-8")).get("block_auto_registration")
    except (OSError, ValueError):
        return None


def _current() -> bool:
    """True when the last registration recorded here is for what is installed now and Prefect's
    memo still says so."""
    try:
        memo_path, active = _paths_and_flags()
        if not active:  # Prefect's step does nothing (or always everything): leave it to Prefect
            return False
        memo = _prefect_memo(memo_path)
        record = json.loads((memo_path.parent / RECORD_NAME).read_text())
        return memo is not None and record == {"installed": installed_key(), "prefect_memo": memo}
    except (OSError, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - never fail a start over a shortcut
        log.debug("block registration record unreadable", exc_info=True)
        return False


def _record() -> None:
    """After Prefect's step: what is installed, and the memo it left."""
    try:
        memo_path, active = _paths_and_flags()
        memo = _prefect_memo(memo_path)
        if not active or memo is None:
            return
        path = memo_path.parent / RECORD_NAME
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"installed": installed_key(), "prefect_memo": memo}))
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - the next start just runs Prefect's step again
        log.debug("block registration record not written", exc_info=True)
