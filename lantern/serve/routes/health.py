"""What a monitor asks: is the server up (/health, open without the API key) and how is it
doing (/metrics, Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from lantern.serve import openapi
from lantern.serve.metrics import CONTENT_TYPE_LATEST
from lantern.serve.routes.state import Metrics, Registry

router = APIRouter()


@router.get("/health", responses=openapi.responses(openapi.Health, 400, 500))
async def health(registry: Registry) -> dict:
    return {"status": "ok", "models": [m.name for m in registry]}


@router.get("/metrics", response_class=Response,
            responses=openapi.responses(None, 400, 401, 500, media_type="text/plain"))
async def prometheus(metrics: Metrics) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
