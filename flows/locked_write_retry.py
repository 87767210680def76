"""The local Prefect API retries a write that SQLite refused as locked, before its client does.

Prefect's server answers a request that hit "database is locked" (another write held SQLite's
lock: the server's own event persister, a log batch, a second flow) with 503, and Prefect's
client waits 2**n seconds (2, 4, 8, ... with jitter) before sending it again. The lock is held
for milliseconds, the wait is seconds: measured on ``rhapso stitch`` of 6 small tiles against
the kept local API, a subflow's creation refused once cost 2.2-2.4 s of a 10 s run.

This wraps the local API's application (:mod:`flows.local_api_app`: the kept and the temporary
server) so that such a write is run again by the server after 20 ms, then 50, 100, 200, 400 and
800 ms (1.6 s in all); only if it is still refused does the client see the 503, and then waits as
before (its own retries are unchanged). A request is re-run only where Prefect's handler said
the error is retryable, the same condition under which the client would re-send it: the failed
attempt's transaction was rolled back, so running it again is what the client's retry would do,
sooner. Reads (GET, HEAD) and websockets pass through; a response other than that 503 is passed
on as it is produced (streaming included).
"""

from __future__ import annotations

import asyncio
import json
import logging

log = logging.getLogger(__name__)

#: Seconds before each repeat of a refused write.
DELAYS_S = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
#: Prefect's answer to a retryable exception (``custom_internal_exception_handler``).
RETRYABLE_BODY = {"exception_message": "Service Unavailable"}


class RetryLockedWrites:
    """ASGI middleware around Prefect's API application (module docstring)."""

    def __init__(self, app, delays=DELAYS_S) -> None:
        self.app = app
        self.delays = tuple(delays)

    def __getattr__(self, name):  # the wrapped FastAPI application's attributes (state, routes, ...)
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending its body
                await self.app(scope, _replay(bytes(body), receive, message), send)
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        for attempt, delay in enumerate((*self.delays, None)):
            # A fresh scope each time: Starlette's routing writes into it (a mount adds its prefix to root_path)
            refused = await self._attempt(dict(scope), _replay(bytes(body), receive), send, last=delay is None)
            if not refused:
                return
            log.debug("%s %s refused (database locked), attempt %d: again in %.2f s", scope.get("method"),
                      scope.get("path"), attempt + 1, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, scope, receive, send, last: bool) -> bool:
        """Run the request once; True (nothing sent) where it was refused as retryable and is not ``last``."""
        held: list[dict] = []
        state = {"hold": False}

        async def capture(message):
            if message["type"] == "http.response.start":
                state["hold"] = message["status"] == 503 and not last
                if not state["hold"]:
                    await send(message)
                    return
                held.append(message)
                return
            if state["hold"]:
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            # Starlette's outermost middleware sends the exception handler's answer, then raises the
            # exception again for the server to log: a refusal held here is retried; else as before.
            if state["hold"] and _retryable(_body(held)):
                return True
            for message in held:
                await send(message)
            raise
        if not state["hold"]:
            return False
        if _retryable(_body(held)):
            return True
        for message in held:  # another 503: the client's to handle, unchanged
            await send(message)
        return False


def _body(messages: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def _retryable(body: bytes) -> bool:
    try:
        return json.loads(body) == RETRYABLE_BODY
    except ValueError:
        return False


def _replay(body: bytes, receive, first: dict | None = None):
    """A ``receive`` that gives the request's body once, then waits for the client's own messages."""
    sent = [False]

    async def again():
        if not sent[0]:
            sent[0] = True
            return first if first is not None else {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
