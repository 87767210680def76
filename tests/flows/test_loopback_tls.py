"""The one-certificate CA file Prefect's clients of a local plain-HTTP API get (flows/loopback_tls.py):
written once, checked on each use, never for an API over TLS, and not for tasks on Ray."""

import os
import ssl

import pytest

from flows import loopback_tls, runtime


def test_http_api_gets_a_small_loadable_ca_file(tmp_path):
    path = loopback_tls.ca_file_for("http://127.0.0.1:4200/api", tmp_path)
    assert path == str(tmp_path / loopback_tls.FILE_NAME)
    data = open(path, "rb").read()
    assert data.count(b"BEGIN CERTIFICATE") == 1
    ssl.create_default_context(cafile=path)  # what Prefect's client does with it
    assert loopback_tls.ca_file_for("http://127.0.0.1:4200/api", tmp_path) == path  # reused


def test_an_api_over_tls_keeps_prefects_setting(tmp_path):
    assert loopback_tls.ca_file_for("https://api.prefect.cloud/api/accounts/x", tmp_path) is None
    assert not (tmp_path / loopback_tls.FILE_NAME).exists()


def test_a_damaged_file_is_written_again(tmp_path):
    (tmp_path / loopback_tls.FILE_NAME).write_text("-----BEGIN CERTIFICATE-----\ncut short")
    path = loopback_tls.ca_file_for("http://127.0.0.1:1/api", tmp_path)
    ssl.create_default_context(cafile=path)


def test_no_file_possible_leaves_the_setting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert loopback_tls.ca_file_for("http://127.0.0.1:1/api", blocker / "sub") is None


def test_tasks_on_ray_see_the_setting_as_configured(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, temporary_settings

    monkeypatch.setenv("RHAPSO_LOCAL_API_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    before = PREFECT_API_SSL_CERT_FILE.value()
    ca = runtime._loopback_ca("http://127.0.0.1:1/api")
    try:
        assert ca == {PREFECT_API_SSL_CERT_FILE: str(tmp_path / loopback_tls.FILE_NAME)}
        exported = runtime._export({k.name: v for k, v in ca.items()})
        with temporary_settings(updates=ca):
            assert PREFECT_API_SSL_CERT_FILE.value() == ca[PREFECT_API_SSL_CERT_FILE]
            with runtime._ca_as_configured():
                assert PREFECT_API_SSL_CERT_FILE.value() == before
                assert "PREFECT_API_SSL_CERT_FILE" not in os.environ
            assert os.environ["PREFECT_API_SSL_CERT_FILE"] == ca[PREFECT_API_SSL_CERT_FILE]
        runtime._unexport(exported)
    finally:
        runtime._CA_REPLACED = None
        os.environ.pop("PREFECT_API_SSL_CERT_FILE", None)
    assert runtime._CA_REPLACED is None


@pytest.mark.parametrize("url", ["https://127.0.0.1:1/api"])
def test_no_replacement_recorded_for_tls(url, tmp_path, monkeypatch):
    monkeypatch.setenv("RHAPSO_LOCAL_API_DIR", str(tmp_path))
    assert runtime._loopback_ca(url) == {}
    assert runtime._CA_REPLACED is None
