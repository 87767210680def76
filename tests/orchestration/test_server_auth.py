"""Server authentication as docs/deploy.md describes it: PREFECT_SERVER_API_AUTH_STRING on the
server, PREFECT_API_AUTH_STRING on every client (HTTP basic auth)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

import procs

pytestmark = pytest.mark.slow

AUTH = "rhapso:s3cret-pass"

RUN_FLOW = """
import sys
from prefect import flow

@flow
def hello() -> int:
    return 42

assert hello.with_options(flow_run_name=sys.argv[1])() == 42
"""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    server = procs.start_prefect_server(tmp_path_factory.mktemp("prefect-auth"), auth=AUTH)
    try:
        yield server
    finally:
        server.stop()


def _run_flow(env: dict, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_FLOW, name], env=env, cwd=procs.REPO_ROOT,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_rest_needs_credentials(auth_server):
    status, _ = auth_server.request("POST", "/flow_runs/filter", {}, auth=None)
    assert status == 401
    status, _ = auth_server.request("POST", "/flow_runs/filter", {}, auth="rhapso:wrong")
    assert status == 401
    status, body = auth_server.request("POST", "/flow_runs/filter", {})  # with the right user:pass
    assert status == 200 and isinstance(body, list)


def test_client_with_auth_string_creates_flow_runs(auth_server):
    name = f"auth-{uuid.uuid4().hex[:8]}"
    r = _run_flow(auth_server.client_env(), name)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    status, runs = auth_server.request("POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
    assert status == 200 and [x["state_type"] for x in runs] == ["COMPLETED"], runs

    # The same client without the auth string is refused and creates nothing.
    env = auth_server.client_env()
    env.pop("PREFECT_API_AUTH_STRING")
    refused = f"noauth-{uuid.uuid4().hex[:8]}"
    r = _run_flow(env, refused)
    assert r.returncode != 0 and "401" in (r.stdout + r.stderr), r.stdout[-2000:] + r.stderr[-2000:]
    status, runs = auth_server.request("POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": [refused]}}})
    assert status == 200 and runs == []


def test_cli_event_emit_with_auth(auth_server):
    """`prefect event emit` as docs/deploy.md shows it, through an authenticated server."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(
        [str(procs.BIN / "prefect"), "event", "emit", "dataset.probed", "--resource-id", f"rhapso.dataset.{name}",
         "--payload", '{"uri": "s3://bucket/acq/dataset.xml"}'],
        env=auth_server.client_env(), cwd=procs.REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, page = auth_server.request("POST", "/events/filter", {
            "filter": {"event": {"name": ["dataset.probed"]}, "resource": {"id": [f"rhapso.dataset.{name}"]}},
            "limit": 5})
        assert status == 200, page
        if page["events"]:
            break
        time.sleep(1)
    assert [e["payload"] for e in page["events"]] == [{"uri": "s3://bucket/acq/dataset.xml"}], page
