"""The local API re-runs a write that SQLite refused as locked (flows/locked_write_retry.py): the
client gets the answer of the attempt that went through, with the request's body intact; other
answers, reads and a write still refused after every repeat reach the client unchanged."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from flows.locked_write_retry import RETRYABLE_BODY, RetryLockedWrites


class _App:
    """Answers like Prefect's server: the retryable 503 for the first ``refusals`` attempts."""

    def __init__(self, refusals: int, other: bytes | None = None, raises: bool = False) -> None:
        self.refusals, self.other, self.raises, self.bodies, self.calls = refusals, other, raises, [], 0

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        self.calls += 1
        if scope.get("root_path"):  # a scope an earlier attempt's routing wrote into: its route is not found
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b'{"detail": "Not Found"}'})
            return
        scope["root_path"] = "/api"  # as Starlette's Mount does
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        self.bodies.append(body)
        if self.calls <= self.refusals:
            payload = self.other if self.other is not None else json.dumps(RETRYABLE_BODY).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": payload})
            if self.raises:  # as Starlette's outermost middleware does after its handler answered
                raise RuntimeError("database is locked")
            return
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": ', "more_body": True})
        await send({"type": "http.response.body", "body": b'"abc"}'})


def _request(app, method="POST", body=b'{"name": "flow run"}'):
    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, "/api/flow_runs/", content=body)

    return asyncio.run(go())


@pytest.mark.parametrize("raises", [False, True], ids=["answered", "answered-and-raised"])
def test_a_write_refused_as_locked_is_run_again_with_its_body_and_the_client_gets_the_success(raises):
    inner = _App(refusals=3, raises=raises)
    r = _request(RetryLockedWrites(inner, delays=(0.0,) * 6))
    assert r.status_code == 201 and r.json() == {"id": "abc"}
    assert inner.calls == 4 and inner.bodies == [b'{"name": "flow run"}'] * 4


@pytest.mark.parametrize("raises", [False, True], ids=["answered", "answered-and-raised"])
def test_a_write_still_refused_after_every_repeat_reaches_the_client_as_prefect_answered(raises):
    inner = _App(refusals=100, raises=raises)
    r = _request(RetryLockedWrites(inner, delays=(0.0,) * 3))
    assert r.status_code == 503 and r.json() == RETRYABLE_BODY
    assert inner.calls == 4  # the first attempt and three repeats; the client's own retries follow


@pytest.mark.parametrize("case", ["another 503", "a read"])
def test_other_answers_and_reads_are_passed_on_untouched(case):
    if case == "another 503":
        inner = _App(refusals=1, other=b'{"exception_message": "Maintenance"}')
        r = _request(RetryLockedWrites(inner, delays=(0.0,) * 3))
        assert r.status_code == 503 and r.json() == {"exception_message": "Maintenance"} and inner.calls == 1
    else:
        inner = _App(refusals=1)
        r = _request(RetryLockedWrites(inner, delays=(0.0,) * 3), method="GET", body=b"")
        assert r.status_code == 503 and inner.calls == 1


def test_prefect_s_own_api_answers_a_write_refused_once_as_locked_with_its_success(tmp_path, monkeypatch):
    """The real application (Prefect's API on its own SQLite database, in this process): an artifact
    whose first insert SQLite refused is created once, and the client sees 201, not 503."""
    import sqlite3

    import sqlalchemy
    from asgi_lifespan import LifespanManager
    from prefect.server.api.server import create_app
    from prefect.server.models import artifacts as artifact_models
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, temporary_settings

    real, refused = artifact_models.create_artifact, []

    async def locked_once(*args, **kwargs):
        if not refused:
            refused.append(1)
            raise sqlalchemy.exc.OperationalError("INSERT INTO artifact", {}, sqlite3.OperationalError("database is locked"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(artifact_models, "create_artifact", locked_once)

    async def go():
        app = RetryLockedWrites(create_app(ephemeral=True, final=True), delays=(0.01,))
        async with LifespanManager(app.app, startup_timeout=120, shutdown_timeout=60):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                r = await client.post("/api/artifacts/", json={"key": "locked-once", "type": "markdown", "data": "x"})
                listed = await client.post("/api/artifacts/filter", json={"artifacts": {"key": {"any_": ["locked-once"]}}})
        return r, listed

    with temporary_settings({PREFECT_HOME: str(tmp_path),
                             PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"}):
        r, listed = asyncio.run(go())
    assert refused == [1]
    assert r.status_code == 201, r.text
    assert [a["key"] for a in listed.json()] == ["locked-once"]
