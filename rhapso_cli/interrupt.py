"""Ctrl-C and SIGTERM: the command stops within seconds and says what it kept for a resume.

Left to themselves, an interrupted flow run waits for its Ray tasks and the local
Prefect API (itself interrupted when the signal went to the process group) and
prints a screen of connection errors. Here the first SIGINT or SIGTERM:

1. marks the run record of each output folder this process holds ``cancelled``,
   and the Prefect flow run ``Cancelled`` (best effort, a second at most);
2. releases the output locks this process holds;
3. stops Ray (which ends the tasks) and the local Prefect API, with a deadline;
4. prints one line naming the folder and what was kept, and exits with 130.

Finished detection (Prefect's result cache), finished fusion blocks (markers
written after their data) and the point store's completed views stay, so running
the same command again resumes. A second signal exits at once.

The same clean-up stops a command whose local Prefect API server's process ended under it
(:mod:`flows.api_watch`): the line then says so, and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sys
import threading

EXIT_INTERRUPTED = 130
#: Exit status of a command stopped because its local Prefect API server's process ended
#: (:mod:`flows.api_watch`): a failure, not the user's interruption.
EXIT_API_LOST = 1

#: Seconds the clean-up may take before the process exits regardless.
DEADLINE_S = 8.0
#: Seconds a temporary local API server gets to exit on SIGTERM before SIGKILL (it shares the
#: command's stdout and stderr; within the stop step's share of DEADLINE_S).
SERVER_GRACE_S = 2.0

_state = {"command": "rhapso", "kept": "", "fired": False, "lost": ""}
#: The early-started server the clean-up took to stop (for the last kill, should its stop not end in time).
_stopping: list = []


def _mark_cancelled(held: dict[str, dict]) -> None:
    from rhapso_core.pipeline.run_record import RunRecord, read_record, write_record

    for out_dir in held:
        rec = read_record(out_dir)
        if rec is not None and rec.state == "running":
            write_record(out_dir, RunRecord(rec.input_xml, rec.input_sha256, rec.params, "cancelled"))
    run_ids = [r.get("run_id") for r in held.values() if r.get("run_id")]
    api_url = os.environ.get("PREFECT_API_URL")
    if not run_ids or not api_url or _state["lost"]:  # no API left to tell
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE, temporary_settings

    # The API the command exported when it set it. Without it, Prefect's settings here could be
    # those read at its import (no API), and Prefect would start a server of its own, which the
    # exit below (os._exit: no exit functions) would leave running on the database.
    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}):
        _cancel_runs(run_ids)


def _cancel_runs(run_ids: list) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterParentFlowRunId, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        # The stage subflows still running (detection, a matching round, fusion) would otherwise
        # stay "Running" in the UI for ever: the process that would finish them is gone.
        unfinished = FlowRunFilterState(type=FlowRunFilterStateType(
            any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]))
        for rid in run_ids:
            client.set_flow_run_state(rid, Cancelled(message="interrupted by the user (signal)"), force=True)
        # The main thread runs on until the process exits, so a subflow may start after a look:
        # a second look catches it (one starting later still would stay "Running").
        for _ in range(2):
            parents, seen = list(run_ids), set()
            while parents:
                subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents), state=unfinished))
                parents = [r.id for r in subflows if r.id not in seen]
                seen.update(parents)
            for rid in seen:
                client.set_flow_run_state(rid, Cancelled(message="interrupted by the user (signal)"), force=True)


def _stop_services() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass
    from flows import local_api, runtime

    early = local_api.take_early()  # started early, not yet taken by a flow
    _stopping.append(early)
    for server in (early, getattr(runtime, "_LOCAL_SERVER", None)):
        if isinstance(server, local_api.LocalAPIServer):
            server.stop(grace_s=SERVER_GRACE_S)
        elif server is not None:  # the kept server: let go, it stays for the next command
            server.stop()


def _kill_temporary_servers() -> None:
    """Last, before the exit: a temporary server still shutting down (its stop's thread ran out
    of time) is killed. It shares the command's stdout and stderr, so left alive it would hold a
    shell's pipe (``rhapso ... | tee``) open after the command has gone."""
    from flows import local_api, runtime

    for server in (*_stopping, local_api.take_early(), getattr(runtime, "_LOCAL_SERVER", None)):
        if isinstance(server, local_api.LocalAPIServer):
            server.kill()


def _quietly(step) -> None:
    # Best effort: the local API or Ray may already be gone (the signal reached the whole
    # process group); their errors would bury the one line that matters.
    try:
        step()
    except Exception:
        pass


def _cleanup_and_exit(signum: int, context: contextvars.Context) -> None:
    from rhapso_core.pipeline.run_lock import held_locks, release_held

    held = held_locks()
    steps = [lambda: _mark_cancelled(held), release_held, _stop_services]
    for step in steps:
        # In the interrupted command's context (its Prefect settings: API, certificates): a new
        # thread starts from an empty one.
        t = threading.Thread(target=context.copy().run, args=(_quietly, step), daemon=True)
        t.start()
        t.join(DEADLINE_S / len(steps))
    _quietly(_kill_temporary_servers)
    folders = ", ".join(held) or "the output"
    kept = _state["kept"] or "finished work"
    if _state["lost"]:
        print(f"{_state['command']}: stopped: {_state['lost']}; kept {kept} in {folders}; "
              f"run the same command again to resume", file=sys.stderr, flush=True)
        os._exit(EXIT_API_LOST)
    name = signal.Signals(signum).name
    print(f"{_state['command']}: interrupted ({name}): kept {kept} in {folders}; "
          f"run the same command again to resume", file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


def _api_lost(line: str) -> None:
    """The command's local Prefect API has gone (:mod:`flows.api_watch`, from its thread): stop
    as on a signal, which the API's absence makes no slower, and say why."""
    if _state["fired"]:
        return
    _state["lost"] = line
    _handler(signal.SIGTERM, None)


def _handler(signum, frame) -> None:
    if _state["fired"]:
        os._exit(EXIT_INTERRUPTED)
    _state["fired"] = True
    # The clean-up runs beside the interrupted main thread; a watchdog ends the process
    # even if a step hangs (a Ray or HTTP call that ignores the deadline).
    threading.Thread(target=_cleanup_and_exit, args=(signum, contextvars.copy_context()), daemon=True).start()
    watchdog = threading.Timer(DEADLINE_S + 4, lambda: os._exit(EXIT_API_LOST if _state["lost"] else EXIT_INTERRUPTED))
    watchdog.daemon = True
    watchdog.start()


@contextlib.contextmanager
def _no_bridge():
    yield


def _suspend_prefect_sigterm_bridge():
    """Prefect's flow engine swaps in, for every flow and subflow run, a SIGTERM handler
    that reports the run crashed through the API before the process may stop: minutes of
    retries when the same signal stopped the local API. It exists for runner-driven
    cancellation (deployments), which a command run from a shell does not have; for the
    command's duration the engine runs without it. Returns what to restore."""
    try:
        from prefect import flow_engine
    except ImportError:
        return None, None
    bridge = getattr(flow_engine, "capture_sigterm", None)
    if bridge is None:
        return None, None
    flow_engine.capture_sigterm = _no_bridge
    return flow_engine, bridge


@contextlib.contextmanager
def handling_signals(command: str, kept: str):
    """Handle SIGINT / SIGTERM for the block (main thread only); the previous handlers are
    restored after it (``main()`` is also called in-process by tests and scripts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(command=f"rhapso {command}", kept=kept, fired=False, lost="")
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, _handler)
    from flows import runtime

    runtime.COMMAND_SIGTERM_HANDLER = _handler
    runtime.COMMAND_API_LOST_HANDLER = _api_lost
    engine, bridge = _suspend_prefect_sigterm_bridge()
    try:
        yield
    finally:
        runtime.COMMAND_SIGTERM_HANDLER = None
        runtime.COMMAND_API_LOST_HANDLER = None
        if engine is not None:
            engine.capture_sigterm = bridge
        for s, h in previous.items():
            signal.signal(s, h)


def _finished_exit(rc: int):
    def _finished(signum, frame) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(rc)

    return _finished


def guard_process_teardown() -> None:
    """Called once, first thing, by the ``rhapso`` program. The interpreter's final stage
    resets Python-level signal handlers to the system default, so a Ctrl-C landing there,
    after a command has finished, would end the process with -SIGINT and read as an
    interrupted run. An exit function registered now runs after every later-registered one
    (Prefect's, Ray's, zarr's: exit functions run last-in, first-out) and ignores the two
    signals for the last few milliseconds; Python leaves an ignored signal ignored."""
    import atexit

    def _ignore_from_here() -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)

    atexit.register(_ignore_from_here)


def exit_quietly_on_signal(rc: int) -> None:
    """After the command has finished (outputs published, lock released), the interpreter
    still tears down Prefect's client, the local API and Ray for a few seconds. A Ctrl-C
    there would print a KeyboardInterrupt traceback and end with -SIGINT, reading as an
    interrupted run; the work is done, so the process ends with the command's own code."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _finished_exit(rc))
