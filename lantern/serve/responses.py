"""The OpenAI-shaped answers of a job: the completion body, the chat completion body, and the
chunks of a streamed response (either endpoint).

Usage is exact: `prompt_tokens` counts each prompt's ids once (whatever `n`), and
`completion_tokens` counts every token generated, except the stop token that ended a sequence
(end-of-sequence, or the chat format's end of turn), which is never part of the text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing

from lantern.generation.core import PromptScores
from lantern.serve.jobs import Choice, Job, pieces
from lantern.serve.pieces import Piece

Top = list[tuple[int, float]]  # a position's top alternatives: (token, logprob), best first


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
