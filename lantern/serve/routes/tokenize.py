"""/tokenize and /detokenize: a served model's tokenizer, both ways."""

from __future__ import annotations

from fastapi import APIRouter

from lantern.serve import openapi
from lantern.serve.errors import APIError
from lantern.serve.routes.state import Registry
from lantern.serve.schemas import DetokenizeRequest, TokenizeRequest

router = APIRouter()


@router.post("/tokenize", responses=openapi.responses(openapi.Tokens, 400, 401, 404, 413, 500))
async def tokenize(body: TokenizeRequest, registry: Registry) -> dict:
    tokenizer = registry.get(body.model).tokenizer
    ids = tokenizer.encode(body.content)
    if not body.with_pieces:
        return {"tokens": ids}
    return {"tokens": [{"id": i, "piece": tokenizer.decode([i])} for i in ids]}


@router.post("/detokenize", responses=openapi.responses(openapi.Text, 400, 401, 404, 413, 500))
async def detokenize(body: DetokenizeRequest, registry: Registry) -> dict:
    tokenizer = registry.get(body.model).tokenizer
    bad = [i for i in body.tokens if i >= tokenizer.vocab_size]
    if bad:
        raise APIError(400, f"tokens: id {bad[0]} is outside the vocabulary (size "
                       f"{tokenizer.vocab_size})", param="tokens")
    return {"content": tokenizer.decode(body.tokens)}
