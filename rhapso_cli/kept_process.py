"""A process kept between commands that has already imported what a flow command runs: the next
``rhapso align/fuse/stitch/detect/match/demo`` is forked from it instead of importing Prefect,
pydantic, numba, zarr, scipy and the project again (2.3-2.7 s of a 10 s ``rhapso stitch`` on 2
cores, ``docs/benchmarks.md``). The same idea as the Prefect API kept between commands
(:mod:`flows.kept_api`), for the command's own process; ``RHAPSO_KEPT_PROCESS_IDLE_S=0`` turns it
off (every command imports everything itself, as before).

How a command runs through it (this module is the command's side, standard library only, so
that the ``rhapso`` program's start stays a bare interpreter's; :mod:`rhapso_cli.kept_process_server`
is the kept side):

1. the command computes its *key*: this interpreter and its flags (``-u``, ``-O``, ``-X``...;
   the kept process is started with them), its ``sys.path``, its environment (all of
   it but a few per-shell variables: anything a module may read at import), the configuration
   files read at import (Prefect's profiles; ``prefect.toml``, ``pyproject.toml``, ``.env`` and
   numba's ``.numba_config.yaml`` in the working folder), the mtimes of the installation's
   ``site-packages`` folders (a package installed or removed) and of the project's source
   files, and what a forked process inherits from the kept one rather than from the command:
   control groups (a batch job's limits), resource limits, priority. (``python -m
   rhapso_cli.main`` puts the working folder on ``sys.path``: a kept process per folder; the
   ``rhapso`` program does not);
2. ``kept.json`` in the state folder names a ready kept process with the same key: the command
   connects to its Unix socket, sends its arguments, working folder, environment, umask and CPU
   affinity, and its stdin, stdout and stderr themselves (``SCM_RIGHTS``);
3. the kept process forks a *waiter*, which forks the *command* process: the command takes the
   descriptors as 0, 1 and 2, the folder, environment, umask and affinity, rebuilds Prefect's
   console logging for the real terminal and runs ``rhapso_cli.main.cli`` as a fresh process
   would, then exits through the interpreter's normal exit (exit functions, flushes);
4. this process forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the command (the terminal's
   Ctrl-C reaches only its foreground process, this one), and ends with the command's exit
   status, which the waiter reads with ``wait4`` and sends back with the command's resource
   usage (``RHAPSO_KEPT_PROCESS_RUSAGE=FILE`` writes that as JSON, for benchmarks: CPU and peak
   memory are the command's, not this small process's). A command killed by a signal ends this
   process with the same signal; if this process is killed, the waiter sends the command SIGTERM
   (its interruption path: run records marked cancelled, locks released).

Anything else (another key, no kept process yet, one still starting, a socket that refuses,
Windows, a command that is not a flow command, ``cli(argv)`` called from Python) runs the
command here, as before; nothing has run in the kept process until its waiter named the command's
PID, so the fallback never runs a command twice. A flow command run here starts a kept process
for the next ones when it ends (in the background; a few seconds of imports); one with another
key is replaced (SIGTERM: commands already forked from it are separate processes and go on).
The kept process exits after ``RHAPSO_KEPT_PROCESS_IDLE_S`` seconds (default 600) without a
command.

State folder: ``RHAPSO_KEPT_PROCESS_DIR``, else ``rhapso-kept-process`` in Prefect's home. The
socket is made in it mode 0600 (in a 0700 folder of the temporary directory when the path would
be too long for a Unix socket), and the kept process serves only connections from its own user
(``SO_PEERCRED``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from flows.kept_state import is_process_of, locked, read_record, running, write_record

#: Seconds without a command after which the kept process exits, unless RHAPSO_KEPT_PROCESS_IDLE_S
#: says: the kept Prefect API's ten minutes (flows.kept_api.DEFAULT_IDLE_S), for the same reason.
DEFAULT_IDLE_S = 600.0

#: Commands forked from the kept process: those that run flows (rhapso_cli.main._FLOW_COMMANDS),
#: whose start is the imports the kept process holds. The others import little and run here.
ROUTED_COMMANDS = frozenset({"align", "fuse", "stitch", "detect", "match", "demo"})

#: Environment variables that differ between shells or between two commands of one shell without
#: changing what an import does: not part of the key (the command still gets them).
_PER_SHELL = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "TERM_SESSION_ID", "WINDOWID", "RHAPSO_KEPT_PROCESS_RUSAGE"})

#: The project's packages, whose source files are part of the key.
_PACKAGES = ("rhapso_cli", "rhapso_core", "flows", "tasks")
_ROOT = Path(__file__).resolve().parent.parent
_SERVER_SCRIPT = Path(__file__).resolve().with_name("kept_process_server.py")

#: Unix socket paths longer than this do not fit sockaddr_un (108 bytes with its terminator).
_MAX_SOCKET_PATH = 100

#: Signals this process passes on to the command it waits for.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

#: In a command forked from the kept process: that process's PID (the command says so).
SERVED_BY: int | None = None

#: Seconds the command waits for the kept process to name the forked command (it answers in
#: milliseconds; only a stuck kept process takes longer).
HANDSHAKE_TIMEOUT_S = 30.0

#: The start of a request: the length of the JSON that follows (the descriptors ride on it).
_HEADER = struct.Struct("!I")


class KeptProcessError(RuntimeError):
    """The kept process cannot run this command (it then runs here)."""


def describe() -> str | None:
    """The line a command forked from the kept process prints (None in any other command)."""
    if SERVED_BY is None:
        return None
    idle_s = idle_seconds()
    idle = f"{idle_s / 60:g} min" if idle_s >= 60 else f"{idle_s:g} s"
    return (f"command: forked from the process kept between commands (pid {SERVED_BY}, imports done; it exits "
            f"after {idle} without a command; RHAPSO_KEPT_PROCESS_IDLE_S=0: a fresh process per command)")


def idle_seconds() -> float:
    """``RHAPSO_KEPT_PROCESS_IDLE_S`` (seconds; 0 or less: no kept process), else :data:`DEFAULT_IDLE_S`."""
    text = os.environ.get("RHAPSO_KEPT_PROCESS_IDLE_S", "").strip()
    if not text:
        return DEFAULT_IDLE_S
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"RHAPSO_KEPT_PROCESS_IDLE_S={text!r}: expected seconds (0 for no process kept "
                         "between commands)") from None


def state_dir(environ=None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("RHAPSO_KEPT_PROCESS_DIR"):
        return Path(env["RHAPSO_KEPT_PROCESS_DIR"]).expanduser().absolute()
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    return home.absolute() / "rhapso-kept-process"


def socket_path(state: Path) -> Path:
    """``kept.sock`` in the state folder, or, where that path is too long for a Unix socket, a
    name derived from it in a private folder of the temporary directory."""
    path = state / "kept.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    import tempfile

    private = Path(tempfile.gettempdir()) / f"rhapso-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    st = private.lstat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not private.is_dir() or private.is_symlink():
        raise KeptProcessError(f"{private}: not a private folder of this user (mode {st.st_mode & 0o777:o})")
    return private / (hashlib.sha256(os.fsencode(state)).hexdigest()[:20] + ".sock")


def command_of(argv: list[str]) -> str | None:
    """The sub-command of ``rhapso ARGV`` (its only global option, -v, takes no value)."""
    for a in argv:
        if a == "--":
            return None
        if not a.startswith("-"):
            return a
    return None


#: Files read at import from the working folder: Prefect's settings (``prefect.toml``, the
#: ``[tool.prefect]`` table of ``pyproject.toml``, ``.env``) and numba's configuration. The kept
#: process starts in the folder of the command that starts it, and these are part of its key.
_FOLDER_CONFIG = ("prefect.toml", "pyproject.toml", ".env", ".numba_config.yaml")


def interpreter_flags() -> list[str]:
    """This interpreter's command-line flags that change what an import does or how stdio
    behaves (``-O``, ``-B``, ``-X ...``, ``-W ...``, ``-u``...): the kept process is started with
    them, and they are part of the key."""
    flags = list(getattr(subprocess, "_args_from_interpreter_flags", list)())
    # -u (or PYTHONUNBUFFERED) is not in sys.flags: it shows as unbuffered standard streams.
    if getattr(sys.__stdout__, "write_through", False) and "-u" not in flags:
        flags.append("-u")
    return flags


def key(environ: dict[str, str], path: list[str], cwd: str, flags: list[str] | None = None) -> str:
    """What the kept process's imports depend on (see the module's docstring)."""
    flags = interpreter_flags() if flags is None else flags
    parts: list[str] = [sys.executable, " ".join(flags), str(os.getuid()), json.dumps(path)]
    parts += sorted(f"{k}={v}" for k, v in environ.items() if k not in _PER_SHELL)
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    for config in (profiles, *(Path(cwd, name) for name in _FOLDER_CONFIG)):
        try:
            text = config.read_bytes()
        except OSError:
            continue
        # A project's pyproject.toml without a [tool.prefect] table is nothing Prefect reads: two
        # projects' folders share a kept process.
        if config.name != "pyproject.toml" or b"tool.prefect" in text:
            parts.append(f"{config.name}:{hashlib.sha256(text).hexdigest()}")
    for entry in path:  # an installation's folders change when a package is installed or removed
        if os.path.basename(entry) in ("site-packages", "dist-packages"):
            with contextlib.suppress(OSError):
                parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
    parts.append(source_fingerprint())
    parts.append(process_limits())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def process_limits() -> str:
    """What a forked command inherits from the kept process rather than from the command that
    asks for it: its control groups (a batch job's memory and CPU limits), resource limits
    (``ulimit``) and scheduling priority (``nice``). Part of the key, so a command whose own
    differ runs in a fresh process (and starts a kept process with them)."""
    import resource

    parts = []
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/self/cgroup").read_text())
    for name in sorted(n for n in dir(resource) if n.startswith("RLIMIT_")):
        with contextlib.suppress(OSError, ValueError):
            parts.append(f"{name}={resource.getrlimit(getattr(resource, name))}")
    with contextlib.suppress(OSError):
        parts.append(f"nice={os.getpriority(os.PRIO_PROCESS, 0)}")
    return "\n".join(parts)


def source_fingerprint() -> str:
    """The project's Python files, by path, mtime and size (about 300 stats, a few ms)."""
    h = hashlib.sha256()
    for pkg in _PACKAGES:
        stack = [str(_ROOT / pkg)]
        while stack:
            with contextlib.suppress(OSError), os.scandir(stack.pop()) as it:
                for e in sorted(it, key=lambda e: e.name):
                    if e.is_dir(follow_symlinks=False):
                        if e.name != "__pycache__":
                            stack.append(e.path)
                    elif e.name.endswith(".py"):
                        st = e.stat()
                        h.update(f"{e.path}:{st.st_mtime_ns}:{st.st_size}\n".encode())
    return h.hexdigest()


def read_info(state: Path) -> dict | None:
    return read_record(state / "kept.json", ("pid", "key"))


def write_info(state: Path, info: dict) -> None:
    write_record(state / "kept.json", info)


def is_kept_process(pid: int, state: Path) -> bool:
    """``pid`` is alive and is the kept process of ``state`` (not a reused PID)."""
    return is_process_of(pid, _SERVER_SCRIPT.name, state)


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds") and hasattr(os, "fork")


# --------------------------------------------------------------------------- the command's side
class Launch:
    """What the command captured at its start, before anything could change its environment: what
    a kept process started at its end must be started with."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)
        self.environ = dict(os.environ)
        self.path = list(sys.path)
        self.cwd = os.getcwd()
        self.flags = interpreter_flags()
        self._key: str | None = None

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = key(self.environ, self.path, self.cwd, self.flags)
        return self._key


def run(argv: list[str], launch: Launch) -> int | None:
    """Run ``rhapso ARGV`` in a process forked from the kept one; its exit status, or None when it
    must run here (nothing ran)."""
    if command_of(argv) not in ROUTED_COMMANDS or not supported() or idle_seconds() <= 0:
        return None
    state = state_dir(launch.environ)
    info = read_info(state)
    if info is None or not info.get("ready") or info.get("key") != launch.key:
        return None
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(info["socket"]))
    except OSError:
        return None
    with conn:
        return _run_through(conn, argv, launch)


def _run_through(conn: socket.socket, argv: list[str], launch: Launch) -> int | None:
    request = json.dumps({
        "argv0": sys.argv[0] if sys.argv else "rhapso", "argv": argv, "cwd": launch.cwd,
        "environ": launch.environ, "umask": _umask(), "affinity": sorted(os.sched_getaffinity(0)),
        "key": launch.key,
    }).encode()
    try:
        socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        conn.settimeout(HANDSHAKE_TIMEOUT_S)
        reader = conn.makefile("rb")
        first = _message(reader)
    except TimeoutError:
        # It may have started the command after all: running it here too could run it twice.
        print(f"rhapso: the process kept between commands did not answer within {HANDSHAKE_TIMEOUT_S:g} s; "
              "run the command again (RHAPSO_KEPT_PROCESS_IDLE_S=0: in a fresh process)", file=sys.stderr, flush=True)
        return 1
    except OSError:
        return None  # retiring, or replaced between our look and our request: nothing ran
    if first is None or "pid" not in first:
        return None  # refused (another key: replaced since our look), or gone: nothing ran
    conn.settimeout(None)
    pid = int(first["pid"])
    previous = {s: signal.signal(s, lambda signum, frame: _forward(pid, signum)) for s in FORWARDED}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, lambda signum, frame: _suspend(pid))
    try:
        while True:
            try:
                last = _message(reader)
                break
            except InterruptedError:
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if last is None:
        print(f"rhapso: the process kept between commands ended without the command's (pid {pid}) exit "
              f"status; its log: {state_dir(launch.environ) / 'kept.log'}", file=sys.stderr, flush=True)
        return 1
    _record_usage(last.get("rusage"))
    if last.get("signal"):
        sig = int(last["signal"])
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return int(last.get("exit", 1))


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signum)


def _suspend(pid: int) -> None:
    """Ctrl-Z: the command is in a process group of its own (not the terminal's), so the
    terminal's SIGTSTP stops only this program. Stop the command's group first (SIGSTOP: a
    handler in the command cannot delay it), then this program as the shell expects; on
    ``fg`` or ``bg`` (SIGCONT) this program goes on here and lets the command go on too."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGSTOP)  # the command is its group's leader (kept_process_server)
    handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    try:
        os.kill(os.getpid(), signal.SIGTSTP)
    finally:
        signal.signal(signal.SIGTSTP, handler)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGCONT)


def _message(reader) -> dict | None:
    line = reader.readline()
    if not line:
        return None
    return json.loads(line)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _record_usage(rusage: dict | None) -> None:
    path = os.environ.get("RHAPSO_KEPT_PROCESS_RUSAGE")
    if path and rusage is not None:
        with contextlib.suppress(OSError):
            Path(path).write_text(json.dumps(rusage))


# --------------------------------------------------------------------------- starting one
def start_for_next(launch: Launch) -> int | None:
    """After a flow command that ran here: start a kept process for the next ones (in the
    background, not waited for), replacing one with another key; its PID, or None when one with
    this key is already there or starting, or none is wanted."""
    if command_of(launch.argv) not in ROUTED_COMMANDS or not supported():
        return None
    try:
        idle_s = idle_seconds()
    except ValueError:
        return None
    if idle_s <= 0:
        return None
    state = state_dir(launch.environ)
    try:
        state.mkdir(parents=True, exist_ok=True)
        sock = socket_path(state)
        with locked(state / "start.lock"):
            info = read_info(state)
            if info is not None and is_kept_process(int(info["pid"]), state):
                if info.get("key") == launch.key:
                    return None
                with contextlib.suppress(OSError):
                    os.kill(int(info["pid"]), signal.SIGTERM)  # its commands are processes of their own
            # A new file, not the old one truncated: a replaced process may still be writing to that.
            with open(state / f".kept.log.{os.getpid()}", "w") as log:
                os.replace(log.name, state / "kept.log")
                process = subprocess.Popen(
                    [sys.executable, *launch.flags, str(_SERVER_SCRIPT), "--state-dir", str(state), "--socket", str(sock),
                     "--key", launch.key, "--idle-s", repr(float(idle_s)), "--sys-path", json.dumps(launch.path)],
                    env=launch.environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=launch.cwd,
                )
            write_info(state, {"pid": process.pid, "key": launch.key, "ready": False, "socket": str(sock),
                               "idle_s": idle_s, "started": time.time()})
            return process.pid
    except (OSError, KeptProcessError):
        return None  # no kept process; commands run as before


def wait_ready(timeout_s: float = 60.0, environ=None) -> dict | None:
    """Wait until the kept process of this environment's state folder is ready; its record, or
    None when there is none (or it did not get ready in time). For benchmarks and tests."""
    state = state_dir(environ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = read_info(state)
        if info is None or not running(int(info["pid"])):
            return None
        # Right after its start the process may not have exec'd yet (its command line is then
        # its starter's): it is looked at by its command line once it says it is ready.
        if info.get("ready"):
            return info if is_kept_process(int(info["pid"]), state) else None
        time.sleep(0.05)
    return None


def stop(state: Path | None = None, wait_s: float = 10.0) -> int | None:
    """Stop the kept process of ``state`` (default :func:`state_dir`) now; its PID, or None when
    none ran. Commands forked from it go on."""
    state = state or state_dir()
    if not state.is_dir():
        return None
    with locked(state / "start.lock"):
        info = read_info(state)
        if info is None:
            return None
        (state / "kept.json").unlink(missing_ok=True)
    pid = int(info["pid"])
    if not is_kept_process(pid, state):
        return None
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while is_kept_process(pid, state) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_kept_process(pid, state):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pid
