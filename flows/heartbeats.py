"""Flow runs end without waiting for their heartbeat thread.

Prefect's synchronous flow engine sends a run's heartbeats from a daemon thread that
sleeps in one-second steps, and at the run's end joins it: up to a second per flow run
(a command runs two: the flow and its stage subflow; measured 0.3-0.5 s each against a
running server, ``docs/benchmarks.md``, "Per-flow-run overhead"). Prefect's asynchronous
engine already leaves the thread to finish by itself (``join_on_exit=False``); this
makes the synchronous one do the same. The heartbeats themselves are unchanged: the
thread still beats every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds while the run
runs, and stops, without another beat, within a second of the run's end (it checks the
stop flag before each beat).

:func:`install` wraps a private function of Prefect's, so it checks that function's
shape and leaves Prefect alone when it differs (a newer Prefect then only costs the wait).
"""

from __future__ import annotations

import inspect
import logging

log = logging.getLogger(__name__)


def install() -> bool:
    """Make flow runs in this process leave their heartbeat thread to stop by itself.
    Idempotent; False when Prefect's engine does not have the expected hook."""
    import prefect.flow_engine as engine

    original = getattr(engine, "_send_heartbeats", None)
    if original is None:
        return False
    if getattr(original, "_rhapso_unjoined", False):
        return True
    try:
        params = inspect.signature(original).parameters
    except (TypeError, ValueError):
        return False
    if "join_on_exit" not in params:
        log.debug("prefect.flow_engine._send_heartbeats has no join_on_exit; heartbeat threads stay joined")
        return False

    def _send_heartbeats(flow_engine, join_on_exit: bool = True):
        return original(flow_engine, join_on_exit=False)

    _send_heartbeats._rhapso_unjoined = True  # type: ignore[attr-defined]
    _send_heartbeats.__wrapped__ = original  # type: ignore[attr-defined]
    engine._send_heartbeats = _send_heartbeats
    return True
