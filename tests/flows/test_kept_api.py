"""The local Prefect API kept between commands (flows/kept_api.py, flows/kept_api_server.py): one
server per state folder and configuration, shared by concurrent commands, kept alive while any
command uses it, gone after its idle time, replaced when stale; the real Prefect one serves flow
runs of two commands in turn (slow test).

The fast tests serve a stand-in ASGI application (it answers ``/api/health``) through the same
server program, so the locking and process handling are exercised as in a command, in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows import kept_api

STUB_APP = '''
import asyncio, os

def create_app():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await asyncio.sleep(float(os.environ.get("STUB_START_S", "0")))
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        ok = scope["path"] == "/api/health"
        await send({"type": "http.response.start", "status": 200 if ok else 404, "headers": []})
        await send({"type": "http.response.body", "body": b"true" if ok else b""})
    return app
'''
APP = "kept_api_stub:create_app"


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A state folder of the test's own and the stand-in application on the server's path; every
    server started in it is stopped afterwards."""
    (tmp_path / "kept_api_stub.py").write_text(STUB_APP)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    folder = tmp_path / "state"
    monkeypatch.setenv("RHAPSO_LOCAL_API_DIR", str(folder))
    pids: list[int] = []
    yield folder, pids
    kept_api.stop_server(folder)
    for pid in pids:
        kept_api.terminate(pid, kill_after_s=5)


def _alive(pid: int, state: Path) -> bool:
    return kept_api.is_server_process(pid, state)


def _wait_gone(pid: int, state: Path, within_s: float) -> float:
    t = time.monotonic()
    while _alive(pid, state):
        assert time.monotonic() - t < within_s, f"kept server {pid} still running after {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - t


def test_commands_share_one_server_which_outlives_them_only_by_its_idle_time(state):
    folder, pids = state
    a = kept_api.acquire(1.0, APP)
    pids.append(a.pid)
    assert a.started_here and a.wait_ready(30) == a.api_url
    b = kept_api.acquire(1.0, APP)
    assert (b.pid, b.api_url, b.started_here) == (a.pid, a.api_url, False)  # reused, not another
    assert b.wait_ready(5) == a.api_url
    a.stop()
    time.sleep(2.5)  # over twice its idle time, but b still runs
    assert _alive(a.pid, folder) and kept_api.healthy(a.api_url)
    b.stop()
    gone_after = _wait_gone(a.pid, folder, within_s=6)
    assert gone_after >= 0.5  # idle for its second first (less the watchdog's step)
    assert kept_api.read_info(folder) is None  # it removed its record
    c = kept_api.acquire(1.0, APP)  # the next command starts a new one
    pids.append(c.pid)
    assert c.started_here and c.pid != a.pid and c.wait_ready(30) == c.api_url
    c.stop()


def test_concurrent_commands_start_one_server(state):
    folder, pids = state
    got: list[kept_api.KeptAPI] = []
    lock = threading.Lock()

    def command():
        api = kept_api.acquire(30.0, APP)
        with lock:
            got.append(api)

    threads = [threading.Thread(target=command) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pids.extend(api.pid for api in got)
    assert len({api.pid for api in got}) == 1
    assert sum(api.started_here for api in got) == 1
    assert {api.wait_ready(30) for api in got} == {got[0].api_url}
    for api in got:
        api.stop()


def test_a_stale_record_or_a_dead_server_is_replaced(state):
    folder, pids = state
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    kept_api.write_info(folder, {"pid": dead.pid, "port": 1, "key": kept_api.server_key(APP), "idle_s": 30.0})
    a = kept_api.acquire(30.0, APP)
    pids.append(a.pid)
    assert a.started_here and a.pid != dead.pid and a.wait_ready(30)
    a.stop()
    os.kill(a.pid, signal.SIGKILL)  # killed: its record stays, naming a dead process
    a.process.wait()
    assert kept_api.read_info(folder)["pid"] == a.pid
    b = kept_api.acquire(30.0, APP)
    pids.append(b.pid)
    assert b.started_here and b.pid != a.pid and b.wait_ready(30)
    b.stop()


def test_another_configuration_replaces_an_idle_server_and_leaves_a_busy_one(state, monkeypatch):
    folder, pids = state
    a = kept_api.acquire(30.0, APP)
    pids.append(a.pid)
    a.wait_ready(30)
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_TIMEOUT", "7")  # a server-side setting: another key
    assert kept_api.acquire(30.0, APP) is None  # a's server serves a command: this one runs with a temporary API
    assert _alive(a.pid, folder)
    a.stop()
    b = kept_api.acquire(30.0, APP)
    pids.append(b.pid)
    assert b.started_here and b.pid != a.pid and b.wait_ready(30)
    _wait_gone(a.pid, folder, within_s=10)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "DEBUG")  # a client-side setting: the same server
    c = kept_api.acquire(30.0, APP)
    assert c.pid == b.pid and not c.started_here
    b.stop()
    c.stop()


def test_a_server_that_never_answers_is_stopped(state, monkeypatch):
    folder, pids = state
    monkeypatch.setenv("STUB_START_S", "60")
    monkeypatch.setattr(kept_api, "STOP_GRACE_S", 0.5)  # uvicorn defers SIGTERM during start-up
    a = kept_api.acquire(30.0, APP)
    pids.append(a.pid)
    with pytest.raises(kept_api.KeptAPIError, match="did not answer within"):
        a.wait_ready(1.5)
    _wait_gone(a.pid, folder, within_s=10)
    assert kept_api.read_info(folder) is None


def test_idle_setting_is_checked(monkeypatch):
    monkeypatch.setenv("RHAPSO_LOCAL_API_IDLE_S", "ten")
    with pytest.raises(ValueError, match="RHAPSO_LOCAL_API_IDLE_S='ten'"):
        kept_api.idle_seconds()
    monkeypatch.setenv("RHAPSO_LOCAL_API_IDLE_S", "0")
    assert kept_api.idle_seconds() == 0
    monkeypatch.delenv("RHAPSO_LOCAL_API_IDLE_S")
    assert kept_api.idle_seconds() == kept_api.DEFAULT_IDLE_S


@pytest.mark.slow  # starts a Prefect API server (5-20 s on 2 cores)
def test_the_kept_prefect_api_serves_two_commands_in_turn(tmp_path, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import local_api, runtime

    @flow
    def tiny() -> str:
        from prefect.runtime import flow_run

        return str(flow_run.id)

    # No configured API (a test harness of this session may have set one), no background server,
    # the profile's database (a fresh PREFECT_HOME would first run every migration), our own state folder.
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(local_api, "background_server_url", lambda: None)
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("RHAPSO_LOCAL_API_IDLE_S", "120")
    state = tmp_path / "state"
    monkeypatch.setenv("RHAPSO_LOCAL_API_DIR", str(state))
    lines: list[str] = []
    monkeypatch.setattr(runtime, "ANNOUNCE_API", lines.append)
    try:
        urls, runs = [], []
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            for _ in range(2):
                local_api.start_early()
                with runtime.prefect_api() as url:
                    urls.append(url)
                    runs.append(tiny())
                    with get_client(sync_client=True) as client:
                        assert client.read_flow_run(runs[-1]).state.is_completed()  # recorded, with its state
        assert urls[0] == urls[1]  # the second command reused the first one's server
        assert "started by this command" in lines[0] and "reused" in lines[1]
        info = kept_api.read_info(state)
        assert kept_api.healthy(urls[0]) and kept_api.is_server_process(int(info["pid"]), state)
    finally:
        pid = kept_api.stop_server(state)
    assert pid is not None and not kept_api.is_server_process(pid, state)
