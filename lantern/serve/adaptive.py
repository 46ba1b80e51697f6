"""Adaptive requests (`adaptive: true`): the uncertainty controller picks each token's depth.

They run through `lantern.generation.adaptive`, taking turns with the batch token by token (the
scheduler's `run_in_turns`): the n choices of one prompt form one controller batch (as
`lantern generate --adaptive --num_samples n` does; the neediest row sets a step's depth), so
they do not join the running batch of other requests. Their text streams as it is made. Each choice carries
`adaptive_trace`: per generated token its uncertainty score, entropy, depth (steps per block),
block applications and THINK flag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable

from lantern.errors import LanternError
from lantern.generation.adaptive.controller import GenerationController
from lantern.generation.adaptive.uncertainty import UncertaintyController
from lantern.generation.streaming import TextStream
from lantern.serve.errors import APIError
from lantern.serve.pieces import Piece, finish_reason
from lantern.serve.registry import ServedModel
from lantern.serve.scheduler import RowFailed
from lantern.serve.schemas import GenerationFields


def check_adaptive(request: GenerationFields, top_logprobs: int | None,
                   served: ServedModel) -> tuple[float, float, float]:
    """The thresholds of an adaptive request (the model's fitted ones where not given); refuse
    what the controller cannot do."""
    if top_logprobs is not None:
        raise APIError(400, "logprobs: not available with adaptive: true", param="logprobs")
    if request.depth is not None:
        raise APIError(400, "depth: adaptive: true chooses the depth of every token itself",
                       param="depth")
    try:
        values = served.adaptive.resolve(request.tau_low, request.tau_mid, request.tau_high)
    except LanternError as exc:
        raise APIError(400, str(exc), param="tau_high") from None
    try:
        UncertaintyController(*values)
    except LanternError as exc:
        raise APIError(400, str(exc), param="tau_low") from None
    return values


class Abandoned(Exception):
    """The client left: stop generating (raised inside the controller's text callback)."""


async def adaptive_pieces(job) -> AsyncIterator[Piece]:
    """Text pieces as the controller makes them, then one piece per token with its trace.

    The text pieces (not counted) stream live; the trace pieces that follow carry the usage
    count, the finish reason and `adaptive_trace`, and no text. A client that leaves (or a
    server that stops) stops the controller at its next token."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    abandoned = threading.Event()
    scheduler = job.served.scheduler

    def emit(index: int, text: str) -> None:
        if abandoned.is_set():
            raise Abandoned
        loop.call_soon_threadsafe(queue.put_nowait, Piece(index, -1, text, False))

    def work(pass_turn: Callable[[], None]) -> None:
        def between_tokens() -> None:
            if abandoned.is_set() or scheduler.stopping.is_set():
                raise Abandoned
            pass_turn()

        try:
            result: object = run_adaptive(job, emit, between_tokens)
        except Abandoned:
            return
        except Exception as exc:  # reported to the request; the server goes on
            result = RowFailed.of(exc)
        loop.call_soon_threadsafe(queue.put_nowait, result)

    scheduler.run_in_turns(work, job.num_choices)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Piece):
                yield item
                continue
            if isinstance(item, Exception):
                raise item
            for piece in item:
                yield piece
            break
    finally:
        abandoned.set()  # a controller still running stops at its next token


def run_adaptive(job, emit: Callable[[int, str], None],
                 between_tokens: Callable[[], None]) -> list[Piece]:
    """Generate every choice (in the model's turns): `emit(choice, text)` as text becomes final,
    `between_tokens()` before each step; returns one trace piece per generated token."""
    served: ServedModel = job.served
    tokenizer = served.tokenizer
    out = []
    for p, ids in enumerate(job.prompt_ids):
        first = p * job.n
        seed = None if job.seed is None else job.seed + first
        eos = tokenizer.eos_id if tokenizer.eos_id in job.stop_ids else None
        config = dataclasses.replace(job.config, seed=seed, eos_token_id=eos,
                                     think_token_id=tokenizer.think_id)
        controller = GenerationController(served.model,
                                          uncertainty_controller=UncertaintyController(*job.adaptive),
                                          config=config)
        result = controller.generate([ids] * job.n, tokenizer=tokenizer, stop_ids=job.stop_ids,
                                     on_text=lambda row, text, first=first: emit(first + row, text),
                                     between_tokens=between_tokens)
        for i in range(job.n):
            out += _pieces(first + i, result.trace[i], result.stop_reasons[i], job, tokenizer)
    return out


def _pieces(index: int, trace, reason: str, job, tokenizer) -> list[Piece]:
    """One textless piece per traced token; its trace entry holds the token's text, replayed
    through the same text stream the core uses."""
    stream = TextStream(tokenizer, job.config.stop_strings)
    pieces = []
    for t in trace:
        entry = {"token": t.token, "text": "", "uncertainty": round(t.uncertainty, 4),
                 "entropy": round(t.entropy, 4), "depth": t.depth,
                 "applications": t.applications, "think": t.think}
        if t.token in job.stop_ids and not t.think:
            pieces.append(Piece(index, t.token, "", False, trace=entry))
            break
        text = stream.add(t.token)
        entry["text"] = tokenizer.decode([t.token]) if t.think else text
        pieces.append(Piece(index, t.token, "", True, trace=entry))
        if stream.stopped:
            break
    if pieces:
        last = pieces[-1].trace
        if not last["think"]:
            last["text"] += stream.finish()
        pieces[-1].finish_reason = finish_reason(reason)
    return pieces
