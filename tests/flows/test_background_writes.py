"""Progress artifact writes off the flow's thread (flows/background_writes.py): the same writes,
in the same order, in the caller's context, all done when the block ends; errors still raised."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from flows import artifacts, background_writes

RUN = contextvars.ContextVar("run", default=None)


def _recording_api(monkeypatch, delay_s: float = 0.0) -> list:
    calls: list = []

    def create(progress, description=None):
        time.sleep(delay_s)
        calls.append(("create", RUN.get(), threading.current_thread().name, progress, description))
        return f"id-{len([c for c in calls if c[0] == 'create'])}"

    def update(artifact_id, progress, description=None):
        time.sleep(delay_s)
        calls.append(("update", RUN.get(), threading.current_thread().name, artifact_id, progress, description))

    monkeypatch.setattr(artifacts, "create_progress_artifact", create)
    monkeypatch.setattr(artifacts, "update_progress_artifact", update)
    return calls


def _two_stages():
    for what, n in (("fusion work units", 2), ("pyramid level 1", 1)):
        p = artifacts.Progress(n, what)
        for _ in range(n):
            p.advance()


def test_the_same_writes_in_order_in_the_callers_context(monkeypatch):
    direct = _recording_api(monkeypatch)
    RUN.set("flow-run-1")
    _two_stages()
    background = _recording_api(monkeypatch, delay_s=0.05)
    t = time.monotonic()
    with background_writes.in_background():
        _two_stages()
        made_s = time.monotonic() - t
        assert len(background) < 5  # the flow went on while they were written
    assert made_s < 0.1, "the flow's thread waited for the writes"
    assert len(background) == 5  # all written when the block ended
    strip = lambda calls: [tuple(x for i, x in enumerate(c) if i != 2) for c in calls]  # noqa: E731
    assert strip(background) == strip(direct) == [
        ("create", "flow-run-1", 0.0, "fusion work units: 0 of 2"),
        ("update", "flow-run-1", "id-1", 50.0, "fusion work units: 1 of 2"),
        ("update", "flow-run-1", "id-1", 100.0, "fusion work units: 2 of 2"),
        ("create", "flow-run-1", 0.0, "pyramid level 1: 0 of 1"),
        ("update", "flow-run-1", "id-2", 100.0, "pyramid level 1: 1 of 1")]
    assert {c[2] for c in direct} == {threading.current_thread().name}
    assert {c[2] for c in background} != {threading.current_thread().name}


def test_a_failed_write_fails_the_block(monkeypatch):
    _recording_api(monkeypatch)

    def broken(*a, **k):
        raise ConnectionError("API gone")

    monkeypatch.setattr(artifacts, "update_progress_artifact", broken)
    with pytest.raises(ConnectionError, match="API gone"):
        with background_writes.in_background():
            _two_stages()


def test_the_blocks_own_error_comes_first(monkeypatch):
    calls = _recording_api(monkeypatch, delay_s=0.02)
    with pytest.raises(KeyError):
        with background_writes.in_background():
            artifacts.Progress(1, "x").advance()
            raise KeyError("stage failed")
    assert [c[0] for c in calls] == ["create", "update"]  # still written before the block ended
