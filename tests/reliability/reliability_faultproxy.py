"""A fault-injecting HTTP proxy for S3 tests: forwards to an S3 endpoint, fails every Nth request.

Test-only helper (imported by this folder's conftest). A failed request gets an
S3-style ``503 SlowDown`` *before* it is forwarded, so the failure has no side
effect on the server: exactly what a throttling S3 front end does.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade"}
_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate (injected fault).</Message></Error>")


class FaultProxy:
    """``ThreadingHTTPServer`` on 127.0.0.1 forwarding every request to ``upstream``.

    Parameters
    ----------
    upstream : str
        ``http://host:port`` of the real S3 endpoint (moto's server).
    fail_every : int
        When faults are on, request number k (1-based, counted over all requests
        while faults are on) fails with 503 if ``k % fail_every == 0``. 0 disables.
    """

    def __init__(self, upstream: str, fail_every: int = 0):
        u = urlsplit(upstream)
        self.upstream_host, self.upstream_port = u.hostname, u.port
        self.fail_every = fail_every
        self.enabled = False
        self.lock = threading.Lock()
        self.requests = 0
        self.faulted_requests = 0
        self.failed = 0
        self.failed_log: list[str] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self):
                body = self._body()
                with proxy.lock:
                    proxy.requests += 1
                    fail = False
                    if proxy.enabled and proxy.fail_every:
                        proxy.faulted_requests += 1
                        fail = proxy.faulted_requests % proxy.fail_every == 0
                        if fail:
                            proxy.failed += 1
                            proxy.failed_log.append(f"{self.command} {self.path}")
                if fail:
                    with proxy.lock:
                        proxy.log.append((self.command, self.path, 503))
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOWDOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(_SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    with proxy.lock:
                        proxy.log.append((self.command, self.path, resp.status))
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        # HEAD keeps the object's Content-Length (clients read sizes from it).
                        if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                            self.send_header(k, v)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def faults(self, fail_every: int):
        """Context manager: inject faults (every ``fail_every``-th request) inside the block."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            with self.lock:
                self.fail_every, self.enabled, self.faulted_requests = fail_every, True, 0
                self.failed, self.failed_log = 0, []
            try:
                yield self
            finally:
                with self.lock:
                    self.enabled = False

        return cm()
