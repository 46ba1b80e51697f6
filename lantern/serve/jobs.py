"""One API request as a job: its prompts become scheduler rows (or an adaptive run), their
events become each choice's pieces. The response bodies are built from those
(`lantern.serve.responses`)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

from lantern.errors import LanternError
from lantern.generation.core import PromptScores
from lantern.generation.prompts import encode_prompt
from lantern.generation.settings import GenerationConfig
from lantern.serve.adaptive import adaptive_pieces, check_adaptive
from lantern.serve.errors import APIError
from lantern.serve.limits import ServeLimits
from lantern.serve.pieces import Piece, piece_of
from lantern.serve.registry import ServedModel
from lantern.serve.scheduler import Row
from lantern.serve.schemas import ChatCompletionRequest, CompletionRequest, GenerationFields


@dataclass
class Job:
    served: ServedModel
    kind: Literal["completion", "chat"]
    prompt_ids: list[list[int]]
    prompt_texts: list[str]
    config: GenerationConfig
    n: int
    seed: int | None
    stop_ids: frozenset[int]
    top_logprobs: int | None  # None: no logprobs
    echo: bool = False
    prompt_only: bool = False  # max_tokens 0: score the prompt, generate nothing
    adaptive: tuple[float, float, float] | None = None
    include_usage: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def prompt_tokens(self) -> int:
        return sum(len(ids) for ids in self.prompt_ids)

    @property
    def num_choices(self) -> int:
        return len(self.prompt_ids) * self.n

    def row_seed(self, index: int) -> int:
        """Choice i of a request with seed s samples with seed s + i (as `lantern generate`)."""
        return self.seed + index if self.seed is not None else secrets.randbits(62)

    @property
    def scores_prompt(self) -> bool:
        """Whether each choice's logprobs begin with its echoed prompt's."""
        return self.echo and self.top_logprobs is not None

    def rows(self) -> list[Row]:
        queue: asyncio.Queue = asyncio.Queue()
        return [Row(index=p * self.n + i, prompt_ids=ids, config=self.config,
                    seed=self.row_seed(p * self.n + i), stop_ids=self.stop_ids, out=queue,
                    top_logprobs=self.top_logprobs or 0,
                    score_prompt=self.scores_prompt or self.prompt_only,
                    generate=not self.prompt_only)
                for p, ids in enumerate(self.prompt_ids) for i in range(self.n)]


# -- request -> job ---------------------------------------------------------------------------
def prepare_completion(request: CompletionRequest, served: ServedModel, limits: ServeLimits) -> Job:
    tokenizer = served.tokenizer
    prompt_ids, texts = [], []
    for prompt in request.prompts():
        if isinstance(prompt, str):
            ids = _encode(served, prompt or None)
            texts.append(prompt)
        else:
            if not prompt:
                raise APIError(400, "prompt: a token-id prompt must not be empty", param="prompt")
            if max(prompt) >= tokenizer.vocab_size:
                raise APIError(400, f"prompt: token id {max(prompt)} is outside the vocabulary "
                               f"(size {tokenizer.vocab_size})", param="prompt")
            ids = list(prompt)
            texts.append(tokenizer.decode(ids))
        fitted = _fit(ids, served, request.truncate)
        if len(fitted) < len(ids):  # echo what the model was given
            texts[-1] = tokenizer.decode(fitted)
        prompt_ids.append(fitted)
    stop_ids = frozenset({tokenizer.eos_id} - {None} if not request.ignore_eos else ())
    return _job(request, served, limits, "completion", prompt_ids, texts, stop_ids,
                request.logprobs, request.echo)


def prepare_chat(request: ChatCompletionRequest, served: ServedModel, limits: ServeLimits) -> Job:
    try:
        text = served.chat_format.render([{"role": m.role, "content": m.text} for m in request.messages])
    except LanternError as exc:
        raise APIError(400, f"messages: {exc}", param="messages") from None
    ids = _fit(_encode(served, text), served, request.truncate)
    top = (request.top_logprobs or 0) if request.logprobs else None
    eos = {served.tokenizer.eos_id} if request.ignore_eos else set()
    return _job(request, served, limits, "chat", [ids], [text], served.chat_format.stop_ids - eos,
                top, False)


def _encode(served: ServedModel, text: str | None) -> list[int]:
    try:
        return encode_prompt(served.tokenizer, text)
    except LanternError as exc:
        raise APIError(400, f"prompt: {exc}", param="prompt") from None


def _fit(ids: list[int], served: ServedModel, truncate: bool) -> list[int]:
    """The prompt within the context: refused (400) unless the request asks for truncation."""
    context = served.context_length
    if len(ids) <= context:
        return ids
    if truncate:
        return ids[-context:]
    raise APIError(400, f"the prompt has {len(ids)} tokens but the model's context is {context} "
                   f"tokens; shorten it, or send \"truncate\": true to keep its last {context}",
                   param="prompt", code="context_length_exceeded")


def _job(request: GenerationFields, served: ServedModel, limits: ServeLimits,
         kind: Literal["completion", "chat"], prompt_ids: list[list[int]], texts: list[str],
         stop_ids: frozenset[int], top_logprobs: int | None, echo: bool) -> Job:
    """Either endpoint's prompts as a job, with the request's generation settings and, for an
    adaptive request, its thresholds."""
    config = request.generation_config(served, limits)
    adaptive = check_adaptive(request, top_logprobs, served) if request.adaptive else None
    return Job(served, kind, prompt_ids, texts, config, request.n, request.seed, stop_ids,
               top_logprobs, echo, request.token_budget(limits) == 0, adaptive,
               request.include_usage)


# -- events -> pieces -------------------------------------------------------------------------
async def pieces(job: Job) -> AsyncIterator[Piece]:
    """Every generated token of every choice, in the order they are made."""
    if job.adaptive is not None:
        async with aclosing(adaptive_pieces(job)) as adaptive:
            async for piece in adaptive:
                yield piece
        return
    async with aclosing(job.served.scheduler.events(job.rows())) as events:
        async for index, event in events:
            yield piece_of(index, event)


@dataclass
class Choice:
    text: str = ""
    pieces: list[Piece] = field(default_factory=list)
    finish_reason: str | None = None
    prompt: PromptScores | None = None

    @property
    def tokens(self) -> int:
        return sum(p.counted for p in self.pieces)


async def collect(job: Job) -> list[Choice]:
    choices = [Choice() for _ in range(job.num_choices)]
    async with aclosing(pieces(job)) as stream:
        async for piece in stream:
            choice = choices[piece.index]
            if piece.prompt is not None:
                choice.prompt = piece.prompt
            choice.text += piece.text
            choice.pieces.append(piece)
            if piece.finish_reason is not None:
                choice.finish_reason = piece.finish_reason
    return choices
