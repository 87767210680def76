"""The process kept between commands (:mod:`rhapso_cli.kept_process`): imports what a flow command
runs, then forks a waiter and a command process per request on its Unix socket; exits after
``--idle-s`` seconds without a request, on SIGTERM, or when its record names another process.

Run as a script by :func:`rhapso_cli.kept_process.start_for_next`, in its own session, with the
environment and ``sys.path`` of the command that started it (the key it records says so).

Fork safety: nothing here starts a thread before a fork (checked: the process refuses to serve if
one exists after its imports; OpenBLAS's own threads are stopped around ``fork`` by OpenBLAS), and
nothing opens a connection, a Prefect client or a Ray session: the command makes its own after
the fork, as a fresh process would.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

#: Seconds a connection gets to deliver its request before it is dropped.
REQUEST_TIMEOUT_S = 5.0

#: The modules a flow command imports, in the order it does (the rest follows from them); the
#: second half, those it imports later, at their first use (listed from ``sys.modules`` at the
#: end of a forked ``rhapso stitch``). None starts a thread at import; numba's threading layer
#: (``numba.np.ufunc.*pool``) is left to the command, which starts it.
WARM_MODULES = (
    "rhapso_cli.main", "rhapso_cli.early", "rhapso_cli.interrupt", "rhapso_cli.failures", "rhapso_cli.summary",
    "rhapso_cli.progress", "rhapso_cli.startup_gc", "rhapso_core.config", "rhapso_core.param_files",
    "flows.local_api", "flows.kept_api", "flows.runtime", "flows.stitch", "flows.alignment", "flows.fusion",
    "flows.pyramid", "tasks.detection", "tasks.matching", "tasks.solving", "tasks.fusion", "tasks.qc",
    "prefect.client.orchestration", "prefect.logging.configuration",
    # at first use
    "flows.blas_threads", "flows.loopback_tls", "rhapso_core.executor", "rhapso_core.planner",
    "rhapso_core.pipeline.preflight", "rhapso_core.pipeline.input_guard", "rhapso_core.detection.dog_detector",
    "rhapso_core.stitching.precision", "rhapso_core.stitching.peak_fit", "rhapso_core.stitching._ncc_kernel",
    "rhapso_core.io.tiff_source", "rhapso_core.io.bdv_hdf5", "rhapso_core.io.bdv_n5", "rhapso_core.intensity.store",
    "rhapso_core.qc.report", "rhapso_core.qc.solver", "networkx", "pydantic.v1", "prefect.utilities.visualization",
    "psutil", "tifffile", "threadpoolctl", "anyio._backends._asyncio", "xml.etree.ElementTree",
)

_pid = os.getpid()  # the kept process's own PID: its clean-up never runs in a forked child


def warm() -> None:
    """Import what a command would, and pay the first-use costs that stay in memory."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    # numba's first compilation in a process loads its type registries and target context
    # (0.35-0.5 s measured in `rhapso stitch`): a one-line function pays it here, without
    # touching the cache folder and without a threading layer (not `parallel`).
    import numba

    numba.njit(lambda x: x + 1)(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--idle-s", type=float, required=True)
    ap.add_argument("--sys-path", required=True, help="JSON list: the starting command's sys.path")
    args = ap.parse_args(argv)
    sys.path[:] = json.loads(args.sys_path)
    state = Path(args.state_dir)
    from rhapso_cli.kept_process import locked, read_info, write_info

    gc.disable()  # as the command's own start does (rhapso_cli.startup_gc): everything made now lives
    t0 = time.monotonic()
    warm()  # in the starting command's folder: Prefect and numba read configuration files there
    os.chdir(state)  # not holding a user's folder for as long as it lives
    gc.freeze()
    gc.enable()
    if threading.active_count() != 1:
        print(f"threads after the imports: {[t.name for t in threading.enumerate()]}; not safe to fork, exiting",
              flush=True)
        return 3
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with locked(state / "start.lock"):
        info = read_info(state)
        if info is None or int(info["pid"]) != _pid:
            print("replaced while starting; exiting", flush=True)
            return 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.socket)
        old = os.umask(0o177)
        try:
            listener.bind(args.socket)
        finally:
            os.umask(old)
        listener.listen(64)
        inode = os.stat(args.socket).st_ino
        write_info(state, dict(info, ready=True, warm_s=round(time.monotonic() - t0, 3)))
    print(f"ready in {time.monotonic() - t0:.2f} s: pid {_pid}, socket {args.socket}", flush=True)
    retiring = []
    signal.signal(signal.SIGTERM, lambda signum, frame: retiring.append(signum))
    try:
        serve(listener, state, args.idle_s, retiring, args.key)
    finally:
        if os.getpid() == _pid:
            listener.close()
            _forget(state, args.socket, inode)
    return 0


def _forget(state: Path, path: str, inode: int) -> None:
    """Remove this process's record and socket, not a successor's (same path, another inode)."""
    from rhapso_cli.kept_process import locked, read_info

    with contextlib.suppress(OSError), locked(state / "start.lock"):
        info = read_info(state)
        if info is not None and int(info["pid"]) == _pid:
            (state / "kept.json").unlink(missing_ok=True)
        if os.stat(path).st_ino == inode:
            os.unlink(path)


def serve(listener: socket.socket, state: Path, idle_s: float, retiring: list, key: str) -> None:
    from rhapso_cli.kept_process import locked, read_info

    last = time.monotonic()
    while not retiring:
        _reap()
        left = idle_s - (time.monotonic() - last)
        if left <= 0:
            with locked(state / "start.lock"):
                info = read_info(state)
                if info is not None and int(info["pid"]) == _pid:
                    (state / "kept.json").unlink(missing_ok=True)
            return
        try:
            ready, _, _ = select.select([listener], [], [], min(left, 2.0))
        except InterruptedError:
            continue
        if not ready:
            info = read_info(state)
            if info is None or int(info["pid"]) != _pid:
                return  # replaced, or stopped
            continue
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        last = time.monotonic()
        with conn:
            try:
                request, fds = _receive(conn)
            except (OSError, ValueError) as exc:
                print(f"request refused: {exc}", flush=True)
                continue
            if request.get("key") != key:
                # Read from a record that named this socket's previous owner: closed unanswered,
                # the command runs in its own process.
                print("request refused: another key", flush=True)
                for fd in fds:
                    os.close(fd)
                continue
            try:
                _fork_waiter(conn, listener, request, fds)
            finally:
                if os.getpid() == _pid:  # a command forked here leaves through these frames
                    for fd in fds:
                        os.close(fd)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    from rhapso_cli.kept_process import _HEADER

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    uid = int.from_bytes(creds[4:8], sys.byteorder)
    if uid != os.getuid():
        raise ValueError(f"connection from uid {uid}, not this user's")
    conn.settimeout(REQUEST_TIMEOUT_S)
    head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    if len(head) != _HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("incomplete request")
    (n,) = _HEADER.unpack(head)
    body = bytearray()
    while len(body) < n:
        chunk = conn.recv(min(1 << 20, n - len(body)))
        if not chunk:
            for fd in fds:
                os.close(fd)
            raise ValueError("request cut short")
        body += chunk
    conn.settimeout(None)
    return json.loads(body), fds


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_waiter(conn: socket.socket, listener: socket.socket, request: dict, fds: list[int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return
    # The waiter: forks the command, names it to the client, waits for it, reports its status.
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        command = os.fork()
    except BaseException as exc:  # noqa: BLE001 - the waiter must end here, never in the server's loop
        _waiter_failed(exc)
    if command == 0:
        os.close(conn.detach())
        # Runs the command and leaves through the interpreter's own exit (SystemExit), past the
        # server's frames, whose clean-up runs only in the server's process (_pid).
        become_command(request, fds)
    try:
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"pid": command}).encode() + b"\n")
        status, usage = _wait_for(command, conn)
        report = {"rusage": usage}
        if os.WIFSIGNALED(status):
            report["signal"] = os.WTERMSIG(status)
        else:
            report["exit"] = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(report).encode() + b"\n")
    except BaseException as exc:  # noqa: BLE001
        _waiter_failed(exc)
    os._exit(0)


def _waiter_failed(exc: BaseException):
    with contextlib.suppress(Exception):
        print(f"waiter: {type(exc).__name__}: {exc}", flush=True)
    os._exit(1)


def _wait_for(pid: int, conn: socket.socket):
    """The command's wait status and resource usage. The client going away (killed) sends the
    command SIGTERM, as the end of its terminal or a kill of a normal command's process would."""
    pidfd = os.pidfd_open(pid)
    watching = [pidfd, conn]
    while True:
        ready, _, _ = select.select(watching, [], [])
        if conn in ready:
            try:
                gone = conn.recv(1) == b""
            except OSError:
                gone = True
            if gone:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                watching = [pidfd]
        if pidfd in ready:
            _, status, ru = os.wait4(pid, 0)
            os.close(pidfd)
            return status, {"cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                            "maxrss_kb": ru.ru_maxrss}


def refresh_consoles() -> None:
    """Prefect's console log handlers (rich consoles) chose their colours and interactivity when
    logging was set up at import, from the kept process's stderr (a log file: neither); a fresh
    command's choose from its own stderr, maybe a terminal. Rich looks again on each write for the
    rest (width, is-a-terminal), so these two are chosen again here, by rich's own rules. Where a
    rich version lacks them, Prefect's logging is set up again (0.12 s)."""
    import logging

    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers += getattr(logger, "handlers", [])
    consoles = [h.console for h in handlers if hasattr(h, "console")]
    if not all(hasattr(c, "_detect_color_system") and hasattr(c, "_color_system") for c in consoles):
        from prefect.logging.configuration import setup_logging

        setup_logging(incremental=False)
        return
    for console in consoles:
        console._color_system = console._detect_color_system()
        if "TTY_INTERACTIVE" not in os.environ:
            console.is_interactive = console.is_terminal and not console.is_dumb_terminal


def become_command(request: dict, fds: list[int]) -> None:
    """Turn this forked process into the client's command, as if it had been started by it."""
    os.setpgid(0, 0)  # its own group: a signal to the kept process's group does not reach it
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
    try:
        _take_over(request)
    except Exception as exc:  # noqa: BLE001 - one line on the command's stderr, never the server's frames
        print(f"rhapso: could not start the command in the process kept between commands ({type(exc).__name__}: "
              f"{exc}); run it again with RHAPSO_KEPT_PROCESS_IDLE_S=0", file=sys.stderr, flush=True)
        os._exit(1)
    from rhapso_cli.main import cli

    sys.exit(cli(list(request["argv"])))


def _take_over(request: dict) -> None:
    """The command's folder, umask, affinity, environment, arguments, stdio buffering, consoles."""
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    with contextlib.suppress(OSError, ValueError):
        os.sched_setaffinity(0, request["affinity"])
    os.environ.clear()
    os.environ.update(request["environ"])
    sys.argv = [request["argv0"], *request["argv"]]
    # Python chose the buffering of stdout when the kept process started (a log file then):
    # line-buffered on a terminal, as a fresh process's.
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(line_buffering=os.isatty(fd) or fd == 2)
    refresh_consoles()
    import random

    import numpy as np

    random.seed()
    np.random.seed()  # a fresh process's global NumPy generator would be seeded from the OS
    from rhapso_cli import kept_process

    kept_process.SERVED_BY = _pid


if __name__ == "__main__":
    # Run as a script, its own folder (rhapso_cli/) heads sys.path: --sys-path replaces it.
    sys.exit(main())
