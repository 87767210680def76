"""The temporary local Prefect API a command runs its flows against, started as early as possible.

With no ``PREFECT_API_URL``, a flow needs an API server, and starting one costs several
seconds (most of it the server process importing Prefect's server stack, then its database
check and services; ``docs/benchmarks.md``, "Per-flow-run overhead"). A command that will
run flows therefore starts the server process *before* it imports anything heavy itself
(:func:`start_early`, called by ``rhapso_cli.main`` once the arguments are checked), so the
server's start-up overlaps the command's own imports and checks; :func:`flows.runtime.prefect_api`
then takes it (:func:`take_early`) and waits for it to answer.

This module imports nothing from Prefect: importing Prefect is one of the costs the early
start hides. The server is the one Prefect's own ``SubprocessASGIServer`` runs (uvicorn
serving ``prefect.server.api.server:create_app`` as an ephemeral API without UI, on the
profile's database, so the runs stay visible in ``prefect server start``'s UI afterwards),
through :mod:`flows.local_api_app`, which skips its block registration when it would change nothing.

A server the user keeps running is reused instead, with no start at all: ``PREFECT_API_URL``
when set, else one started with ``prefect server start --background``
(:func:`background_server_url`). Otherwise the server is, by default, the one kept between
commands (:mod:`flows.kept_api`: started by the first command, reused by the next, gone after
``RHAPSO_LOCAL_API_IDLE_S`` seconds without one); with ``RHAPSO_LOCAL_API_IDLE_S=0``, a
temporary server of the command's own (:class:`LocalAPIServer`), stopped with it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

#: uvicorn's exit status when its port was taken between our choice and its bind.
_PORT_IN_USE = 3

#: Seconds a server gets to answer its health check (Prefect's own default for its
#: temporary server is 20 s; a loaded 2-core machine has been seen to need more).
STARTUP_TIMEOUT_S = 90.0
#: Seconds the server may take to finish the requests it is answering once told to stop (uvicorn's
#: ``--timeout-graceful-shutdown``): a request is answered within milliseconds when all is well.
GRACEFUL_SHUTDOWN_S = 3
#: Seconds :meth:`LocalAPIServer.stop` waits for the server to exit before SIGKILL.
STOP_GRACE_S = 5.0


def _die_with_parent() -> None:
    """In the server's process before it runs (Linux): SIGTERM it when the command's process
    dies, however it dies (SIGKILL, a closed pipe), so that no temporary server outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def server_env() -> dict[str, str]:
    """The environment of a local API server this project starts (temporary or kept).

    The server starts before the command sets its defaults (:func:`start_early` overlaps it
    with the imports), so the one that matters to the server is set here: no usage telemetry
    to Prefect's servers (``PREFECT_SERVER_ANALYTICS_ENABLED``), unless the user's environment
    asks for it. Its start tried every time, and offline it logged a DNS failure."""
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)  # the server itself is not a client of another API
    return env


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(api_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


class LocalAPIServer:
    """A Prefect API server in a child process of this command, on a free loopback port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.port: int | None = None
        self._atexit = False
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self._launch()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> None:
        if importlib.util.find_spec("prefect") is None:
            raise RuntimeError("Prefect is not installed in this environment")
        self.port = _free_port()
        env = server_env()
        self.process = subprocess.Popen(
            # Prefect's application, less a block registration that would change nothing (flows.local_api_app).
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).resolve().parent.parent),
             "--factory", "flows.local_api_app:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
             # A request the server is still answering when it is told to stop (one waiting on
             # SQLite's lock, up to its busy timeout) would otherwise hold its exit, and with
             # it the command's stdout and stderr, which the server shares.
             "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_S)],
            env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        self.pid = self.process.pid
        if not self._atexit:
            atexit.register(self.stop)  # a command ending by an exception or sys.exit still stops it
            self._atexit = True

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Block until the server answers its health check; its API URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process is not None else -1
            if code == _PORT_IN_USE:
                self._launch()
                continue
            if code is not None:
                raise RuntimeError(f"the local Prefect API server exited with status {code} before answering")
            if _healthy(self.api_url):
                if self.ready_at is None:
                    self.ready_at = time.monotonic()
                return self.api_url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the local Prefect API server did not answer within {timeout:.0f} s "
                           "(set PREFECT_API_URL to a running server, or start one with "
                           "`prefect server start --background`)")

    def describe(self) -> str:
        return f"Prefect API: a temporary local server ({self.api_url}), stopped with this command"

    def label(self) -> str:
        return f"the temporary local Prefect API (pid {self.pid})"

    def gone(self) -> bool:
        """Its process has ended (after :meth:`stop` too)."""
        proc = self.process
        return proc is None or proc.poll() is not None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the server; SIGKILL it if it has not ended after ``grace_s`` seconds."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            self.process = None
            return
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server now if it still runs (an interrupted command on its way out: the
        database is SQLite in WAL mode, which a killed writer leaves consistent)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)


_early = None  # a LocalAPIServer, or a flows.kept_api.KeptAPI


def start_early() -> None:
    """Start the local API server now, for a command that will run flows, unless a server is
    configured or already running (the command then reuses it): the kept server
    (:mod:`flows.kept_api`) unless ``RHAPSO_LOCAL_API_IDLE_S`` is 0, else a temporary one. Raises
    only for a mistyped ``RHAPSO_LOCAL_API_IDLE_S``: a failed early start leaves the ordinary
    start to :func:`flows.runtime.prefect_api`."""
    global _early
    if _early is not None or _configured_api_url() or background_server_url():
        return
    try:
        from flows import kept_api  # needs fcntl (POSIX)
    except ImportError:
        kept_api = None
    idle_s = kept_api.idle_seconds() if kept_api is not None else 0.0
    if idle_s > 0:
        try:
            _early = kept_api.acquire(idle_s)
        except Exception:  # noqa: BLE001 - a temporary server serves instead
            log.info("the kept local Prefect API is unavailable; starting a temporary one", exc_info=True)
            _early = None
        if _early is not None:
            return
    try:
        _early = LocalAPIServer()
    except Exception:  # noqa: BLE001 - the ordinary start reports the problem
        log.debug("early start of the local Prefect API failed", exc_info=True)
        _early = None


def take_early():
    """The server :func:`start_early` started or joined (a :class:`LocalAPIServer` or a
    :class:`flows.kept_api.KeptAPI`; its new owner stops it), or None."""
    global _early
    server, _early = _early, None
    return server


def discard_early() -> None:
    """Stop an early-started server nobody took (the command ended before running a flow)."""
    server = take_early()
    if server is not None:
        server.stop()


def _prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def _configured_api_url() -> str | None:
    settings = sys.modules.get("prefect.settings")
    if settings is not None:  # already imported by the caller (tests, scripts): it knows best, cheaply
        return settings.PREFECT_API_URL.value() or None
    return _setting("PREFECT_API_URL")


def _setting(name: str) -> str | None:
    """A Prefect setting from the environment, else from the active profile
    (``prefect config set``), read without importing Prefect; None when unset or unreadable
    (Prefect then decides, as it would without this module)."""
    if os.environ.get(name):
        return os.environ[name]
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or _prefect_home() / "profiles.toml").expanduser()
    try:
        import tomllib

        data = tomllib.loads(path.read_text())
    except (OSError, ValueError, ImportError):
        return None
    profile = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    value = data.get("profiles", {}).get(profile, {}).get(name)
    return str(value) if value not in (None, "") else None


def background_server_url() -> str | None:
    """The API URL of a server this user started with ``prefect server start --background``
    (its PID file in ``PREFECT_HOME``) when it answers on the configured host and port
    (``PREFECT_SERVER_API_HOST`` / ``PREFECT_SERVER_API_PORT``, default 127.0.0.1:4200); else None."""
    if not (_prefect_home() / "server.pid").is_file():
        return None
    host = _setting("PREFECT_SERVER_API_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    port = _setting("PREFECT_SERVER_API_PORT") or "4200"
    url = f"http://{host}:{port}/api"
    return url if _healthy(url, timeout=0.5) else None
