"""/v1/chat/completions: messages rendered with the model's chat format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lantern.serve import openapi
from lantern.serve.answer import answer
from lantern.serve.jobs import prepare_chat
from lantern.serve.responses import chat_body
from lantern.serve.routes.state import Limits, Metrics, Registry
from lantern.serve.schemas import ChatCompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions", responses=openapi.responses(
    openapi.ChatCompletion, 400, 401, 404, 413, 429, 500, stream=True))
async def chat_completions(body: ChatCompletionRequest, request: Request, registry: Registry,
                           limits: Limits, metrics: Metrics) -> Response:
    job = prepare_chat(body, registry.get(body.model), limits)
    return await answer(job, body.stream, chat_body, request, metrics)
