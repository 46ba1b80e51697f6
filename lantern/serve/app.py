"""The ASGI app: the endpoint routers (`lantern.serve.routes`), the gatekeeper before them, and
the error handlers behind them.

Every refusal is an OpenAI-style error object with a 4xx status; a bug answers 500 with an
error object (never a traceback) and the server keeps serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lantern.serve import openapi
from lantern.serve.errors import (
    APIError,
    api_error_handler,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from lantern.serve.gatekeeper import LOOPBACK_HOSTS, Gatekeeper
from lantern.serve.limits import ServeLimits
from lantern.serve.metrics import EndpointLabels, ServerMetrics
from lantern.serve.registry import ModelRegistry
from lantern.serve.routes import ROUTERS, playground


def create_app(registry: ModelRegistry, limits: ServeLimits | None = None,
               api_key: str | None = None, metrics: ServerMetrics | None = None,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    """The server for `registry`'s models; the routes reach `registry`, `limits` and `metrics`
    through `app.state` (`lantern.serve.routes.state`)."""
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
    app.mount("/static", playground.static_files(), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(Gatekeeper, api_key=api_key, max_body_bytes=limits.max_body_bytes,
                       metrics=metrics, labels=EndpointLabels(app.routes),
                       allowed_hosts=allowed_hosts)
    app.openapi = lambda: openapi.schema(app)  # what fuzzers and client generators read
    app.state.registry, app.state.limits, app.state.metrics = registry, limits, metrics
    return app
