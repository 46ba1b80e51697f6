"""What the server answers, as OpenAPI declares it: response bodies and error statuses.

`lantern serve` does not publish its schema (`/openapi.json` is off), but `create_app(...).openapi()`
is what API fuzzers and client generators read, so it must say what the server really sends:
each endpoint's body, the error object behind every refusal (400, never FastAPI's 422), and
Server-Sent Events for streamed completions. Bodies are declared, not enforced: the handlers
build them, and the fuzzing test checks every answer against these declarations.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

FinishReason = Literal["stop", "length"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LegacyLogprobs(BaseModel):
    """Completions' parallel lists; null where a token has no score (an echoed prompt's first)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: LegacyLogprobs | None
    finish_reason: FinishReason | None
    adaptive_trace: list[dict[str, Any]] | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TokenLogprob):
    top_logprobs: list[TokenLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason | None
    adaptive_trace: list[dict[str, Any]] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    context_length: int
    max_depth: int
    vocab_size: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class TokenPiece(BaseModel):
    id: int
    piece: str


class Tokens(BaseModel):
    tokens: list[int] | list[TokenPiece]


class Text(BaseModel):
    content: str


ERROR_STATUSES = {
    400: "a malformed or out-of-range request, or a Host name not served",
    401: "missing or wrong API key (with --api_key)",
    404: "unknown model",
    413: "body larger than --max_body_bytes",
    429: "queue full",
    500: "a failure inside the model; the server keeps serving",
}


def responses(body: type[BaseModel] | None, *statuses: int, stream: bool = False,
              media_type: str = "application/json") -> dict[int | str, dict[str, Any]]:
    """An operation's `responses=`: its 200 body (plus an event stream when `stream`), and the
    error object for each of `statuses`."""
    ok: dict[str, Any] = {"description": "the answer"}
    if body is not None:
        ok["model"] = body
    if stream:
        ok["content"] = {"text/event-stream": {"schema": {
            "type": "string", "description": "`data: {json}` chunks, then `data: [DONE]`"}}}
    elif media_type != "application/json":
        ok["content"] = {media_type: {"schema": {"type": "string"}}}
    out: dict[int | str, dict[str, Any]] = {200: ok}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": ERROR_STATUSES[status]}
    return out


def schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, without FastAPI's 422 (LANTERN refuses bad bodies with 400
    and its error object, which every operation declares)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        components = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = document
    return app.openapi_schema
