"""A job's answer over HTTP, for both completion endpoints: one JSON body, or Server-Sent
Events. A client that leaves frees its rows; a model failure is an error object (in a stream:
an error chunk, then [DONE]); each answer's time goes to the latency histogram."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from lantern.serve.errors import APIError, error_body, error_response
from lantern.serve.jobs import Choice, Job, collect
from lantern.serve.metrics import ServerMetrics
from lantern.serve.responses import stream_chunks
from lantern.serve.scheduler import RowFailed

DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed request checks its client

T = TypeVar("T")
BodyBuilder = Callable[[Job, list[Choice]], dict]  # a whole answer's body from its choices


async def answer(job: Job, stream: bool, build: BodyBuilder, request: Request,
                 metrics: ServerMetrics) -> Response:
    """Run `job` (429 when its sequences do not fit the queue) and answer with its body, built
    by `build`, or with its stream."""
    job.served.scheduler.check_capacity(job.num_choices)
    metrics.prompt_tokens.labels(job.served.name).inc(job.prompt_tokens)
    endpoint = request.url.path
    if stream:
        return EventSourceResponse(_events(job, endpoint, metrics), sep="\n", ping=15)
    with metrics.latency.labels(endpoint).time():
        try:
            choices = await _unless_disconnected(collect(job), request)
        except RowFailed as exc:
            return error_response(500, str(exc))
    if choices is None:
        return Response(status_code=499)  # nobody is listening any more
    return JSONResponse(build(job, choices))


async def _unless_disconnected(work: Awaitable[T], request: Request) -> T | None:
    """Await `work`; if the client leaves first, cancel it (freeing its rows) -> None."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not task.done() and await request.is_disconnected():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            return None
    return task.result()


async def _events(job: Job, endpoint: str, metrics: ServerMetrics):
    with metrics.latency.labels(endpoint).time():
        try:
            async with aclosing(stream_chunks(job)) as chunks:
                async for chunk in chunks:
                    # ASCII only: U+2028 or U+0085 in text must not look like a line end
                    yield {"data": json.dumps(chunk)}
        except APIError as exc:
            yield {"data": json.dumps(error_body(exc.status, exc.message, exc.param))}
        except RowFailed as exc:
            yield {"data": json.dumps(error_body(500, str(exc)))}
    yield {"data": "[DONE]"}
