"""flows.server_gc: the local API's cyclic garbage is collected off its event loop.

The stall it removes (flows/server_gc.py): a finalizer run by the collector on the loop's thread
waited for a SQLite connection's mutex, so the loop could not run the coroutine that would free
it. Modelled here without SQLite: garbage in a reference cycle whose finalizer blocks for 1 s.
Tolerance: with the collector off the loop, no tick of a 10 ms asyncio timer is later than 0.3 s
(the finalizer's whole second shows without it, checked too, so the test can fail); the garbage
is still collected, within a second."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flows.server_gc import due_generation

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import asyncio, gc, json, sys, threading, time
from flows import server_gc

if sys.argv[1] == "off-the-loop":
    server_gc.install(poll_s=0.02)
finalized = threading.Event()

class BlockingFinalizer:  # a cursor whose reset waits for its connection's mutex
    def __init__(self):
        self.cycle = self
    def __del__(self):
        time.sleep(1.0)
        finalized.set()

async def main():
    lags, last = [], time.monotonic()
    BlockingFinalizer()  # garbage at once: only the cyclic collector frees it
    t0 = time.monotonic()
    junk = []
    while time.monotonic() - t0 < 2.5:
        junk = [[i] for i in range(2000)]  # allocations past the collector's threshold, on the loop
        await asyncio.sleep(0.01)
        now = time.monotonic()
        lags.append(now - last - 0.01)
        last = now
    print(json.dumps({"max_lag_s": max(lags), "finalized": finalized.wait(1.0)}))

asyncio.run(main())
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_blocking_finalizer_no_longer_stalls_the_loop():
    on_loop = _run("on-the-loop")
    assert on_loop["max_lag_s"] > 0.8 and on_loop["finalized"], on_loop  # the stall, as it was
    off = _run("off-the-loop")
    assert off["finalized"], off
    assert off["max_lag_s"] < 0.3, off


def test_due_generation_follows_cpython_thresholds():
    t = (700, 10, 10)
    assert due_generation((10, 0, 0), t) is None
    assert due_generation((701, 0, 0), t) == 0
    assert due_generation((701, 11, 0), t) == 1
    assert due_generation((701, 11, 11), t) == 2
    assert due_generation((701, 11, 11), t, full_allowed=False) == 1  # a full pass deferred, the younger one not
    assert due_generation((701, 3, 11), t, full_allowed=False) == 0
    assert due_generation((10**6, 0, 0), (0, 10, 10)) is None  # threshold 0: collection off, as in CPython
