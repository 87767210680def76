"""A small CA file for Prefect's clients of a local plain-HTTP API (its start cost, not its security).

Every Prefect API client (``PrefectClient``, ``SyncPrefectClient``: 8-10 in a ``rhapso stitch``, among
them the one made for each stage subflow's run while the command waits) builds a TLS context from
``PREFECT_API_SSL_CERT_FILE``, else from certifi's bundle of ~150 root certificates: 25 ms each on a
quiet machine, 60 ms under load, 0.3-0.6 s of a command's CPU. An ``http://`` API never uses that
context (no TLS on the connection), so for the local servers the commands use (``http://127.0.0.1``)
``PREFECT_API_SSL_CERT_FILE`` points at a file holding one certificate (certifi's first), whose
context costs 0.5 ms. The setting is Prefect's own and only reaches its API connections (the
clients, the version check, the events websocket), all to that URL. A Ray cluster given by address
runs its tasks with the setting as it was (the file is on this machine only: ``flows.runtime.ray_session``).
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

FILE_NAME = "loopback-ca.pem"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.S)


def ca_file_for(api_url: str, folder: Path) -> str | None:
    """The CA file to give Prefect's clients of ``api_url``, or None to leave Prefect's setting as it
    is (an API over TLS, or no file could be written in ``folder``). A CA file configured by the user
    (``PREFECT_API_SSL_CERT_FILE``, ``SSL_CERT_FILE``) is replaced too: no connection to an
    ``http://`` API reads it."""
    if urlsplit(api_url).scheme != "http":
        return None
    path = folder / FILE_NAME
    if _loads(path):
        return str(path)
    try:
        import certifi

        first = _PEM.search(Path(certifi.where()).read_bytes())
        if first is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        tmp.write_bytes(first.group(0))
        os.replace(tmp, path)  # concurrent commands write the same bytes; readers see a whole file
    except (OSError, ImportError):
        return None
    return str(path) if _loads(path) else None


def _loads(path: Path) -> bool:
    # Checked on each use (0.5 ms): Prefect fails every client on a file it cannot load.
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError, ValueError):
        return False
    return True
