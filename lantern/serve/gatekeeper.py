"""What every request meets before any parsing: the Host header, the API key, the body size,
and the count of every answer by endpoint and status."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from fastapi.responses import Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lantern.serve.errors import error_response
from lantern.serve.metrics import EndpointLabels, ServerMetrics

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # the Host names served by default, any port
PUBLIC_PATHS = ("/", "/health", "/favicon.ico")  # and /static/: the playground asks for the key


async def _host_allowed(scope: Scope, _receive: Receive, _send: Send) -> None:
    scope["lantern.host_allowed"] = True


class Gatekeeper:
    """Pure ASGI middleware, before any parsing: the Host header, the API key, the body size,
    and the count of every answer by endpoint (`labels`) and status.

    The Host header is checked (by Starlette's TrustedHostMiddleware) so that a web page on
    another origin cannot reach a server without an API key through DNS rebinding: its requests
    carry the attacker's host name."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int,
                 metrics: ServerMetrics, labels: EndpointLabels,
                 allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> None:
        self.app, self.api_key, self.max_body_bytes, self.metrics = app, api_key, max_body_bytes, metrics
        self.labels = labels
        self.allowed_hosts = list(allowed_hosts)
        self.host_check = TrustedHostMiddleware(_host_allowed, self.allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self.labels(scope["path"])
        status_seen: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        try:
            refusal = await self._host_refusal(scope, receive)
            if refusal is None:
                refusal = self._refusal(scope)
            if refusal is None:
                receive, refusal = await self._bounded_body(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            status = str(status_seen[0]) if status_seen else "disconnected"
            self.metrics.requests.labels(endpoint, status).inc()
            if not status_seen or status_seen[0] >= 400:
                self.metrics.errors.labels(endpoint, status).inc()

    async def _host_refusal(self, scope: Scope, receive: Receive) -> Response | None:
        async def discard(_message: Message) -> None:
            pass

        await self.host_check(scope, receive, discard)
        if scope.pop("lantern.host_allowed", False):
            return None
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        return error_response(400, f"the Host header {host!r} is not served here (allowed: "
                              f"{', '.join(self.allowed_hosts)}); start the server with "
                              "--allowed_hosts NAME to serve that name")

    def _refusal(self, scope: Scope) -> Response | None:
        path = scope["path"]
        if self.api_key is None or path in PUBLIC_PATHS or path.startswith("/static/"):
            return None
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, key = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            return None
        return error_response(401, "missing or wrong API key: send the header "
                              "'Authorization: Bearer KEY'", code="invalid_api_key")

    async def _bounded_body(self, scope: Scope, receive: Receive):
        """Read the body up to the limit (413 beyond it) and replay it to the app."""
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive, None
        too_big = error_response(413, f"the request body is larger than {self.max_body_bytes} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return receive, too_big
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return receive, Response(status_code=400)
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return receive, too_big
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return replay, None
