"""A command notices within seconds that the local Prefect API it uses has gone.

The command's local API server (the kept one, :mod:`flows.kept_api`, or a temporary one,
:mod:`flows.local_api`) is a process of its own: killed by the user, the OOM killer or a
crash, it leaves every later API call of the command to Prefect's client, which retries a
refused connection for about 70 s before giving up, and a stitch makes dozens of calls
after its stages' tasks (state changes, artifacts, logs): seen, a command past its matching
stage crawling on for minutes, one artifact every 70 s. Nothing it computes after that can
be recorded, so going on serves nothing.

:func:`watching` polls the server's process (a ``waitpid`` or a ``/proc`` read, no request)
while the command uses it and, when it has gone, calls the command's handler once
(:data:`flows.runtime.COMMAND_API_LOST_HANDLER`: the CLI stops the command as it does on
Ctrl-C, keeping what a re-run resumes from, and says why), else logs one error line.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

#: Seconds between two looks at the server's process (a look costs microseconds).
POLL_S = 1.0


@contextlib.contextmanager
def watching(gone: Callable[[], bool], on_lost: Callable[[], None], poll_s: float = POLL_S) -> Iterator[None]:
    """For the block: call ``on_lost`` once, from a daemon thread, when ``gone()`` first returns
    true. The thread is stopped (and joined) before the block's exit returns, so a server the
    block's owner stops on its way out is never reported as lost."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(poll_s):
            try:
                lost = gone()
            except Exception:  # noqa: BLE001 - a look that fails is not a verdict
                log.debug("could not look at the local Prefect API's process", exc_info=True)
                continue
            if lost and not stop.is_set():
                on_lost()
                return

    thread = threading.Thread(target=run, name="local-api-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout=poll_s + 1.0)
