"""One API request as a job: its prompts become scheduler rows, their events become the
OpenAI-shaped response (whole, or as stream chunks).

Usage is exact: `prompt_tokens` counts each prompt's ids once (whatever `n`), and
`completion_tokens` counts every token generated, except the stop token that ended a sequence
(end-of-sequence, or the chat format's end of turn), which is never part of the text.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
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

DEFAULT_COMPLETION_TOKENS = 16  # the OpenAI completions default
DEPTH_FACTOR = 4  # `depth` may reach this many times the trained recursion depth
Top = list[tuple[int, float]]  # a position's top alternatives: (token, logprob), best first


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
    max_tokens = DEFAULT_COMPLETION_TOKENS if request.max_tokens is None else request.max_tokens
    stop_ids = frozenset({tokenizer.eos_id} - {None} if not request.ignore_eos else ())
    return _job(request, served, limits, "completion", prompt_ids, texts, max_tokens, stop_ids,
                request.logprobs, request.echo)


def prepare_chat(request: ChatCompletionRequest, served: ServedModel, limits: ServeLimits) -> Job:
    try:
        text = served.chat_format.render([{"role": m.role, "content": m.text} for m in request.messages])
    except LanternError as exc:
        raise APIError(400, f"messages: {exc}", param="messages") from None
    ids = _fit(_encode(served, text), served, request.truncate)
    top = (request.top_logprobs or 0) if request.logprobs else None
    max_tokens = request.token_limit or limits.max_tokens
    eos = {served.tokenizer.eos_id} if request.ignore_eos else set()
    return _job(request, served, limits, "chat", [ids], [text], max_tokens,
                served.chat_format.stop_ids - eos, top, False)


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


def _job(request: GenerationFields, served: ServedModel, limits: ServeLimits, kind, prompt_ids,
         texts, max_tokens: int, stop_ids: frozenset[int], top_logprobs: int | None,
         echo: bool) -> Job:
    if max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens: at most {limits.max_tokens} on this server (got "
                       f"{max_tokens})", param="max_tokens")
    if len(prompt_ids) * request.n > limits.max_n:
        raise APIError(400, f"n: at most {limits.max_n} sequences per request on this server (got "
                       f"{len(prompt_ids)} prompt(s) x n={request.n})", param="n")
    deepest = served.max_depth * DEPTH_FACTOR
    if request.depth is not None and request.depth > deepest:
        raise APIError(400, f"depth: at most {deepest} steps per block for this model (trained "
                       f"with {served.max_depth}; got {request.depth})", param="depth")
    if max_tokens == 0 and request.adaptive:
        raise APIError(400, "max_tokens: 0 only scores the prompt; adaptive: true needs tokens to "
                       "generate", param="max_tokens")
    try:
        config = GenerationConfig(  # a prompt-only row (max_tokens 0) never reaches its policy
            max_new_tokens=max(1, max_tokens), temperature=request.temperature,
            top_k=request.top_k or None,
            top_p=request.top_p if request.top_p < 1.0 else None, min_p=request.min_p or None,
            repetition_penalty=request.repetition_penalty,
            presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
            stop_strings=request.stop_strings, seed=request.seed,
            # the model's own depth shares the main batch
            steps_per_block=None if request.depth == served.max_depth else request.depth)
    except LanternError as exc:  # the schema checks ranges first; this is the last word
        raise APIError(400, str(exc).replace("--", "")) from None
    adaptive = check_adaptive(request, top_logprobs) if request.adaptive else None
    return Job(served, kind, prompt_ids, texts, config, request.n, request.seed, stop_ids,
               top_logprobs, echo, max_tokens == 0, adaptive, request.include_usage)


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


# -- OpenAI bodies ----------------------------------------------------------------------------
def usage(job: Job, completion_tokens: int) -> dict:
    return {"prompt_tokens": job.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": job.prompt_tokens + completion_tokens}


def _token_text(job: Job, token: int) -> str:
    return job.served.tokenizer.decode([token])


def _legacy_logprobs(job: Job, entries: Iterable[tuple[int, float | None, Top | None]],
                     offset: int) -> dict:
    """The legacy completions shape: parallel lists, top alternatives as {text: logprob};
    None where a token has no score (an echoed prompt's first)."""
    out: dict = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for token, logprob, top in entries:
        text = _token_text(job, token)
        out["tokens"].append(text)
        out["token_logprobs"].append(logprob)
        out["top_logprobs"].append(None if top is None else
                                   {_token_text(job, t): lp for t, lp in top})
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def completion_logprobs(job: Job, pieces_: list[Piece], offset: int) -> dict:
    return _legacy_logprobs(job, ((p.token, p.logprob, p.top_logprobs) for p in pieces_
                                  if p.counted), offset)


def prompt_logprobs(job: Job, scores: PromptScores) -> dict:
    """An echoed prompt's logprobs, its text starting at offset 0."""
    return _legacy_logprobs(job, zip(scores.tokens, scores.logprobs, scores.top_logprobs,
                                     strict=True), 0)


def _joined(first: dict, then: dict) -> dict:
    return {key: first[key] + then[key] for key in first}


def chat_logprobs(job: Job, pieces_: list[Piece]) -> dict:
    def entry(token: int, logprob: float | None) -> dict:
        text = _token_text(job, token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(p.token, p.logprob),
                         "top_logprobs": [entry(t, lp) for t, lp in p.top_logprobs]}
                        for p in pieces_ if p.counted]}


def _trace(choice_pieces: list[Piece]) -> list[dict]:
    return [p.trace for p in choice_pieces if p.trace is not None]


def completion_body(job: Job, choices: list[Choice]) -> dict:
    def content(i: int, c: Choice) -> dict:
        prefix = job.prompt_texts[i // job.n] if job.echo else ""
        logprobs = None
        if job.top_logprobs is not None:
            logprobs = completion_logprobs(job, c.pieces, len(prefix))
            if job.scores_prompt:
                assert c.prompt is not None
                logprobs = _joined(prompt_logprobs(job, c.prompt), logprobs)
        return {"text": prefix + c.text, "logprobs": logprobs}

    return _body(job, choices, f"cmpl-{job.id}", "text_completion", content)


def chat_body(job: Job, choices: list[Choice]) -> dict:
    def content(i: int, c: Choice) -> dict:
        return {"message": {"role": "assistant", "content": c.text},
                "logprobs": chat_logprobs(job, c.pieces) if job.top_logprobs is not None else None}

    return _body(job, choices, f"chatcmpl-{job.id}", "chat.completion", content)


def _body(job: Job, choices: list[Choice], body_id: str, kind: str,
          content: Callable[[int, Choice], dict]) -> dict:
    """The response both endpoints share around each choice's own content."""
    items = []
    for i, c in enumerate(choices):
        item = {"index": i, **content(i, c), "finish_reason": c.finish_reason}
        if job.adaptive is not None:
            item["adaptive_trace"] = _trace(c.pieces)
        items.append(item)
    return {"id": body_id, "object": kind, "created": job.created, "model": job.served.name,
            "choices": items, "usage": usage(job, sum(c.tokens for c in choices))}


async def stream_chunks(job: Job) -> AsyncIterator[dict]:
    """The chunks of a streamed response (each one `data: {json}`; the caller adds [DONE])."""
    completion_tokens = 0
    offsets = [0] * job.num_choices
    chat = job.kind == "chat"
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{job.id}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": job.created, "model": job.served.name}
    if chat:
        for i in range(job.num_choices):
            yield {**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None, "finish_reason": None}]}
    elif job.echo and not job.scores_prompt:
        for i in range(job.num_choices):
            offsets[i] = len(job.prompt_texts[i // job.n])
            yield {**head, "choices": [{"index": i, "text": job.prompt_texts[i // job.n],
                                        "logprobs": None, "finish_reason": None}]}
    async with aclosing(pieces(job)) as stream:
        async for p in stream:
            if p.prompt is not None and job.scores_prompt:  # the echo, once its scores are in
                offsets[p.index] = len(job.prompt_texts[p.index // job.n])
                yield {**head, "choices": [{"index": p.index,
                                            "text": job.prompt_texts[p.index // job.n],
                                            "logprobs": prompt_logprobs(job, p.prompt),
                                            "finish_reason": p.finish_reason}]}
                continue
            completion_tokens += p.counted
            wants_logprobs = job.top_logprobs is not None and p.counted
            if not (p.text or p.finish_reason or wants_logprobs or p.trace):
                continue
            logprobs = None
            if wants_logprobs:
                logprobs = (chat_logprobs(job, [p]) if chat
                            else completion_logprobs(job, [p], offsets[p.index]))
            offsets[p.index] += len(p.text)
            choice: dict = {"index": p.index, "logprobs": logprobs, "finish_reason": p.finish_reason}
            if chat:
                choice["delta"] = {"content": p.text} if p.text else {}
            else:
                choice["text"] = p.text
            if p.trace is not None:
                choice["adaptive_trace"] = [p.trace]
            yield {**head, "choices": [choice]}
    if job.include_usage:
        yield {**head, "choices": [], "usage": usage(job, completion_tokens)}
