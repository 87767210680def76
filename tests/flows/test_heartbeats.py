"""A flow run's end does not wait for its heartbeat thread (flows/heartbeats.py), and the
heartbeats are otherwise unchanged: one at the run's start, none after its end."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import prefect.flow_engine as engine

import flows.fusion  # noqa: F401 - defining the project's flows installs the change
from flows import heartbeats


def _fake_engine(beats: list) -> SimpleNamespace:
    # What Prefect's _send_heartbeats reads of a flow run engine.
    return SimpleNamespace(heartbeat_seconds=30, flow_run=None, logger=logging.getLogger("test-heartbeats"),
                           _build_heartbeat_event_template=lambda: ({}, []),
                           _emit_flow_run_heartbeat=lambda resource, related: beats.append(time.monotonic()))


def _run(send, beats: list) -> tuple[float, threading.Thread]:
    """Enter a run's heartbeat context, let it beat, leave it 0.1 s into the thread's 1 s sleep
    step; seconds the exit took, and the heartbeat thread."""
    before = set(threading.enumerate())
    cm = send(_fake_engine(beats))
    cm.__enter__()
    deadline = time.monotonic() + 5
    while not beats and time.monotonic() < deadline:
        time.sleep(0.01)
    assert beats, "no heartbeat at the run's start"
    (thread,) = set(threading.enumerate()) - before
    time.sleep(0.1)
    t = time.monotonic()
    cm.__exit__(None, None, None)
    return time.monotonic() - t, thread


def test_a_run_end_leaves_the_heartbeat_thread_to_stop_by_itself():
    assert heartbeats.install()  # idempotent: flows.runtime installed it already
    beats: list = []
    exit_s, thread = _run(engine._send_heartbeats, beats)
    assert exit_s < 0.4, f"the run's end waited {exit_s:.2f} s for the heartbeat thread"
    thread.join(timeout=2)  # its sleep step ends, it sees the stop flag
    assert not thread.is_alive()
    assert len(beats) == 1, "a heartbeat after the run's end"


def test_prefects_own_exit_waits_for_the_thread():
    """The check above can fail: Prefect's function, unwrapped, waits out the sleep step."""
    beats: list = []
    exit_s, thread = _run(engine._send_heartbeats.__wrapped__, beats)
    assert exit_s > 0.5
    assert not thread.is_alive() and len(beats) == 1
