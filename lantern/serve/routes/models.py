"""/v1/models: the served models, with what a client needs to size its requests."""

from __future__ import annotations

from fastapi import APIRouter

from lantern.serve import openapi
from lantern.serve.routes.state import Registry

router = APIRouter()


@router.get("/v1/models", responses=openapi.responses(openapi.ModelList, 400, 401, 500))
async def models(registry: Registry) -> dict:
    return {"object": "list", "data": [
        {"id": m.name, "object": "model", "created": m.created, "owned_by": "lantern",
         "context_length": m.context_length, "max_depth": m.max_depth,
         "vocab_size": m.tokenizer.vocab_size} for m in registry]}
