"""Where flows run: the Prefect API they report to and the Ray cluster their tasks use.

Two traps shape this module (see ../shared/notes/prefect-ray-facts.md):

* With no ``PREFECT_API_URL``, every process that touches Prefect starts its own
  temporary API server, so each Ray worker would start one (about 3x slower).
  :func:`prefect_api` therefore starts *one* local API server for the driver and
  exports its URL, which Prefect ships to the Ray workers with the other settings.
* Ray 2.60 enables token authentication by default; a local cluster started by
  us does not need it, so it is disabled unless the user set ``RAY_AUTH_MODE``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from flows import api_watch, artifact_writer
from rhapso_core.config import RuntimeParams

log = logging.getLogger(__name__)

#: (setting's value, exported value) that :func:`_loopback_ca` replaced in this process, or None.
_CA_REPLACED: tuple[str | None, str | None] | None = None

#: The local Prefect API server :func:`prefect_api` started, while it runs.
_LOCAL_SERVER = None

#: One line saying which Prefect API this process's last command used (the CLI shows it).
API_IN_USE: str | None = None

#: Called with :data:`API_IN_USE` once the API answers (the CLI prints it), or None.
ANNOUNCE_API = None

#: The SIGTERM handler of the command running flows in this process (None: Prefect's and Ray's
#: handlers apply, as under a deployment's worker).
COMMAND_SIGTERM_HANDLER = None

#: Called with one line naming the local API server once its process is found gone while the
#: command uses it (:mod:`flows.api_watch`; the CLI stops the command), or None: an error is logged.
COMMAND_API_LOST_HANDLER = None


@contextlib.contextmanager
def prefect_api() -> Iterator[str | None]:
    """Make sure a real Prefect API serves this process and the workers it starts.

    Uses ``PREFECT_API_URL`` when set (a server, Prefect Cloud, or a test harness), else a
    server this user runs with ``prefect server start --background``; otherwise a local API
    server on a loopback port backed by the profile's database (so the runs stay visible in
    ``prefect server start``'s UI afterwards): by default the one kept between commands
    (:mod:`flows.kept_api`), with ``RHAPSO_LOCAL_API_IDLE_S=0`` a temporary one stopped on exit;
    the one the command started or joined early (:mod:`flows.local_api`) when there is one, else
    one started or joined now. :data:`API_IN_USE` says which. Flow-run heartbeats are off while
    such a local server serves: they let a server notice a crashed run, which costs each flow
    run's exit up to a second waiting for the heartbeat thread, and neither local server runs
    the service that would act on them (Prefect's ephemeral mode).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows import local_api

    global _LOCAL_SERVER, API_IN_USE
    current = PREFECT_API_URL.value()
    if current:
        local_api.discard_early()
        API_IN_USE = f"Prefect API: PREFECT_API_URL ({current})"
        _announce()
        yield current
        return
    running = local_api.background_server_url()
    if running:
        local_api.discard_early()
        API_IN_USE = f"Prefect API: the server of `prefect server start --background` ({running})"
        _announce()
        ca = _loopback_ca(running)
        with temporary_settings(updates={PREFECT_API_URL: running, **ca}):
            exported = _export({"PREFECT_API_URL": running, **{k.name: v for k, v in ca.items()}})
            try:
                yield running
            finally:
                _unexport(exported)
        return
    server = local_api.take_early()
    if server is None:
        local_api.start_early()
        server = local_api.take_early()
    ours = server is not None  # our application (flows.local_api_app), which retries locked writes itself
    if server is None:
        server = _prefects_own_server()
    else:
        _LOCAL_SERVER = server  # an interrupt while it starts stops it too
        try:
            server.wait_ready()
        except Exception:
            log.info("the local Prefect API did not answer; starting Prefect's own", exc_info=True)
            server.stop()
            server = _prefects_own_server()
            ours = False
    _LOCAL_SERVER = server  # stopped (a kept one: let go) by an interrupted command on its way out (rhapso_cli.interrupt)
    API_IN_USE = (server.describe() if hasattr(server, "describe")
                  else f"Prefect API: a temporary local server ({server.api_url}), stopped with this command")
    _announce()
    try:
        ca = _loopback_ca(server.api_url)
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, **ca}):
            exported = _export({"PREFECT_API_URL": server.api_url, **{k.name: v for k, v in ca.items()}})
            try:
                watch = (api_watch.watching(server.gone, lambda: _api_lost(server)) if hasattr(server, "gone")
                         else contextlib.nullcontext())  # Prefect's own server (a fallback): not watched
                with watch, artifact_writer.in_background(ours):
                    yield server.api_url
            finally:
                # Ship buffered run logs before the server they go to stops (or, kept, is let go).
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=10)
                _unexport(exported)
    finally:
        _LOCAL_SERVER = None
        server.stop()


def _api_lost(server) -> None:
    line = f"{server.label()} exited while this command used it"
    handler = COMMAND_API_LOST_HANDLER
    if handler is not None:
        handler(line)
    else:
        log.error("%s; Prefect's client will retry each call for about a minute before failing", line)


def _loopback_ca(api_url: str) -> dict:
    """``{PREFECT_API_SSL_CERT_FILE: path}`` for Prefect's clients of a local ``http://`` API: a
    one-certificate file whose TLS context costs 0.5 ms instead of 25-60 ms per client for a full
    bundle (:mod:`flows.loopback_tls`; exported too, for child processes). Empty when it does not
    apply (an API over TLS, no file); tasks on Ray see the setting as configured (:func:`ray_session`)."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    from flows.kept_api import state_dir
    from flows.loopback_tls import ca_file_for

    global _CA_REPLACED
    try:
        path = ca_file_for(api_url, state_dir())
    except Exception:  # noqa: BLE001 - a saving, never a reason for a command to fail
        log.debug("no loopback CA file", exc_info=True)
        path = None
    if not path:
        return {}
    _CA_REPLACED = (PREFECT_API_SSL_CERT_FILE.value(), os.environ.get("PREFECT_API_SSL_CERT_FILE"))
    return {PREFECT_API_SSL_CERT_FILE: path}


@contextlib.contextmanager
def _ca_as_configured() -> Iterator[None]:
    """Prefect's CA file setting as it was before :func:`_loopback_ca`, for tasks that may run on
    other machines (on Ray), where the loopback file does not exist."""
    if _CA_REPLACED is None:
        yield
        return
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, temporary_settings

    value, exported = _CA_REPLACED
    current = os.environ.pop("PREFECT_API_SSL_CERT_FILE", None)
    if exported is not None:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = exported
    try:
        with temporary_settings(updates={PREFECT_API_SSL_CERT_FILE: value}):
            yield
    finally:
        os.environ.pop("PREFECT_API_SSL_CERT_FILE", None)
        if current is not None:
            os.environ["PREFECT_API_SSL_CERT_FILE"] = current


def _export(values: dict[str, str]) -> list[str]:
    for k, v in values.items():
        os.environ[k] = v
    return list(values)


def _unexport(names: list[str]) -> None:
    global _CA_REPLACED
    for k in names:
        os.environ.pop(k, None)
    _CA_REPLACED = None


def _announce() -> None:
    if ANNOUNCE_API is not None and API_IN_USE:
        try:
            ANNOUNCE_API(API_IN_USE)
        except Exception:  # noqa: BLE001 - a display must never fail the run
            log.debug("announcing the Prefect API failed", exc_info=True)


def _prefects_own_server():
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return server


@contextlib.contextmanager
def ray_session(runtime: RuntimeParams) -> Iterator[None]:
    """Start (or join) Ray once for a whole flow run; its stage subflows reuse it.

    Prefect's Ray task runner reuses an initialised Ray and leaves it running,
    so initialising here lets every stage share one local Ray (or one cluster
    connection) instead of starting one per stage.
    """
    _restore_command_sigterm()  # over the flow engine's, installed when the flow run started
    from rhapso_core.io.chunk_cache import caching_decoded_chunks

    # One cache of decoded chunks for what runs in this process, which reads the same tiles again
    # and again: every task when they run in threads; with Ray, the steps the flow runs itself
    # (parameter resolution, the image checks and overlap fits, each solve's after-solve check,
    # QC). Ray workers, other processes, never see it.
    cache = int(runtime.read_cache_mb * 1024**2)
    if not runtime.use_ray:
        from flows.blas_threads import one_blas_thread

        # Tasks in threads of this process: one BLAS thread each, as on Ray.
        with one_blas_thread(), caching_decoded_chunks(cache):
            yield
        return
    # Tasks on Ray may run on other machines, where the loopback CA file is not: the setting as configured.
    with _ca_as_configured(), caching_decoded_chunks(cache):
        yield from _ray_session(runtime)


def _ray_session(runtime: RuntimeParams) -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if runtime.ray_address:
        kwargs["address"] = runtime.ray_address
    else:
        if runtime.num_cpus:
            kwargs["num_cpus"] = runtime.num_cpus
        if runtime.object_store_memory_gb:
            kwargs["object_store_memory"] = int(runtime.object_store_memory_gb * 1024**3)
    log.info("starting Ray (%s)", runtime.ray_address or "local")
    with _ray_keeps_command_sigterm():
        ray.init(**kwargs)
    _restore_command_sigterm()
    try:
        yield
    finally:
        ray.shutdown()


def _restore_command_sigterm() -> None:
    """Put the command's SIGTERM handler back in place.

    Prefect's flow engine (at the start of a flow run) and ``ray.init`` each install
    their own: Prefect's reports the run crashed through the API first (minutes of
    retries when the signal also stopped the local API), Ray's calls ``sys.exit``.
    A command that stops cleanly by itself (``rhapso_cli.interrupt``) keeps its own.
    """
    import signal
    import threading

    if COMMAND_SIGTERM_HANDLER is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, COMMAND_SIGTERM_HANDLER)


@contextlib.contextmanager
def _ray_keeps_command_sigterm() -> Iterator[None]:
    """While ``ray.init`` runs (seconds), a SIGTERM must reach the command's handler, not the
    ``sys.exit`` handler Ray installs early in its start-up (a private hook, so guarded)."""
    utils = None
    if COMMAND_SIGTERM_HANDLER is not None:
        try:
            from ray._private import utils
        except ImportError:
            utils = None
    original = getattr(utils, "set_sigterm_handler", None) if utils is not None else None
    if original is None:
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def choose_runtime(xml: str, p, stages: tuple[str, ...]):
    """``(params, choice)``: the run's parameters with ``runtime.use_ray`` set to where its
    tasks go (:func:`rhapso_core.executor.choose_executor`: threads for a small job the
    planner says fits this process, else Ray), and the choice, which the run reports."""
    import sys

    from flows.progress import note
    from rhapso_core.executor import choose_executor

    # prefect_ray leaves a lazy "ray" in sys.modules; reading its attributes imports Ray (0.3-0.4 s).
    # Ray cannot be running here unless its worker module has been imported.
    ray = sys.modules.get("ray") if "ray._private.worker" in sys.modules else None
    running = bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())
    choice = choose_executor(xml, p, stages, ray_running=running)
    log.info(choice.line())
    note(choice.line())
    if choice.use_ray != p.runtime.use_ray:
        p = p.model_copy(update={"runtime": p.runtime.model_copy(update={"use_ray": choice.use_ray})})
    return p, choice


def stage_runner(runtime: RuntimeParams):
    """Task runner for a stage subflow inside :func:`ray_session`."""
    if not runtime.use_ray:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=runtime.num_cpus or os.cpu_count())
    from prefect_ray import RayTaskRunner

    return RayTaskRunner()


def worker_slots(runtime: RuntimeParams) -> int:
    """How many tasks can run at once: the Ray cluster's CPUs inside :func:`ray_session`,
    else ``runtime.num_cpus`` or this machine's cores."""
    if runtime.use_ray:
        import ray

        if ray.is_initialized():
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, int(runtime.num_cpus or os.cpu_count() or 1))


def current_run_id() -> str | None:
    """The Prefect flow run id (recorded in output locks), or None outside a flow run."""
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return str(run_id) if run_id else None
