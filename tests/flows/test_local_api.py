"""The Prefect API a command runs against: a configured or background server is reused, else the
server started early (flows/local_api.py) serves the run and is stopped after it."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from flows import local_api


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


@pytest.fixture
def prefect_home(tmp_path, monkeypatch):
    home = tmp_path / "prefect-home"
    home.mkdir()
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH", "PREFECT_SERVER_API_HOST",
                 "PREFECT_SERVER_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    return home


def test_profile_settings_are_read_without_prefect(prefect_home):
    (prefect_home / "profiles.toml").write_text(
        'active = "work"\n[profiles.work]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n'
        '[profiles.ephemeral]\nPREFECT_SERVER_API_PORT = "4300"\n')
    assert local_api._setting("PREFECT_API_URL") == "http://10.0.0.5:4200/api"
    assert local_api._setting("PREFECT_SERVER_API_PORT") is None  # another profile's


def test_a_configured_api_means_no_early_server(monkeypatch):
    monkeypatch.setattr(local_api, "_configured_api_url", lambda: "http://10.0.0.5:4200/api")
    local_api.start_early()
    assert local_api.take_early() is None  # the command reuses the configured API


def test_background_server_found_by_pid_file_and_health(prefect_home, monkeypatch):
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PREFECT_SERVER_API_PORT", str(httpd.server_port))
        assert local_api.background_server_url() is None  # answering, but not started as a background server
        (prefect_home / "server.pid").write_text("12345")
        assert local_api.background_server_url() == f"http://127.0.0.1:{httpd.server_port}/api"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert local_api.background_server_url() is None  # PID file left behind, nothing answering


@pytest.mark.slow  # starts a Prefect API server (10-20 s on 2 cores)
def test_early_server_serves_the_run_then_stops(monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows import artifact_writer, artifacts, lean_flow
    from flows.runtime import prefect_api

    @flow
    def tiny() -> str:
        return get_current_settings().api.url

    @lean_flow.flow(name="local-api-artifacts")
    def noted(tag: str) -> str:
        artifact_writer.submit("a slow write", time.sleep, 0.5)  # still queued when the function returns
        artifacts.output_note("Local API", [tag], key=f"local-api-{tag}")
        return flow_run.id

    # No configured API (a test harness of this session may have set one), no background
    # server, and the profile's own database (a fresh PREFECT_HOME would first run every migration).
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(local_api, "background_server_url", lambda: None)
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        local_api.start_early()
        server = local_api._early
        assert server is not None and server.process.poll() is None
        try:
            with prefect_api() as url:
                assert local_api._early is None  # taken by the run
                assert url == server.api_url
                assert tiny() == url
                # No heartbeat thread to join at each flow run's end while our temporary server serves.
                assert get_current_settings().flows.heartbeat_frequency is None
                # Our server retries locked writes itself: the run's artifacts go to the background writer,
                # and a top-level run still ends with them written (flows/artifact_writer.py).
                assert artifact_writer._background[0] >= 1
                tag = f"t{time.monotonic_ns()}"
                run_id = noted(tag)
                with get_client(sync_client=True) as client:
                    found = client.read_artifacts(artifact_filter=ArtifactFilter(
                        key=ArtifactFilterKey(any_=[f"local-api-{tag}"])))
                assert len(found) == 1 and str(found[0].flow_run_id) == run_id
            assert artifact_writer._background[0] == 0
            assert server.process is None  # stopped with the run
        finally:
            server.stop()


def test_a_server_stopped_while_it_starts_ends_at_once(monkeypatch):
    """A command refused after the early start (or interrupted) may stop its server while
    Prefect is still being imported there; uvicorn defers SIGTERM until the application has started (3-10 s here),
    flows.local_api_app lets it end the process at once until then."""
    import time

    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = local_api.LocalAPIServer()
    try:
        time.sleep(1.0)  # uvicorn imported, its signal handlers installed; Prefect being imported
        assert server.process.poll() is None
        proc = server.process
        t = time.monotonic()
        server.stop()
        assert time.monotonic() - t < 1.5
        assert proc.returncode is not None
    finally:
        server.stop()


def test_servers_we_start_send_no_telemetry_unless_asked(monkeypatch):
    # The server starts before the command's own defaults are set: its environment carries the
    # opt-out itself; a user's explicit setting wins.
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    env = local_api.server_env()
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "PREFECT_API_URL" not in env
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    assert local_api.server_env()["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
