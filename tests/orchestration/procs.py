"""Processes the orchestration tests start and stop: Prefect server, worker, Ray nodes.

Every process is started in its own session (``start_new_session``) and stopped
through :func:`stop` by the PIDs of its own process tree, never by name: other
runs on this machine (Prefect servers, Ray clusters) must survive our tests.
``prefect worker start`` may ignore the first SIGTERM and ``ray start --block``
leaves raylet/GCS children behind if killed alone, so :func:`stop` snapshots the
tree first, sends SIGTERM, waits, then SIGKILLs whatever of that snapshot (and of
the process group) is still alive.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect API settings a harness may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PREFECT_HOME"))}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session with stdout and stderr going to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it; closed when we stop it
    try:
        return subprocess.Popen(cmd, env=env, cwd=cwd or REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        fh.close()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL what is left of its tree.

    Only the top process gets the SIGTERM: ``ray start --block`` and ``prefect
    server start`` shut their children down themselves (terminating the children
    first makes ``ray start`` wait for them as if they had failed).
    """
    if proc is None:
        return
    tree = _tree(proc.pid)
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    kill(proc, extra=tree)


def kill(proc: subprocess.Popen, extra: list[psutil.Process] = ()) -> None:
    """SIGKILL ``proc``, its descendants, ``extra`` and its process group (our session only)."""
    tree = {p.pid: p for p in [*extra, *_tree(proc.pid)]}
    for p in tree.values():
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        # The session we created: its group id is the child's PID, so this
        # reaches only processes descended from it that kept the group.
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    # Reap our own child through Popen: psutil would reap it first and leave
    # Popen a returncode of 0 for a killed process.
    psutil.wait_procs([p for pid, p in tree.items() if pid != proc.pid], timeout=10)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def tail(log: Path, n: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(no log)"


# --------------------------------------------------------------------------- Prefect


@dataclass
class PrefectServer:
    """A ``prefect server start`` subprocess with its own PREFECT_HOME (SQLite database)."""

    proc: subprocess.Popen
    port: int
    home: Path
    log: Path
    auth: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment for a CLI, worker or flow process talking to this server."""
        env = base_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url, **extra)
        if self.auth:
            env["PREFECT_API_AUTH_STRING"] = self.auth
        return env

    def request(self, method: str, path: str, body=None, auth: str | None = "default", timeout: float = 30):
        """One REST call; returns (status, parsed JSON or None). HTTP errors are returned, not raised.

        Reads (GET, ``.../filter``) are retried twice on a socket timeout: with flows
        running on a loaded 2-core machine the SQLite-backed server can stall for
        tens of seconds. Writes are not retried (a retried write could act twice).
        """
        read_only = method == "GET" or path.endswith("/filter")
        for attempt in range(3 if read_only else 1):
            try:
                return self._with_503_retries(method, path, body, auth, timeout)
            except TimeoutError:
                if attempt == (2 if read_only else 0):
                    raise
        raise AssertionError("unreachable")

    def _with_503_retries(self, method: str, path: str, body, auth: str | None, timeout: float):
        # 503 is Prefect's answer when SQLite stayed locked (the transaction was rolled back, nothing
        # was written): retried, as a client of the real service does, writes included.
        for wait in (1.0, 2.0, 4.0, 8.0, None):
            status, payload = self._request(method, path, body, auth, timeout)
            if status != 503 or wait is None:
                return status, payload
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, body, auth: str | None, timeout: float):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        cred = self.auth if auth == "default" else auth
        if cred:
            import base64

            req.add_header("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def stop(self) -> None:
        stop(self.proc, timeout=15)


def start_prefect_server(home: Path, auth: str | None = None, timeout: float = 150.0, **extra: str) -> PrefectServer:
    """Start ``prefect server start`` on 127.0.0.1:<free port> and wait for /api/health.

    The scheduler service is off (no cron runs of ``discovery/scheduled`` can
    appear mid-test) and so is the UI (nothing to serve); event triggers
    (automations) stay on.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = base_env(
        PREFECT_HOME=str(home),
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        **extra,
    )
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    log = home / "server.log"
    proc = spawn([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log)
    server = PrefectServer(proc, port, home, log, auth)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}:\n{tail(log)}")
        try:
            # /health is open even with an auth string; readiness is the API answering.
            status, body = server.request("GET", "/health", timeout=3)
            if status == 200 and body is True:
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"prefect server not ready after {timeout} s:\n{tail(log)}")


def prefect_cli(args: list[str], env: dict[str, str], timeout: float = 180.0) -> subprocess.CompletedProcess:
    """Run ``prefect <args>`` to completion from the repository root; raises with its output on failure."""
    r = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def start_worker(server: PrefectServer, pool: str, log: Path, **extra: str) -> subprocess.Popen:
    """``prefect worker start --pool <pool>`` polling every 2 s (the default 10 s slows every test)."""
    env = server.client_env(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5", **extra)
    return spawn([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"], env, log)


# --------------------------------------------------------------------------- Ray

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ADDRESS = re.compile(r"ray start --address='([^']+)'")
_NODE_IP = re.compile(r"Local node IP: (\S+)")


@dataclass
class RayNode:
    """One ``ray start --block`` subprocess (a head or a worker node) that we own."""

    proc: subprocess.Popen
    log: Path
    node_ip: str
    address: str | None = None  # the GCS address (head only)
    ports: dict = field(default_factory=dict)
    temp_dir: Path | None = None  # head only; the cluster's session logs are under it

    def logs(self, pattern: str = "*", n: int = 3000) -> str:
        """Tails of the head's session log files matching ``pattern`` (for failure messages)."""
        if self.temp_dir is None:
            return ""
        files = sorted((self.temp_dir / "session_latest" / "logs").glob(pattern))
        return "\n".join(f"== {f.name}\n{tail(f, n)}" for f in files)

    @property
    def client_address(self) -> str:
        """``ray://<node ip>:<client server port>`` (head only): what a remote driver uses."""
        return f"ray://{self.node_ip}:{self.ports['client']}"

    def stop(self) -> None:
        # ``ray start --block`` stops its own Ray processes on SIGTERM; stop() then
        # SIGKILLs any of that tree still alive. Never ``ray stop``: it ends every
        # Ray process on the machine.
        stop(self.proc, timeout=20)


def _node_ports() -> list[str]:
    # Fixed defaults (10001 client server, 52365 dashboard agent, ...) collide
    # with other Ray instances on this machine and between our two nodes.
    ports = {
        "--object-manager-port": free_port(), "--node-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(), "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(), "--metrics-export-port": free_port(),
    }
    return [x for k, v in ports.items() for x in (k, str(v))]


def _wait_for(log: Path, proc: subprocess.Popen, pattern: re.Pattern, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = pattern.search(_ANSI.sub("", tail(log, 200_000)))
        if m:
            return m
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.3)
    raise TimeoutError(f"ray start: no '{pattern.pattern}' after {timeout} s:\n{tail(log)}")


def start_ray_head(temp_dir: Path, num_cpus: int = 1, timeout: float = 90.0) -> RayNode:
    """``ray start --head --block`` on a free port; the address is the one Ray prints.

    Ray announces the machine's primary (non-loopback) address even on a local
    start, so the address is parsed from its output rather than assumed to be
    127.0.0.1.
    """
    port, client_port = free_port(), free_port()
    log = temp_dir.parent / f"ray-head-{port}.log"
    cmd = [str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", str(num_cpus),
           "--include-dashboard", "false", "--temp-dir", str(temp_dir), "--disable-usage-stats",
           "--log-color", "false", "--ray-client-server-port", str(client_port), *_node_ports(), "--block"]
    env = base_env(RAY_AUTH_MODE="disabled")
    proc = spawn(cmd, env, log)
    try:
        address = _wait_for(log, proc, _ADDRESS, timeout).group(1)
        node_ip = _wait_for(log, proc, _NODE_IP, timeout).group(1)
    except BaseException:
        stop(proc)
        raise
    return RayNode(proc, log, node_ip, address, {"client": client_port}, temp_dir)




def start_ray_worker(head: RayNode, num_cpus: int = 1, timeout: float = 90.0) -> RayNode:
    """``ray start --address <head> --block``: a second node on this machine."""
    log = head.log.parent / f"ray-worker-{free_port()}.log"
    cmd = [str(BIN / "ray"), "start", "--address", head.address, "--num-cpus", str(num_cpus),
           "--disable-usage-stats", "--log-color", "false", *_node_ports(), "--block"]
    env = base_env(RAY_AUTH_MODE="disabled")
    proc = spawn(cmd, env, log)
    try:
        _wait_for(log, proc, re.compile(r"Ray runtime started"), timeout)
        node_ip = _wait_for(log, proc, _NODE_IP, 1).group(1)
    except BaseException:
        stop(proc)
        raise
    return RayNode(proc, log, node_ip)


def process_titles(proc: subprocess.Popen) -> set[str]:
    """Process titles ``ray::<name>`` among ``proc``'s descendants (idle workers excluded).

    A Ray worker retitles itself after the remote function it is running (for
    Prefect's Ray runner: the task name); agents are titled ``ray::<Agent>``.
    """
    out = set()
    for p in _tree(proc.pid)[1:]:
        try:
            cmd = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cmd.startswith("ray::") and not cmd.startswith("ray::IDLE"):
            out.add(cmd.split()[0])
    return out
