"""The ASGI app: OpenAI-compatible endpoints, tokenizer endpoints, metrics and the playground.

Every refusal is an OpenAI-style error object with a 4xx status; a bug answers 500 with an
error object (never a traceback) and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lantern.serve import jobs, openapi
from lantern.serve.errors import (
    APIError,
    api_error_handler,
    error_body,
    error_response,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from lantern.serve.limits import ServeLimits
from lantern.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from lantern.serve.registry import ModelRegistry
from lantern.serve.scheduler import RowFailed
from lantern.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # the Host names served by default, any port
PUBLIC_PATHS = ("/", "/health", "/favicon.ico")  # and /static/: the playground asks for the key
DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed request checks its client
ENDPOINTS = ("/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
             "/tokenize", "/detokenize")


async def _host_allowed(scope: Scope, _receive: Receive, _send: Send) -> None:
    scope["lantern.host_allowed"] = True


class Gatekeeper:
    """Pure ASGI middleware, before any parsing: the Host header, the API key, the body size,
    and the count of every answer by endpoint and status.

    The Host header is checked (by Starlette's TrustedHostMiddleware) so that a web page on
    another origin cannot reach a server without an API key through DNS rebinding: its requests
    carry the attacker's host name."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int,
                 metrics: ServerMetrics, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> None:
        self.app, self.api_key, self.max_body_bytes, self.metrics = app, api_key, max_body_bytes, metrics
        self.allowed_hosts = list(allowed_hosts)
        self.host_check = TrustedHostMiddleware(_host_allowed, self.allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "/static" if path.startswith("/static/") else "other"
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


def create_app(registry: ModelRegistry, limits: ServeLimits | None = None,
               api_key: str | None = None, metrics: ServerMetrics | None = None,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    limits = limits or ServeLimits()
    metrics = metrics or next(iter(registry)).scheduler.metrics

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        for served in registry:
            await served.scheduler.start()
        yield
        for served in registry:
            await served.scheduler.stop()

    app = FastAPI(title="LANTERN", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(Gatekeeper, api_key=api_key, max_body_bytes=limits.max_body_bytes,
                       metrics=metrics, allowed_hosts=allowed_hosts)
    static = files("lantern.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def playground() -> Response:
        return Response((static / "index.html").read_text(encoding="utf-8"), media_type="text/html")

    @app.get("/health", responses=openapi.responses(openapi.Health, 400, 500))
    async def health() -> dict:
        return {"status": "ok", "models": [m.name for m in registry]}

    @app.get("/metrics", response_class=Response,
             responses=openapi.responses(None, 400, 401, 500, media_type="text/plain"))
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", responses=openapi.responses(openapi.ModelList, 400, 401, 500))
    async def models() -> dict:
        return {"object": "list", "data": [
            {"id": m.name, "object": "model", "created": m.created, "owned_by": "lantern",
             "context_length": m.context_length, "max_depth": m.max_depth,
             "vocab_size": m.tokenizer.vocab_size} for m in registry]}

    @app.post("/tokenize", responses=openapi.responses(openapi.Tokens, 400, 401, 404, 413, 500))
    async def tokenize(body: TokenizeRequest) -> dict:
        tokenizer = registry.get(body.model).tokenizer
        ids = tokenizer.encode(body.content)
        if not body.with_pieces:
            return {"tokens": ids}
        return {"tokens": [{"id": i, "piece": tokenizer.decode([i])} for i in ids]}

    @app.post("/detokenize", responses=openapi.responses(openapi.Text, 400, 401, 404, 413, 500))
    async def detokenize(body: DetokenizeRequest) -> dict:
        tokenizer = registry.get(body.model).tokenizer
        bad = [i for i in body.tokens if i >= tokenizer.vocab_size]
        if bad:
            raise APIError(400, f"tokens: id {bad[0]} is outside the vocabulary (size "
                           f"{tokenizer.vocab_size})", param="tokens")
        return {"content": tokenizer.decode(body.tokens)}

    @app.post("/v1/completions", responses=openapi.responses(
        openapi.Completion, 400, 401, 404, 413, 429, 500, stream=True))
    async def completions(body: CompletionRequest, request: Request):
        served = registry.get(body.model)
        job = jobs.prepare_completion(body, served, limits)
        return await _answer(job, body.stream, jobs.completion_body, request)

    @app.post("/v1/chat/completions", responses=openapi.responses(
        openapi.ChatCompletion, 400, 401, 404, 413, 429, 500, stream=True))
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        served = registry.get(body.model)
        job = jobs.prepare_chat(body, served, limits)
        return await _answer(job, body.stream, jobs.chat_body, request)

    async def _answer(job: jobs.Job, stream: bool, build, request: Request):
        job.served.scheduler.check_capacity(job.num_choices)
        metrics.prompt_tokens.labels(job.served.name).inc(job.prompt_tokens)
        endpoint = request.url.path
        if stream:
            return EventSourceResponse(_sse(job, endpoint), sep="\n", ping=15)
        with metrics.latency.labels(endpoint).time():
            try:
                choices = await _unless_disconnected(jobs.collect(job), request)
            except RowFailed as exc:
                return error_response(500, str(exc))
        if choices is None:
            return Response(status_code=499)  # nobody is listening any more
        return JSONResponse(build(job, choices))

    async def _unless_disconnected(work, request: Request):
        """Await `work`; if the client leaves first, cancel it (freeing its rows) -> None."""
        task = asyncio.ensure_future(work)
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
                return None
        return task.result()

    async def _sse(job: jobs.Job, endpoint: str):
        with metrics.latency.labels(endpoint).time():
            try:
                async with aclosing(jobs.stream_chunks(job)) as chunks:
                    async for chunk in chunks:
                        # ASCII only: U+2028 or U+0085 in text must not look like a line end
                        yield {"data": json.dumps(chunk)}
            except APIError as exc:
                yield {"data": json.dumps(error_body(exc.status, exc.message, exc.param))}
            except RowFailed as exc:
                yield {"data": json.dumps(error_body(500, str(exc)))}
        yield {"data": "[DONE]"}

    app.openapi = lambda: openapi.schema(app)  # what fuzzers and client generators read
    app.state.registry, app.state.limits, app.state.metrics = registry, limits, metrics
    return app
