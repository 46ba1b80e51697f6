"""What the routes need of their server, as FastAPI dependencies: the objects `create_app` puts
on `app.state`, so a route module holds no server of its own and any app can include it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lantern.serve.limits import ServeLimits
from lantern.serve.metrics import ServerMetrics
from lantern.serve.registry import ModelRegistry


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _limits(request: Request) -> ServeLimits:
    return request.app.state.limits


def _metrics(request: Request) -> ServerMetrics:
    return request.app.state.metrics


Registry = Annotated[ModelRegistry, Depends(_registry)]
Limits = Annotated[ServeLimits, Depends(_limits)]
Metrics = Annotated[ServerMetrics, Depends(_metrics)]
