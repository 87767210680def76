"""The temporary API skips Prefect's block registration only while nothing it depends on has
changed since a start that ran it (flows/local_api_app.py)."""

from __future__ import annotations

import asyncio
from importlib import metadata

from prefect.settings import (
    PREFECT_API_BLOCKS_REGISTER_ON_START,
    PREFECT_API_DATABASE_CONNECTION_URL,
    PREFECT_MEMO_STORE_PATH,
    temporary_settings,
)

from flows import local_api_app


def test_registration_runs_again_whenever_what_it_depends_on_changed(tmp_path, monkeypatch):
    memo = tmp_path / "memo_store.toml"
    registered: list[str] = []
    prefect_hash = ["h1"]  # what Prefect's memo would hold after registering what is installed

    def prefect_memoize(fn):  # Prefect's decorator: register, then write its memo
        async def step():
            await fn()
            memo.write_text(f'block_auto_registration = "{prefect_hash[0]}"\n')

        return step

    async def register():
        registered.append(prefect_hash[0])

    def start(n_expected: int) -> None:
        asyncio.run(local_api_app.skipping_when_current(prefect_memoize)(register)())
        assert len(registered) == n_expected

    with temporary_settings(updates={PREFECT_MEMO_STORE_PATH: memo,
                                     PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{tmp_path}/a.db"}):
        start(1)  # nothing recorded
        assert (tmp_path / local_api_app.RECORD_NAME).is_file()
        start(1)  # same installation, same database, same memo: skipped
        start(1)
        prefect_hash[0] = "h2"
        memo.write_text('block_auto_registration = "h2"\n')  # another server registered other types
        start(2)
        start(2)
        with temporary_settings(updates={PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{tmp_path}/b.db"}):
            start(3)  # another database
            start(3)
        start(4)  # back to the first: the record is the other database's
        version = metadata.version
        monkeypatch.setattr(metadata, "version", lambda name: "0.0.1" if name == "prefect" else version(name))
        start(5)  # another Prefect
        start(5)
        monkeypatch.undo()
        start(6)
        memo.unlink()
        start(7)  # no memo of Prefect's: never skipped
        (tmp_path / local_api_app.RECORD_NAME).write_text("not json")
        start(8)  # unreadable record: Prefect's step
        start(8)
        with temporary_settings(updates={PREFECT_API_BLOCKS_REGISTER_ON_START: False}):
            start(9)  # registration off: Prefect's step decides (here the fake one registers)
            start(10)
