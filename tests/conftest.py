"""Repository-wide shared test fixtures (keep this file to fixtures only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server with one empty bucket.

    ``storage_options`` are complete s3fs options (credentials + endpoint) that
    work whether or not ``AWS_ENDPOINT_URL`` is set. s3fs instance caches are
    cleared when the server starts and stops; a test that changes AWS_* variables
    should add ``"skip_instance_cache": True`` to the options it builds.
    """

    endpoint_url: str
    bucket: str
    key: str
    secret: str
    region: str
    storage_options: dict = field(default_factory=dict)

    def uri(self, *parts: str) -> str:
        """``s3://<bucket>/<parts joined with />``."""
        return "/".join([f"s3://{self.bucket}", *(p.strip("/") for p in parts if p)])


def _clear_s3fs_cache() -> None:
    # s3fs caches filesystem instances per argument set: one made before the
    # endpoint changed would keep talking to the old endpoint.
    import s3fs

    _close_s3fs_sessions(s3fs.S3FileSystem)
    s3fs.S3FileSystem.clear_instance_cache()


def _zarr_loop():
    try:
        from zarr.core.sync import _get_loop

        return _get_loop()
    except Exception:
        return None


def _close_s3fs_sessions(cls) -> None:
    # Closed here, while their event loops still run: left to the garbage collector at
    # exit, each instance's aiohttp session is reported as an "Unclosed client session".
    import fsspec.asyn

    for fs in list(getattr(cls, "_cache", {}).values()):
        client = getattr(fs, "_s3", None)
        # an asynchronous instance (zarr's stores) lives on zarr's I/O loop
        loop = _zarr_loop() if getattr(fs, "asynchronous", False) else getattr(fs, "_loop", None)
        if client is None or loop is None or loop.is_closed() or not loop.is_running():
            continue
        try:
            fsspec.asyn.sync(loop, client.close, timeout=10)
            fs._s3 = None
        except Exception:  # best effort: a session that cannot close only costs a warning
            pass


@pytest.fixture(scope="session")
def moto_s3():
    """Start moto's S3 server on 127.0.0.1 (free port), point AWS_* at it, create a bucket.

    The environment is restored and the server stopped at the end of the session.
    """
    import boto3  # moto[server] and boto3 are in the test extra: missing, the S3 tests fail, not skip
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    key, secret, region = "testing-key", "testing-secret", "us-east-1"
    mp = pytest.MonkeyPatch()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        mp.delenv(var, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
    mp.setenv("AWS_DEFAULT_REGION", region)
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    _clear_s3fs_cache()
    bucket = "rhapso-test-" + uuid.uuid4().hex[:8]
    try:
        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret, region_name=region
        ).create_bucket(Bucket=bucket)
        yield MotoS3(
            endpoint_url=endpoint,
            bucket=bucket,
            key=key,
            secret=secret,
            region=region,
            storage_options={
                "key": key,
                "secret": secret,
                "client_kwargs": {"endpoint_url": endpoint, "region_name": region},
            },
        )
    finally:
        _clear_s3fs_cache()
        mp.undo()
        server.stop()


@pytest.fixture
def s3_prefix(moto_s3) -> str:
    """A fresh ``s3://`` prefix in the moto bucket for one test."""
    return moto_s3.uri("t-" + uuid.uuid4().hex[:12])


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; installed once with apt-get only when RHAPSO_INSTALL_CHROMIUM=1 (CI)."""
    if not Path(CHROMIUM).exists() and os.environ.get("RHAPSO_INSTALL_CHROMIUM") == "1" and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=False, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, env=env, capture_output=True, timeout=900)
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (set RHAPSO_INSTALL_CHROMIUM=1 to let the tests apt-get install it)")
    return CHROMIUM


@pytest.fixture(scope="session", autouse=True)
def _temporary_prefect_api_per_command():
    """Commands the tests run start a temporary Prefect API each, stopped with them, and run in
    a fresh process each: the local API and the process kept between commands (flows/kept_api.py,
    rhapso_cli/kept_process.py, both the default) would outlive the session, in the user's Prefect
    home. tests/flows/test_kept_api.py and tests/cli/test_kept_process.py test them, in folders of
    their own."""
    names = ("RHAPSO_LOCAL_API_IDLE_S", "RHAPSO_KEPT_PROCESS_IDLE_S")
    previous = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = "0"
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def prefect_harness():
    """ONE real Prefect API (temporary database) for the whole test session.

    Prefect's log and event workers are per-process singletons bound to the API they
    first talk to: a second harness in the same session would receive no logs (the
    reliability secret scan would read an empty database). Every test that runs flows
    in-process uses this fixture, or one built on it.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


# --- heavy tests ---------------------------------------------------------------------------
# End-to-end flows that repeat what faster tests already cover piece by piece (minutes each on
# two cores). CI stays under its time budget without them; they run with RHAPSO_HEAVY_TESTS=1
# or when selected explicitly (-m heavy). Deselected, not skipped: the summary says how many.


def pytest_collection_modifyitems(config, items):
    import os

    if os.environ.get("RHAPSO_HEAVY_TESTS") or "heavy" in (config.getoption("-m") or ""):
        return
    heavy = [it for it in items if it.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [it for it in items if not it.get_closest_marker("heavy")]


# --- aiohttp sessions left open -------------------------------------------------------------
# s3fs instances made with skip_instance_cache (tests that change credentials or endpoints)
# are not in s3fs's instance cache, so _close_s3fs_sessions never sees them; their aiohttp
# sessions were reported as "Unclosed client session" after the run's summary.


def pytest_sessionfinish(session, exitstatus):
    import asyncio
    import gc
    import sys

    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return
    for obj in gc.get_objects():
        if not isinstance(obj, aiohttp.ClientSession) or obj.closed:
            continue
        loop = getattr(obj, "_loop", None)
        try:
            if loop is not None and loop.is_running():
                asyncio.run_coroutine_threadsafe(obj.close(), loop).result(timeout=5)
            elif obj.connector is not None:  # its loop has stopped: drop the connector synchronously
                obj.connector._close()
                obj._connector = None
        except Exception:  # best effort: at worst the warning comes back
            pass


# A lossless cut of brainglobe/cellfinder's real mouse-brain planes, in the repository
# (tests/fixtures/real/SOURCES.txt: source, licence, how it was cut): a fresh clone runs the tests.
REAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real"


@pytest.fixture(scope="session")
def cellfinder_ch0() -> Path:
    """Folder of 24 single-plane TIFFs, 256 x 384 uint16 each (z y x voxel 5 x 2 x 2 um)."""
    folder = REAL_FIXTURES / "cellfinder_ch0_crop"
    assert len(list(folder.glob("ch*.tif"))) == 24, f"{folder}: the repository's real-volume fixture is incomplete"
    return folder


@pytest.fixture(scope="session")
def cellfinder_plane() -> Path:
    """One whole plane (510 x 667 uint16, pixel 2 x 2 um) of the same volume."""
    path = REAL_FIXTURES / "cellfinder_ch0_plane15.tif"
    assert path.is_file(), f"{path}: the repository's real-plane fixture is missing"
    return path
