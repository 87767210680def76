"""The kept local Prefect API's process (:mod:`flows.kept_api`): uvicorn serving the application on
the socket the command bound for it, retiring once no command has used it for ``--idle-s`` seconds.

Run as a script by :func:`flows.kept_api.acquire`, never imported by a command (it would import
uvicorn and, through the application, Prefect's server stack).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import sys
import threading
import time
from pathlib import Path

#: How often the server looks whether a command uses it (seconds; at most this late to retire).
POLL_S = 2.0


def _retire_when_idle(server, state: Path, idle_s: float, stop: threading.Event) -> None:
    """Set ``server.should_exit`` once no command has held ``users.lock`` for ``idle_s`` seconds.

    Commands hold it shared while they run; taking it exclusively (without waiting) is how the
    server sees that none does. The last decision is made under ``start.lock``, with
    ``server.json`` removed before it is released: a command that comes after it starts another
    server, and none can be between reading ``server.json`` and taking its shared lock."""
    from flows.kept_api import locked, read_info, try_exclusive

    last_used = time.monotonic()
    with open(state / "users.lock", "a+") as users:
        while not stop.wait(min(POLL_S, max(0.05, idle_s / 4))):
            if not try_exclusive(users):
                last_used = time.monotonic()
                continue
            fcntl.flock(users, fcntl.LOCK_UN)
            if time.monotonic() - last_used < idle_s:
                continue
            with locked(state / "start.lock"):
                if not try_exclusive(users):
                    last_used = time.monotonic()
                    continue
                try:
                    info = read_info(state)
                    if info is not None and int(info["pid"]) == os.getpid():
                        (state / "server.json").unlink(missing_ok=True)
                finally:
                    fcntl.flock(users, fcntl.LOCK_UN)
            server.should_exit = True
            return


def _forget_self(state: Path) -> None:
    from flows.kept_api import locked, read_info

    try:
        with locked(state / "start.lock"):
            info = read_info(state)
            if info is not None and int(info["pid"]) == os.getpid():
                (state / "server.json").unlink(missing_ok=True)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--fd", type=int, required=True, help="a listening socket bound by the command")
    ap.add_argument("--idle-s", type=float, required=True)
    ap.add_argument("--app", required=True, help="module:factory")
    ap.add_argument("--root", required=True, help="folder to import the application from")
    ap.add_argument("--key", default="", help="recorded in server.json by the command; here for ps")
    args = ap.parse_args(argv)
    # Run as a script, its own folder (flows/) heads sys.path: its modules would shadow top-level names.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.path.insert(0, args.root)
    state = Path(args.state_dir)
    sock = socket.socket(fileno=args.fd)

    import uvicorn

    from flows.local_api import GRACEFUL_SHUTDOWN_S

    # Bounded as the temporary server's is (flows.local_api): a retirement or replacement is not held
    # by a request waiting on SQLite's lock.
    server = uvicorn.Server(uvicorn.Config(args.app, factory=True, log_level="error", lifespan="on",
                                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    stop = threading.Event()
    watchdog = threading.Thread(target=_retire_when_idle, args=(server, state, args.idle_s, stop),
                                name="idle-watchdog", daemon=True)
    watchdog.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        _forget_self(state)
    return 0 if server.started else 3


if __name__ == "__main__":
    sys.exit(main())
