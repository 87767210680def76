"""The process kept between commands (rhapso_cli/kept_process.py, kept_process_server.py): a flow
command that runs in a fresh process starts it as it ends; the next command with the same key is
forked from it and behaves as a fresh process would (arguments, folder, environment, stdout,
stderr, exit status, Ctrl-C); another key runs in a fresh process and replaces it; it exits when
idle; a command whose client is killed is ended.

The commands here are flow commands that end before any flow runs (a missing XML: exit 2;
``--help``: exit 0), or one that blocks on a FIFO given as its XML, so each takes well under a
second once forked; the kept process's own start (the imports) is the slow part, ~3 s."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rhapso_cli import kept_process
from rhapso_cli.kept_process_server import refresh_consoles

ROOT = Path(__file__).resolve().parents[2]
FORKED = "command: forked from the process kept between commands (pid "


@pytest.fixture
def env(tmp_path):
    """The environment of the test's commands: a kept process of their own, in tmp_path, stopped
    at the end; a temporary Prefect API per command (none is kept beyond the test)."""
    state = tmp_path / "kept"
    e = dict(os.environ, RHAPSO_KEPT_PROCESS_DIR=str(state), RHAPSO_KEPT_PROCESS_IDLE_S="120",
             RHAPSO_LOCAL_API_IDLE_S="0", PREFECT_HOME=str(tmp_path / "prefect"),
             PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
    yield e
    kept_process.stop(state)


#: The ``rhapso`` program as a user runs it (its sys.path does not depend on the working folder),
#: else ``python -m`` from the project's folder.
_PROGRAM = Path(sys.executable).with_name("rhapso")
PROGRAM = [str(_PROGRAM)] if _PROGRAM.exists() else [sys.executable, "-m", "rhapso_cli.main"]


def rhapso(env: dict, *args: str, cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PROGRAM, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, **kw)


def started_kept(env: dict, tmp_path: Path) -> dict:
    """Run one command in a fresh process (it starts the kept process as it ends); the record."""
    first = rhapso(env, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert first.returncode == 2 and FORKED not in first.stderr, first.stderr
    info = kept_process.wait_ready(60, env)
    assert info is not None, (Path(env["RHAPSO_KEPT_PROCESS_DIR"]) / "kept.log").read_text()
    return info


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(condition, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_next_command_is_forked_and_behaves_as_a_fresh_process(env, tmp_path):
    info = started_kept(env, tmp_path)
    state = Path(env["RHAPSO_KEPT_PROCESS_DIR"])
    assert (state / "kept.sock").stat().st_mode & 0o777 == 0o600
    fresh = rhapso(dict(env, RHAPSO_KEPT_PROCESS_IDLE_S="0"), "stitch", str(tmp_path / "missing.xml"), "--out",
                   str(tmp_path / "out"))
    usage = tmp_path / "usage.json"
    forked = rhapso(dict(env, RHAPSO_KEPT_PROCESS_RUSAGE=str(usage)), "stitch", str(tmp_path / "missing.xml"),
                    "--out", str(tmp_path / "out"))
    # Same exit status and the same error line, on the client's own stderr; the command says
    # where it ran.
    assert forked.returncode == fresh.returncode == 2
    assert f"{FORKED}{info['pid']}," in forked.stderr
    assert forked.stderr.strip().splitlines()[-1] == fresh.stderr.strip().splitlines()[-1]
    assert "missing.xml" in fresh.stderr
    # The resource usage is the forked command's (it parsed its arguments: some CPU time).
    used = json.loads(usage.read_text())
    assert used["cpu_s"] > 0 and used["maxrss_kb"] > 10_000
    # stdout, and the argument parser's exit status 0, through the kept process; a relative
    # path resolves against the command's own folder, not the kept process's.
    helped = rhapso(env, "stitch", "--help")
    assert helped.returncode == 0 and "usage: rhapso stitch" in helped.stdout
    # The command's own folder: a relative XML argument that names a folder there is refused as
    # a folder (the early check), which it would not be from the kept process's folder.
    (tmp_path / "here.xml").mkdir()
    (tmp_path / "here.xml" / "a.xml").write_text("<SpimData/>")
    usage.unlink()
    rel = rhapso(dict(env, RHAPSO_KEPT_PROCESS_RUSAGE=str(usage)), "stitch", "here.xml", "--out", "o", cwd=tmp_path)
    assert rel.returncode == 2 and "here.xml: is a folder" in rel.stderr, rel.stderr
    if PROGRAM == [str(_PROGRAM)]:  # python -m: another folder is another sys.path, another key
        assert usage.exists()  # forked (the early check ends the command before it says so)
    assert kept_process.read_info(state)["pid"] == info["pid"]  # still the same kept process


def test_another_environment_runs_fresh_and_replaces_the_kept_process(env, tmp_path):
    info = started_kept(env, tmp_path)
    other = dict(env, RHAPSO_TEST_SOMETHING="1")
    r = rhapso(other, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and FORKED not in r.stderr
    new = kept_process.wait_ready(60, other)
    assert new is not None and new["pid"] != info["pid"] and new["key"] != info["key"]
    assert _wait(lambda: not _alive(info["pid"]))
    r = rhapso(other, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert f"{FORKED}{new['pid']}," in r.stderr
    # The first environment's commands no longer match it: they run fresh (and replace it back).
    r = rhapso(env, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and FORKED not in r.stderr


def _blocked_on_fifo(env: dict, tmp_path: Path, **popen) -> tuple[subprocess.Popen, Path]:
    fifo = tmp_path / "blocked.xml"
    os.mkfifo(fifo)
    client = subprocess.Popen([*PROGRAM, "stitch", str(fifo), "--out", str(tmp_path / "out")], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return client, fifo


def _command_of(kept_pid: int) -> int | None:
    """The command process forked for the one request in flight: the kept process's child (the
    waiter) has one child."""
    for waiter in _children(kept_pid):
        for command in _children(waiter):
            return command
    return None


def test_ctrl_c_reaches_the_forked_command(env, tmp_path):
    info = started_kept(env, tmp_path)
    client, _ = _blocked_on_fifo(env, tmp_path)
    assert _wait(lambda: _command_of(info["pid"]) is not None)
    time.sleep(0.5)  # the command has installed its own handlers by now, or ends through cli()'s
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 130, err
    assert FORKED in err and "interrupted" in err


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "gone"


def test_ctrl_z_suspends_the_forked_command_and_fg_resumes_it(env, tmp_path):
    """Ctrl-Z (SIGTSTP to the program) stops the forked command too, though it is not in the
    terminal's process group, and ``fg`` (SIGCONT to the program) lets both go on. Tolerance:
    both stopped ('T') within 20 s of the signal, both running again within 20 s of SIGCONT, and
    the command then ends as usual (Ctrl-C: 130)."""
    info = started_kept(env, tmp_path)
    # A process group of its own under this one's session, as a shell gives a job: the kernel
    # discards a stop signal sent to an orphaned group (this test's own, under a CI runner), and
    # the program would not stop there, Ctrl-Z or not.
    client, _ = _blocked_on_fifo(env, tmp_path, process_group=0)
    assert _wait(lambda: _command_of(info["pid"]) is not None)
    command = _command_of(info["pid"])
    time.sleep(0.5)
    client.send_signal(signal.SIGTSTP)
    assert _wait(lambda: _state(command) == "T" and _state(client.pid) == "T"), (_state(command), _state(client.pid))
    client.send_signal(signal.SIGCONT)
    assert _wait(lambda: _state(command) not in ("T", "gone") and _state(client.pid) not in ("T", "gone")), \
        (_state(command), _state(client.pid))
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 130, err
    assert "interrupted" in err


def test_a_killed_client_ends_its_command(env, tmp_path):
    info = started_kept(env, tmp_path)
    client, _ = _blocked_on_fifo(env, tmp_path)
    assert _wait(lambda: _command_of(info["pid"]) is not None)
    command = _command_of(info["pid"])
    client.kill()
    client.wait(timeout=10)
    # The waiter sees the client's end of the socket close and sends the command SIGTERM (its
    # interruption path), as the end of a terminal would.
    assert _wait(lambda: not _alive(command), 30), f"command {command} still runs"
    assert _alive(info["pid"])  # the kept process itself serves on


def test_a_request_with_another_key_is_refused_unanswered(env, tmp_path):
    """A command that read the record of the socket's previous owner (replaced since) is refused
    before anything is forked, and runs in its own process (``run`` answers None)."""
    import socket

    info = started_kept(env, tmp_path)
    launch = kept_process.Launch(["stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "o")])
    launch._key = "not-its-key"
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(info["socket"])
    with conn:
        assert kept_process._run_through(conn, launch.argv, launch) is None
    assert _children(info["pid"]) == [] and _alive(info["pid"])
    assert "request refused: another key" in (Path(env["RHAPSO_KEPT_PROCESS_DIR"]) / "kept.log").read_text()


def test_idle_kept_process_exits_and_cleans_up(env, tmp_path):
    env = dict(env, RHAPSO_KEPT_PROCESS_IDLE_S="1")
    info = started_kept(env, tmp_path)
    state = Path(env["RHAPSO_KEPT_PROCESS_DIR"])
    assert _wait(lambda: not _alive(info["pid"]), 30)
    assert not (state / "kept.json").exists() and not (state / "kept.sock").exists()
    # The next command runs in a fresh process, as with none ever started.
    r = rhapso(env, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and FORKED not in r.stderr


def test_a_dead_kept_process_is_replaced(env, tmp_path):
    """Killed outright (no clean-up): its record still says ready, with this key, and its socket
    file is there; the command finds no one listening, runs fresh, and starts another."""
    info = started_kept(env, tmp_path)
    os.kill(info["pid"], signal.SIGKILL)
    assert _wait(lambda: not _alive(info["pid"]))
    state = Path(env["RHAPSO_KEPT_PROCESS_DIR"])
    assert kept_process.read_info(state)["pid"] == info["pid"] and (state / "kept.sock").exists()
    r = rhapso(env, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and FORKED not in r.stderr
    new = kept_process.wait_ready(60, env)
    assert new is not None and new["pid"] != info["pid"]
    r = rhapso(env, "stitch", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "out"))
    assert f"{FORKED}{new['pid']}," in r.stderr


def test_disabled_and_non_flow_commands_run_here(env, tmp_path):
    started_kept(env, tmp_path)
    r = rhapso(dict(env, RHAPSO_KEPT_PROCESS_IDLE_S="0"), "stitch", str(tmp_path / "m.xml"), "--out", "o")
    assert r.returncode == 2 and FORKED not in r.stderr
    r = rhapso(env, "xml", str(tmp_path / "m.xml"), "--out", str(tmp_path / "o.xml"))
    assert r.returncode == 2 and FORKED not in r.stderr
    r = rhapso(dict(env, RHAPSO_KEPT_PROCESS_IDLE_S="soon"), "stitch", str(tmp_path / "m.xml"), "--out", "o")
    assert r.returncode == 2 and "RHAPSO_KEPT_PROCESS_IDLE_S='soon'" in r.stderr


# --------------------------------------------------------------------------- units
def test_key_follows_what_imports_read(tmp_path, monkeypatch):
    base = {"PATH": "/usr/bin", "PREFECT_HOME": str(tmp_path / "home")}
    k = kept_process.key(base, ["/a"], str(tmp_path))
    assert kept_process.key(dict(base), ["/a"], str(tmp_path)) == k
    assert kept_process.key(dict(base, PWD="/elsewhere", OLDPWD="/x", _="/bin/rhapso"), ["/a"], str(tmp_path)) == k
    assert kept_process.key(dict(base, PREFECT_LOGGING_LEVEL="DEBUG"), ["/a"], str(tmp_path)) != k
    assert kept_process.key(base, ["/a", "/b"], str(tmp_path)) != k
    assert kept_process.key(base, ["/a"], str(tmp_path), [*kept_process.interpreter_flags(), "-u"]) != k
    (tmp_path / "prefect.toml").write_text("[logging]\nlevel = 'DEBUG'\n")
    assert kept_process.key(base, ["/a"], str(tmp_path)) != k
    (tmp_path / "prefect.toml").unlink()
    assert kept_process.key(base, ["/a"], str(tmp_path)) == k
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert kept_process.key(base, ["/a"], str(tmp_path)) == k  # no [tool.prefect]: nothing Prefect reads
    (tmp_path / "pyproject.toml").write_text("[tool.prefect.logging]\nlevel = 'DEBUG'\n")
    assert kept_process.key(base, ["/a"], str(tmp_path)) != k
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profiles.toml").write_text("active = 'x'\n")
    assert kept_process.key(base, ["/a"], str(tmp_path)) != k


def test_key_follows_the_project_sources(tmp_path, monkeypatch):
    pkg = tmp_path / "src" / "flows"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(kept_process, "_ROOT", tmp_path / "src")
    before = kept_process.source_fingerprint()
    assert kept_process.source_fingerprint() == before
    (pkg / "a.py").write_text("x = 22\n")
    assert kept_process.source_fingerprint() != before


def test_command_of():
    assert kept_process.command_of(["-v", "stitch", "a.xml"]) == "stitch"
    assert kept_process.command_of(["--help"]) is None
    assert kept_process.command_of([]) is None


def test_long_state_paths_get_a_private_socket_folder(tmp_path):
    long = tmp_path / ("d" * 120)
    path = kept_process.socket_path(long)
    assert len(os.fsencode(path)) <= 100
    assert path.parent.stat().st_mode & 0o077 == 0 and path.parent.stat().st_uid == os.getuid()
    assert kept_process.socket_path(long) == path and kept_process.socket_path(tmp_path / ("e" * 120)) != path


def test_console_colours_follow_the_commands_terminal(monkeypatch):
    """A rich console made on a non-terminal (the kept process's log) and then pointed at a
    terminal (the command's stderr, by dup2 onto the same descriptor) chooses colours again, as
    one made on the terminal does."""
    import logging

    from rich.console import Console

    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE", "COLORTERM"):
        monkeypatch.delenv(name, raising=False)
    r, w = os.pipe()
    fd = os.dup(w)
    stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True)
    handler = logging.StreamHandler(stream)
    handler.console = Console(file=stream)
    logger = logging.getLogger("rhapso-test-kept-console")
    logger.addHandler(handler)
    try:
        assert handler.console.color_system is None and not handler.console.is_interactive
        master, slave = pty.openpty()
        os.dup2(slave, fd)
        refresh_consoles()
        on_tty = Console(file=os.fdopen(os.dup(slave), "w"))
        assert handler.console.color_system == on_tty.color_system is not None
        assert handler.console.is_interactive == on_tty.is_interactive
        for f in (master, slave):
            os.close(f)
    finally:
        logger.removeHandler(handler)
        for f in (r, w, fd):
            os.close(f)


def test_key_follows_what_a_forked_command_inherits(monkeypatch):
    """Resource limits (a lower ``ulimit -v`` in a batch job), control groups and priority come
    from the kept process, not from the command: a command whose own differ gets another key."""
    import resource

    base = {"PATH": "/usr/bin"}
    k = kept_process.key(base, ["/a"], "/")
    real = resource.getrlimit

    def lower_as(which):
        if which == resource.RLIMIT_AS:
            return (2 ** 34, 2 ** 34)
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", lower_as)
    assert kept_process.key(base, ["/a"], "/") != k
    monkeypatch.setattr(resource, "getrlimit", real)
    assert kept_process.key(base, ["/a"], "/") == k
    monkeypatch.setattr(os, "getpriority", lambda *a: 10)
    assert kept_process.key(base, ["/a"], "/") != k


def test_a_command_whose_folder_is_gone_says_so_in_one_line(env, tmp_path, monkeypatch, capfd):
    """A forked command that cannot take the command's place (its folder was removed in between)
    ends with one line and status 1, not a traceback through the kept process's frames. Driven
    from this process: its own kept process (its key), then a request naming a removed folder."""
    import socket

    for name in ("RHAPSO_KEPT_PROCESS_DIR", "RHAPSO_KEPT_PROCESS_IDLE_S", "PREFECT_HOME"):
        monkeypatch.setenv(name, env[name])
    launch = kept_process.Launch(["stitch", "a.xml", "--out", "o"])
    assert kept_process.start_for_next(launch) is not None
    info = kept_process.wait_ready(60)
    assert info is not None and info["key"] == launch.key
    gone = tmp_path / "gone"
    gone.mkdir()
    gone.rmdir()
    launch.cwd = str(gone)  # the key stays the one computed above
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(info["socket"])
    with conn:
        rc = kept_process._run_through(conn, launch.argv, launch)
    err = capfd.readouterr().err
    assert rc == 1
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "could not start the command" in lines[0] and "FileNotFoundError" in lines[0], err
