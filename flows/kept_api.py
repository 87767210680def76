"""A local Prefect API kept between commands: started by the first command that needs one, reused
by the next ones, gone after ``RHAPSO_LOCAL_API_IDLE_S`` seconds (default 600) without a command.

Without ``PREFECT_API_URL`` or a ``prefect server start --background`` server, every command used
to start a temporary API server of its own: 4-5 s of Prefect's server stack importing and starting
on 2 cores, which the command's own imports hide only in part, then the new server's first
requests (FastAPI builds each router's routes on its first use). The server kept here pays that
once; a later command finds it in a few milliseconds (``docs/benchmarks.md``, "Per-flow-run
overhead"). ``RHAPSO_LOCAL_API_IDLE_S=0`` turns it off: a temporary server per command, stopped
with it, as before.

The server is :mod:`flows.kept_api_server` (Prefect's ephemeral application, the same as the
temporary one's, on the profile's database), in its own session (a Ctrl-C in the terminal does
not reach it), logging to ``server.log`` in its state folder (``RHAPSO_LOCAL_API_DIR``, default
``$PREFECT_HOME/rhapso-local-api``). Files there:

* ``start.lock``: held (exclusively, briefly) by whoever reads or changes ``server.json``: a
  command choosing or starting the server, the server retiring;
* ``server.json``: the server's PID, port and *key* (what it was started with: this Python,
  Prefect's installation, the server-side ``PREFECT_*`` settings and profile, this code);
* ``users.lock``: each command using the server holds it shared for as long as it runs (the
  kernel releases it however the command ends); the server retires only when it can take it
  exclusively, so never under a running command, however long the command goes without a
  request.

A command reuses the server only when its key matches; a server with another key is replaced when
no command uses it, else the command runs with a temporary server of its own. A ``server.json``
whose process is gone (or is no longer that server) is replaced; a server that does not answer
within the start-up timeout is stopped so that the next command starts a fresh one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flows.kept_state import is_process_of, locked, read_record, running, try_exclusive, write_record
from flows.local_api import STARTUP_TIMEOUT_S, server_env

#: Seconds without a command after which the kept server exits, unless RHAPSO_LOCAL_API_IDLE_S says.
#: Ten minutes: long enough for the next command of a session at the terminal (align, look, fuse),
#: short enough that a forgotten server does not hold its ~200 MB for the day.
DEFAULT_IDLE_S = 600.0

#: Seconds a server that does not answer gets to end on SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0

#: The ASGI application factory the server serves (uvicorn's ``--factory`` form).
APP = "flows.local_api_app:create_app"

_SERVER_SCRIPT = Path(__file__).resolve().with_name("kept_api_server.py")
_ROOT = Path(__file__).resolve().parent.parent

#: ``PREFECT_*`` settings read by clients only: a command that sets them differently still
#: shares the server. Any other ``PREFECT_*`` variable is part of the server's key.
_CLIENT_ONLY_PREFIXES = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_LOGGING_",
                         "PREFECT_CLIENT_", "PREFECT_FLOWS_", "PREFECT_FLOW_", "PREFECT_TASKS_", "PREFECT_TASK_",
                         "PREFECT_RESULTS_", "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_DEFAULT_RESULT_STORAGE_BLOCK",
                         "PREFECT_RUNNER_", "PREFECT_WORKER_", "PREFECT_DEPLOYMENTS_",
                         "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT__")


class KeptAPIError(RuntimeError):
    """The kept server cannot serve this command (the caller starts a temporary one)."""


def idle_seconds() -> float:
    """``RHAPSO_LOCAL_API_IDLE_S`` (seconds; 0 or less: no kept server), else :data:`DEFAULT_IDLE_S`."""
    text = os.environ.get("RHAPSO_LOCAL_API_IDLE_S", "").strip()
    if not text:
        return DEFAULT_IDLE_S
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"RHAPSO_LOCAL_API_IDLE_S={text!r}: expected seconds (0 for a temporary "
                         "Prefect API per command)") from None


def state_dir() -> Path:
    """``RHAPSO_LOCAL_API_DIR``, else ``rhapso-local-api`` in Prefect's home (the server's database
    is the profile's, which lives there by default)."""
    if os.environ.get("RHAPSO_LOCAL_API_DIR"):
        return Path(os.environ["RHAPSO_LOCAL_API_DIR"]).expanduser().absolute()
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    return home.absolute() / "rhapso-local-api"


def server_key(app: str = APP) -> str:
    """What a server started now would depend on, without importing Prefect: this interpreter,
    Prefect's installation (its package and the folder it is installed in: a package installed or
    removed there, a collection among them, changes the folder), the server-side ``PREFECT_*``
    variables, the active profiles file, the application and this code."""
    parts: list[str] = [sys.executable, app]
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.origin:
        raise KeptAPIError("Prefect is not installed in this environment")
    pkg = Path(spec.origin).parent
    for path in (pkg / "__init__.py", pkg / "_build_info.py", pkg.parent):
        with contextlib.suppress(OSError):
            st = path.stat()
            parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}")
    parts += sorted(f"{k}={v}" for k, v in os.environ.items()
                    if k.startswith("PREFECT_") and not k.startswith(_CLIENT_ONLY_PREFIXES))
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    for path in (profiles, _SERVER_SCRIPT, _ROOT / "flows" / "local_api_app.py", _ROOT / "flows" / "locked_write_retry.py"):
        with contextlib.suppress(OSError):
            parts.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def read_info(state: Path) -> dict | None:
    return read_record(state / "server.json", ("pid", "port"))


def write_info(state: Path, info: dict) -> None:
    write_record(state / "server.json", info)


def is_server_process(pid: int, state: Path) -> bool:
    """The process ``pid`` exists and is the kept server of ``state`` (not a reused PID)."""
    return is_process_of(pid, _SERVER_SCRIPT.name, state)


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def terminate(pid: int, wait_s: float = 0.0, kill_after_s: float | None = None) -> None:
    """SIGTERM ``pid``; wait up to ``wait_s`` for it to end, or SIGKILL it after ``kill_after_s``
    (uvicorn defers SIGTERM until the application's start-up has finished)."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    t0 = time.monotonic()
    deadline = t0 + wait_s
    while running(pid):
        now = time.monotonic()
        if kill_after_s is not None and now - t0 >= kill_after_s:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            kill_after_s, deadline = None, now + 1.0
        elif kill_after_s is None and now >= deadline:
            return
        time.sleep(0.05)


class KeptAPI:
    """This command's use of the kept server: its URL, and the shared lock that keeps it alive
    while the command runs (:meth:`stop` releases it; the server itself stays)."""

    def __init__(self, state: Path, info: dict, users, process: subprocess.Popen | None):
        self.state = state
        self.pid = int(info["pid"])
        self.port = int(info["port"])
        self.idle_s = float(info.get("idle_s", 0))
        self.started_here = process is not None
        self.process = process
        self._users = users
        self.started_at = time.monotonic()
        self.ready_at: float | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def describe(self) -> str:
        how = "started by this command" if self.started_here else "reused"
        idle = f"{self.idle_s / 60:g} min" if self.idle_s >= 60 else f"{self.idle_s:g} s"
        return (f"Prefect API: the local server kept between commands ({how}; {self.api_url}, pid {self.pid}; "
                f"it exits after {idle} without a command; RHAPSO_LOCAL_API_IDLE_S=0: a temporary one per command)")

    def label(self) -> str:
        return f"the kept local Prefect API (pid {self.pid}; its log: {self.state / 'server.log'})"

    def gone(self) -> bool:
        """The server's process has ended (or its PID is now another process's)."""
        if self.process is not None:
            return self.process.poll() is not None
        return not is_server_process(self.pid, self.state)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Block until the server answers; its API URL. A server that does not answer in time is
        stopped (when it is still the one recorded) so that the next command starts a fresh one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gone():
                self.stop()
                raise KeptAPIError(f"the kept local Prefect API (pid {self.pid}) exited before answering; "
                                   f"its log: {self.state / 'server.log'}")
            # Connections wait in the socket's queue until the application has started.
            if healthy(self.api_url, timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                if self.ready_at is None:
                    self.ready_at = time.monotonic()
                return self.api_url
            time.sleep(0.05)
        self.stop()
        with locked(self.state / "start.lock"):
            info = read_info(self.state)
            mine = info is not None and int(info["pid"]) == self.pid
            if mine:
                (self.state / "server.json").unlink(missing_ok=True)
        if mine:
            terminate(self.pid, kill_after_s=STOP_GRACE_S)
        raise KeptAPIError(f"the kept local Prefect API (pid {self.pid}) did not answer within {timeout:.0f} s; "
                           f"stopped (its log: {self.state / 'server.log'})")

    def stop(self) -> None:
        """This command is done with the server (it stays for the next one)."""
        users, self._users = self._users, None
        if users is not None:
            with contextlib.suppress(OSError):
                users.close()  # releases the shared lock


def acquire(idle_s: float, app: str = APP) -> KeptAPI | None:
    """The kept server for this command, started now if none is usable (not waiting for it to
    answer: :meth:`KeptAPI.wait_ready`); None when one with another key is in use by another
    command (this one then needs a temporary server)."""
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    key = server_key(app)
    with locked(state / "start.lock"):
        info = read_info(state)
        if info is not None and is_server_process(int(info["pid"]), state):
            if info.get("key") == key:
                return KeptAPI(state, info, _hold_users(state), None)
            with open(state / "users.lock", "a+") as users:
                if not try_exclusive(users):
                    return None  # another configuration's server, serving a command now
                fcntl.flock(users, fcntl.LOCK_UN)
            terminate(int(info["pid"]))  # another configuration's, idle: replaced
        info, process = _launch(state, key, idle_s, app)
        return KeptAPI(state, info, _hold_users(state), process)


def _hold_users(state: Path):
    users = open(state / "users.lock", "a+")  # noqa: SIM115 - held open for the command's run
    fcntl.flock(users, fcntl.LOCK_SH)
    return users


def _launch(state: Path, key: str, idle_s: float, app: str) -> tuple[dict, subprocess.Popen]:
    """Start the server (under ``start.lock``) on a socket bound here, so no port can be taken
    between its choice and the server's bind."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = int(sock.getsockname()[1])
        env = server_env()
        with open(state / "server.log", "w") as log:
            process = subprocess.Popen(
                [sys.executable, str(_SERVER_SCRIPT), "--state-dir", str(state), "--fd", str(sock.fileno()),
                 "--idle-s", repr(float(idle_s)), "--app", app, "--root", str(_ROOT), "--key", key],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=[sock.fileno()], start_new_session=True, cwd=str(state),
            )
    finally:
        sock.close()
    info = {"pid": process.pid, "port": port, "key": key, "idle_s": float(idle_s), "started": time.time(),
            "python": sys.executable}
    write_info(state, info)
    return info, process


def stop_server(state: Path | None = None, wait_s: float = 10.0) -> int | None:
    """Stop the kept server of ``state`` (default :func:`state_dir`) now, whether or not a command
    uses it; its PID, or None when none ran."""
    state = state or state_dir()
    if not state.is_dir():
        return None
    with locked(state / "start.lock"):
        info = read_info(state)
        if info is None:
            return None
        (state / "server.json").unlink(missing_ok=True)
    pid = int(info["pid"])
    if not is_server_process(pid, state):
        return None
    terminate(pid, kill_after_s=wait_s)
    return pid
