"""flows.api_watch: the handler is called once, soon after the server's process is gone, and never
after the block has ended (a server its owner stops on the way out is not lost)."""

from __future__ import annotations

import threading
import time

from flows import api_watch


def test_the_handler_is_called_once_within_a_poll_of_the_server_going():
    gone = threading.Event()
    calls = []
    with api_watch.watching(gone.is_set, lambda: calls.append(time.monotonic()), poll_s=0.05):
        time.sleep(0.2)
        assert calls == []
        t0 = time.monotonic()
        gone.set()
        time.sleep(0.4)
    assert len(calls) == 1
    assert calls[0] - t0 < 0.2  # one poll of 0.05 s, with room for a loaded machine


def test_no_call_after_the_block_nor_for_a_look_that_fails():
    state = {"gone": False, "looks": 0}
    calls = []

    def gone():
        state["looks"] += 1
        if state["looks"] == 1:
            raise OSError("/proc unreadable")
        return state["gone"]

    with api_watch.watching(gone, lambda: calls.append(1), poll_s=0.05):
        time.sleep(0.2)
    state["gone"] = True  # the owner stopped its server after the block
    time.sleep(0.2)
    assert state["looks"] >= 2 and calls == []
    assert not any(t.name == "local-api-watch" for t in threading.enumerate())
