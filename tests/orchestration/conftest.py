"""Fixtures of the orchestration tests: a real Prefect server and tiny datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs  # noqa: E402

from orch_data import DEV_OVERRIDES, write_tiny_dataset  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny dataset shared by tests that only read it (outputs go elsewhere)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("orch-data") / "tiny")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """``prefect server start`` on 127.0.0.1:<free port> with its own PREFECT_HOME, for the session."""
    server = procs.start_prefect_server(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_settings(prefect_server):
    """Point this process's Prefect client at the session server for one test."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server
