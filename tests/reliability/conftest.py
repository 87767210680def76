"""Fixtures of the reliability tests: one Prefect API, one Ray, S3 behind a fault proxy, datasets.

Order matters and is encoded in fixture dependencies: Ray workers inherit the
driver's environment *when Ray starts* (variables set later are not seen by
workers already running nor by the raylet that spawns new ones), so the AWS
variables (pointing at the fault proxy) and Prefect's result settings are set
before ``ray.init``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from reliability_helpers import DATASET, FIGURES, RUN_OVERRIDES  # noqa: E402

# Injected into every Ray worker at start (worker_process_setup_hook). Armed per
# test by marker files: with <MARK>/arm-<tag> present, the first call of the
# wrapped function in any worker claims <MARK>/killed-<tag> (O_EXCL: exactly once
# per arming) and SIGKILLs its own worker process. Defined by source so Ray
# ships it by value (this conftest is not importable in a worker).
_KILL_HOOK_SOURCE = r'''
def hook():
    import functools, os, signal

    def claim(tag):
        if not os.path.exists(os.path.join(MARK, "arm-" + tag)):
            return False
        try:
            fd = os.open(os.path.join(MARK, "killed-" + tag), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True

    from rhapso_core.pipeline import detect
    from rhapso_core.fusion import resume

    run_chunk = detect.run_chunk

    @functools.wraps(run_chunk)
    def run_chunk_then_die(*args, **kwargs):
        result = run_chunk(*args, **kwargs)
        if claim("detect"):  # the chunk was computed; its result dies with the worker
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    mark_done = resume.BlockMarkers.mark_done

    def data_written_marker_not(self, box):
        if claim("fuse"):  # the block's data is in the store, its completion marker is not
            os.kill(os.getpid(), signal.SIGKILL)
        return mark_done(self, box)

    detect.run_chunk = run_chunk_then_die
    resume.BlockMarkers.mark_done = data_written_marker_not
'''


@pytest.fixture(scope="session")
def rel_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
def rel_env(rel_tmp):
    """Isolated Prefect result storage, caches refreshed: every run in this folder computes.

    Without this, a run would take detection results cached by an earlier run of
    the same XML (in the user's ~/.prefect/storage) and a fault injected into
    detection would never fire.
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(rel_tmp / "prefect-results"))
    mp.setenv("PREFECT_TASKS_REFRESH_CACHE", "true")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def rel_s3(moto_s3, rel_env):
    """moto's S3 behind a fault proxy; AWS_ENDPOINT_URL points at the proxy, credentials unique."""
    import s3fs
    from reliability_faultproxy import FaultProxy

    proxy = FaultProxy(moto_s3.endpoint_url).start()
    secret = "rel-secret-" + uuid.uuid4().hex
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL", proxy.url)
    mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
    mp.setenv("AWS_MAX_ATTEMPTS", "5")  # botocore's default, made explicit
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield {"proxy": proxy, "bucket": moto_s3.bucket, "secret": secret, "moto": moto_s3}
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        mp.undo()
        proxy.stop()


@pytest.fixture(scope="session")
def rel_harness(rel_env, prefect_harness):
    """The session's Prefect API, with this folder's result storage and no cache reuse
    (otherwise detection results cached by earlier runs of the same XML are reused and
    a detection kill never fires)."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"],
                                     PREFECT_TASKS_REFRESH_CACHE: True}):
        yield


@pytest.fixture(scope="session")
def kill_marks(rel_tmp):
    d = rel_tmp / "kill-marks"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def rel_ray(rel_s3, rel_harness, kill_marks):
    """One local Ray (2 CPUs) for the session, started after the S3 and Prefect settings.

    The flows' ``ray_session`` joins an initialised Ray and leaves it running, so
    every Ray run of this folder shares it (and its worker setup hook).
    """
    import ray

    ns = {"MARK": str(kill_marks), "__name__": "rel_kill_hook"}
    exec(_KILL_HOOK_SOURCE, ns)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": ns["hook"]})
    try:
        yield ray
    finally:
        ray.shutdown()


def _write(root, **changes):
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    return write_dataset(root, SyntheticParams(**{**DATASET, **changes}))


@pytest.fixture(scope="session")
def rel_dataset(rel_tmp):
    """The end-to-end dataset (local); tests copy it before changing anything."""
    return _write(rel_tmp / "dataset")


@pytest.fixture(scope="session")
def write_dataset_copy(rel_tmp):
    """``make(name, **synthetic changes) -> DatasetPaths``: a fresh dataset in its own folder."""

    def make(name: str, **changes):
        root = rel_tmp / "variants" / name
        if root.exists():
            shutil.rmtree(root)
        return _write(root, **changes)

    return make


@pytest.fixture(scope="session")
def reference_run(rel_harness, rel_dataset, rel_tmp):
    """The clean local run every other run is compared with (tasks in threads)."""
    from flows.stitch import stitch

    out = rel_tmp / "reference"
    result = stitch(str(rel_dataset.xml), str(out), overrides=RUN_OVERRIDES + ["runtime.use_ray=false"])
    assert result["qc"]["verdict"] in ("pass", "warn"), result["qc"]["reasons"]
    return {"out": str(out), "result": result}


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.write_sep("-", "reliability figures")
        for k, v in FIGURES.items():
            terminalreporter.write_line(f"{k}: {v}")
