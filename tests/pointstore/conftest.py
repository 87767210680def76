"""Fixtures for the point store tests: sample points and an S3 endpoint (moto)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest


def make_points(n: int, seed: int, id_offset: int = 0) -> dict[str, np.ndarray]:
    """Random points with awkward values (sub-voxel, negative, large) to catch any rounding."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-5.0, 2048.0, size=(n, 3))
    if n:
        loc[0] = [0.1 + 2e-13, -0.3333333333333333, 1e6 + 0.123456789]
    return {
        # Non-contiguous, shuffled ids: indices and ids must not be confused.
        "ids": (rng.permutation(n) * 3 + 7 + id_offset).astype(np.int64),
        "loc_xyz": loc,
        "intensity": rng.uniform(0, 65535, n).astype(np.float32),
        "dog": rng.normal(0, 0.05, n).astype(np.float32),
    }


@pytest.fixture
def points_factory():
    return make_points


@pytest.fixture(scope="session")
def _pointstore_moto():
    """Our own moto S3 server, used when the shared ``moto_s3`` fixture is absent."""
    import boto3  # in the test extra with moto[server]: missing, these tests fail rather than skip
    import moto.server as server_mod
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = "pointstore-tests"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            mp.setenv("AWS_ENDPOINT_URL", endpoint)
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
                Bucket=bucket
            )
            yield SimpleNamespace(
                endpoint_url=endpoint,
                bucket=bucket,
                storage_options={"endpoint_url": endpoint, "key": "testing", "secret": "testing"},
            )
    finally:
        server.stop()


@pytest.fixture
def s3_prefix(request):
    """``(s3://bucket/unique-prefix, storage_options)`` on the shared or our own moto server."""
    try:
        s3 = request.getfixturevalue("moto_s3")
    except pytest.FixtureLookupError:
        s3 = request.getfixturevalue("_pointstore_moto")
    return f"s3://{s3.bucket}/pointstore-{uuid.uuid4().hex[:8]}", dict(s3.storage_options)
