"""/v1/completions: text (or token-id) prompts, as OpenAI's legacy completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lantern.serve import openapi
from lantern.serve.answer import answer
from lantern.serve.jobs import prepare_completion
from lantern.serve.responses import completion_body
from lantern.serve.routes.state import Limits, Metrics, Registry
from lantern.serve.schemas import CompletionRequest

router = APIRouter()


@router.post("/v1/completions", responses=openapi.responses(
    openapi.Completion, 400, 401, 404, 413, 429, 500, stream=True))
async def completions(body: CompletionRequest, request: Request, registry: Registry,
                      limits: Limits, metrics: Metrics) -> Response:
    job = prepare_completion(body, registry.get(body.model), limits)
    return await answer(job, body.stream, completion_body, request, metrics)
