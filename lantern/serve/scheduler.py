"""Continuous batching over the decoding core: one loop per model, many requests per forward.

Each generated sequence is a row of a `Decoder` (one per recursion depth in use). Every loop
iteration removes the rows whose clients left, admits waiting rows into free slots (their
prompts are prefilled at once), lets each row's own `RowPolicy` pick its next token (its own
sampling settings, penalties and seeded generator), hands each event to the row's request, drops
finished rows and runs one batched `step` for the rest. A row therefore joins the running batch
at the next step and leaves the moment it is done.

The model runs on one worker thread per model (torch releases the GIL), so the event loop keeps
answering other requests while a step runs; everything that touches the model, adaptive
requests included, goes through that one thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from lantern.generation.core import Decoder, RowPolicy, TokenEvent
from lantern.generation.settings import GenerationConfig
from lantern.serve.errors import APIError
from lantern.serve.metrics import ServerMetrics

T = TypeVar("T")


@dataclass(eq=False)
class Row:
    """One sequence to generate: choice `index` of a request, delivering to `out`."""

    index: int
    prompt_ids: list[int]
    config: GenerationConfig
    seed: int
    stop_ids: frozenset[int]
    out: asyncio.Queue
    top_logprobs: int = 0
    cancelled: bool = False
    handle: Any = None
    policy: RowPolicy | None = None
    depth: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.depth = self.config.steps_per_block


class RowFailed(Exception):
    """The model failed while this row was decoding (the server itself keeps running)."""


class BatchScheduler:
    def __init__(self, name: str, model, tokenizer, max_rows: int = 16, max_waiting: int = 256,
                 metrics: ServerMetrics | None = None) -> None:
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.max_rows, self.max_waiting = max_rows, max_waiting
        self.metrics = metrics or ServerMetrics()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lantern-{name}")
        self.waiting: deque[Row] = deque()
        self.decoders: dict[int | None, Decoder] = {}
        self.rows: dict[int | None, dict[Any, Row]] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # -- life cycle (on the event loop) --------------------------------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"lantern-scheduler-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True, cancel_futures=True)

    @property
    def active(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    # -- what requests call -------------------------------------------------------------------
    def check_capacity(self, count: int) -> None:
        """Refuse (429) when `count` more sequences would overfill the queue."""
        if len(self.waiting) + count > self.max_waiting:
            raise APIError(429, f"the server is busy ({len(self.waiting)} sequences waiting, at "
                           f"most {self.max_waiting}); retry shortly")

    def submit(self, rows: list[Row]) -> None:
        """Queue rows for the next admission."""
        self.check_capacity(len(rows))
        self.waiting.extend(rows)
        self.metrics.queue_length.labels(self.name).set(len(self.waiting))
        if self._wake is not None:
            self._wake.set()

    def cancel(self, rows: list[Row]) -> None:
        """The client left: its rows leave the batch at the next step."""
        for row in rows:
            row.cancelled = True
        if self._wake is not None:
            self._wake.set()

    async def events(self, rows: list[Row]) -> AsyncIterator[tuple[int, TokenEvent]]:
        """Submit `rows` and yield (choice index, event) until every row has finished.

        Leaving early (a client that disconnected, an error) cancels the unfinished rows."""
        self.submit(rows)
        queue = rows[0].out
        pending = len(rows)
        try:
            while pending:
                index, item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item.finished:
                    pending -= 1
                yield index, item
        finally:
            if pending:
                self.cancel(rows)

    def run_exclusive(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` on the model's thread, between two batch steps (adaptive generation)."""
        return asyncio.get_running_loop().run_in_executor(self.executor, _inference(fn))

    # -- the loop -----------------------------------------------------------------------------
    async def _loop(self) -> None:
        """Run iterations back to back: the next one starts before the events of the last are
        delivered, so the event loop's work (JSON, HTTP writes) overlaps the model's."""
        assert self._wake is not None
        running: tuple[asyncio.Future, list[Row]] | None = None
        while True:
            if running is None:
                if not self.waiting and not self.active:
                    self._wake.clear()
                    await self._wake.wait()
                running = self._start_iteration()
            future, admitted = running
            try:
                events = await future
            except Exception as exc:  # a failing model must not take the server down
                self._fail_everything(exc, admitted)
                running = None
                continue
            active = self.active  # read now: the rows change once the next iteration runs
            running = self._start_iteration() if self.waiting or active else None
            for row, event in events:
                row.out.put_nowait((row.index, event))
            self.metrics.generated(self.name, len(events))
            self.metrics.queue_length.labels(self.name).set(len(self.waiting))
            self.metrics.active_rows.labels(self.name).set(active)
            await asyncio.sleep(0)  # let handlers send what just arrived

    def _start_iteration(self) -> tuple[asyncio.Future, list[Row]]:
        """Plan the next iteration (who leaves, who joins) and start it on the model's thread."""
        leaving = [row for rows in self.rows.values() for row in rows.values() if row.cancelled]
        free = self.max_rows - (self.active - len(leaving))
        admit: list[Row] = []
        while self.waiting and len(admit) < free:
            row = self.waiting.popleft()
            if not row.cancelled:
                admit.append(row)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, _inference(self._iteration), admit, leaving)
        return future, admit

    def _fail_everything(self, exc: Exception, admitted: list[Row]) -> None:
        failure = RowFailed(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}")
        for row in [r for rows in self.rows.values() for r in rows.values()] + admitted:
            row.out.put_nowait((row.index, failure))
        self.decoders.clear()
        self.rows.clear()

    # -- one iteration (on the model's thread) ------------------------------------------------
    def _decoder(self, depth: int | None) -> Decoder:
        if depth not in self.decoders:
            self.decoders[depth] = Decoder(self.model, steps_per_block=depth)
            self.rows[depth] = {}
        return self.decoders[depth]

    def _remove(self, depth: int | None, rows: list[Row]) -> None:
        if not rows:
            return
        self.decoders[depth].remove([row.handle for row in rows])
        for row in rows:
            del self.rows[depth][row.handle]
        if not self.rows[depth] and depth is not None:  # free the cache of an unusual depth
            del self.decoders[depth], self.rows[depth]

    def _iteration(self, admit: list[Row], leaving: list[Row]) -> list[tuple[Row, TokenEvent]]:
        for depth in {row.depth for row in leaving}:
            self._remove(depth, [row for row in leaving if row.depth == depth])
        for depth in dict.fromkeys(row.depth for row in admit):
            group = [row for row in admit if row.depth == depth]
            decoder = self._decoder(depth)
            handles = decoder.add([row.prompt_ids for row in group])
            for row, handle in zip(group, handles, strict=True):
                row.handle = handle
                row.policy = RowPolicy(self.tokenizer, row.prompt_ids, row.config,
                                       self.tokenizer.vocab_size, seed=row.seed,
                                       stop_ids=row.stop_ids, top_logprobs=row.top_logprobs,
                                       device=decoder.device)
                self.rows[depth][handle] = row
        events: list[tuple[Row, TokenEvent]] = []
        for depth, decoder in list(self.decoders.items()):
            handles = list(decoder.handles)
            if not handles:
                continue
            logits = decoder.logits
            finished: list[Row] = []
            next_tokens: dict[Any, int] = {}
            for i, handle in enumerate(handles):
                row = self.rows[depth][handle]
                assert row.policy is not None
                token = int(row.policy.choose(logits[i]))
                event = row.policy.accept(token)
                events.append((row, event))
                if event.finished:
                    finished.append(row)
                else:
                    next_tokens[handle] = token
            self._remove(depth, finished)
            if next_tokens:
                tokens = [next_tokens[h] for h in decoder.handles]
                decoder.step(torch.tensor(tokens, dtype=torch.long, device=logits.device))
        return events


def _inference(fn: Callable[..., T]) -> Callable[..., T]:
    def run(*args):
        with torch.inference_mode():
            return fn(*args)
    return run
