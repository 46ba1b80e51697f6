"""Continuous batching over the decoding core: one loop per model, many requests per forward.

Each generated sequence is a row of a `Decoder` (one per recursion depth in use). Every loop
iteration removes the rows whose clients left, admits waiting rows into free slots (their
prompts are prefilled at once; a row that echoes its prompt with logprobs is scored in that same
prefill, and one with `max_tokens: 0` leaves right after it), then runs one step of the
decoding core's loop (`step_policies`, the code every generator runs): each row's own
`RowPolicy` picks its next token (its own sampling settings, penalties and seeded generator),
finished rows leave and one batched `step` runs for the rest; each event goes to its row's
request. A row therefore joins the running batch at the next step and leaves the moment it is
done.

The model runs on one worker thread per model (torch releases the GIL), so the event loop keeps
answering other requests while a step runs. Adaptive requests run on threads of their own that
hold the model only in turns (`ModelTurns`, first come first served): the batch takes one turn
per step, an adaptive request one per token, so neither starves the other. Their sequences count
against `max_waiting` from the moment they are accepted until they end.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from lantern.generation.core import (
    Decoder,
    PromptScores,
    RowPolicy,
    TokenEvent,
    score_prompt,
    step_policies,
)
from lantern.generation.settings import GenerationConfig
from lantern.serve.errors import APIError
from lantern.serve.metrics import ServerMetrics
from lantern.serve.turns import ModelTurns

T = TypeVar("T")


@dataclass(eq=False)
class Row:
    """One sequence to generate: choice `index` of a request, delivering to `out`.

    `score_prompt`: its first event is the `PromptScores` of its prompt (echo with logprobs);
    `generate: False`: that event also ends it (the prompt is only scored, `max_tokens: 0`)."""

    index: int
    prompt_ids: list[int]
    config: GenerationConfig
    seed: int
    stop_ids: frozenset[int]
    out: asyncio.Queue
    top_logprobs: int = 0
    score_prompt: bool = False
    generate: bool = True
    cancelled: bool = False
    handle: Any = None
    policy: RowPolicy | None = None
    depth: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.depth = self.config.steps_per_block


class RowFailed(Exception):
    """The model failed while this row was decoding (the server itself keeps running)."""

    @classmethod
    def of(cls, exc: Exception) -> RowFailed:
        return cls(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}")


class BatchScheduler:
    def __init__(self, name: str, model, tokenizer, max_rows: int = 16, max_waiting: int = 256,
                 metrics: ServerMetrics | None = None) -> None:
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.max_rows, self.max_waiting = max_rows, max_waiting
        self.metrics = metrics or ServerMetrics()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lantern-{name}")
        self.turns = ModelTurns()
        # adaptive requests: up to max_rows run at once, taking turns token by token
        self.adaptive_executor = ThreadPoolExecutor(max_workers=max_rows,
                                                    thread_name_prefix=f"lantern-{name}-adaptive")
        self.adaptive_sequences = 0  # of accepted adaptive requests, until they end
        self.stopping = threading.Event()  # adaptive runs end at their next token
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
        self.stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.adaptive_executor.shutdown(wait=True, cancel_futures=True)

    @property
    def active(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    # -- what requests call -------------------------------------------------------------------
    def check_capacity(self, count: int) -> None:
        """Refuse (429) when `count` more sequences would overfill the queue (waiting rows, and
        adaptive sequences until they end)."""
        queued = len(self.waiting) + self.adaptive_sequences
        if queued + count > self.max_waiting:
            raise APIError(429, f"the server is busy ({queued} sequences waiting, at most "
                           f"{self.max_waiting}); retry shortly")

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

    async def events(self, rows: list[Row]) -> AsyncIterator[tuple[int, TokenEvent | PromptScores]]:
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

    def run_in_turns(self, fn: Callable[[Callable[[], None]], T], sequences: int) -> asyncio.Future[T]:
        """Run `fn(pass_turn)` (adaptive generation) on a thread of its own that holds the model
        only in turns: `fn` calls `pass_turn()` between its tokens, letting the batch's next step
        and other adaptive runs go first. Its `sequences` count against `max_waiting` until it
        ends (429 when they do not fit)."""
        self.check_capacity(sequences)
        self.adaptive_sequences += sequences

        def run() -> T:
            with self.turns.turn():
                return fn(self.turns.pass_turn)

        def done(_future: asyncio.Future) -> None:
            self.adaptive_sequences -= sequences

        future = asyncio.get_running_loop().run_in_executor(self.adaptive_executor, _inference(run))
        future.add_done_callback(done)
        return future

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
            self.metrics.generated(self.name, sum(isinstance(e, TokenEvent) for _, e in events))
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
        future = loop.run_in_executor(self.executor, _inference(self._iteration_in_turn), admit,
                                      leaving)
        return future, admit

    def _fail_everything(self, exc: Exception, admitted: list[Row]) -> None:
        failure = RowFailed.of(exc)
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
        self._forget(depth, rows)

    def _forget(self, depth: int | None, rows: list[Row]) -> None:
        """Rows already out of the decoder leave their request's bookkeeping too."""
        for row in rows:
            del self.rows[depth][row.handle]
        if not self.rows[depth] and depth is not None:  # free the cache of an unusual depth
            del self.decoders[depth], self.rows[depth]

    def _drop_strays(self, depth: int | None) -> None:
        """Rows a failed `add` left in the decoder without a request: out."""
        decoder = self.decoders[depth]
        decoder.remove([h for h in decoder.handles if h not in self.rows[depth]])
        self._forget(depth, [])

    def _iteration_in_turn(self, admit: list[Row], leaving: list[Row]
                           ) -> list[tuple[Row, TokenEvent | PromptScores | RowFailed]]:
        with self.turns.turn():
            return self._iteration(admit, leaving)

    def _iteration(self, admit: list[Row],
                   leaving: list[Row]) -> list[tuple[Row, TokenEvent | PromptScores | RowFailed]]:
        """One step of every row. A failure in one row's setup or sampling fails that row alone
        (its request answers 500, the others go on); a failing prefill or step fails the rows
        it was for."""
        for depth in {row.depth for row in leaving}:
            self._remove(depth, [row for row in leaving if row.depth == depth])
        events: list[tuple[Row, TokenEvent | PromptScores | RowFailed]] = []
        for depth in dict.fromkeys(row.depth for row in admit):
            group = [row for row in admit if row.depth == depth]
            decoder = self._decoder(depth)
            try:
                handles = decoder.add([row.prompt_ids for row in group],
                                      score=[i for i, row in enumerate(group) if row.score_prompt])
            except Exception as exc:
                self._drop_strays(depth)
                events += [(row, RowFailed.of(exc)) for row in group]
                continue
            scored_only: list[Row] = []
            failed: list[Row] = []
            for row, handle in zip(group, handles, strict=True):
                row.handle = handle
                self.rows[depth][handle] = row
                try:
                    row.policy = RowPolicy(self.tokenizer, row.prompt_ids, row.config,
                                           self.tokenizer.vocab_size, seed=row.seed,
                                           stop_ids=row.stop_ids, top_logprobs=row.top_logprobs,
                                           device=decoder.device)
                except Exception as exc:
                    events.append((row, RowFailed.of(exc)))
                    failed.append(row)
                    continue
                if row.score_prompt:
                    scores = score_prompt(decoder.prompt_logits.pop(handle), row.prompt_ids,
                                          row.top_logprobs)
                    if not row.generate:
                        scores.finished, scores.stop_reason = True, "length"
                        scored_only.append(row)
                    events.append((row, scores))
            self._remove(depth, scored_only + failed)
        for depth, decoder in list(self.decoders.items()):
            if decoder.num_rows:
                events += self._decode(depth, decoder)
        return events

    def _decode(self, depth: int | None,
                decoder: Decoder) -> list[tuple[Row, TokenEvent | RowFailed]]:
        """One token of every row of `decoder`, by the core's `step_policies`: a row whose
        sampling fails fails alone; a failing step fails the rows it was for, and the decoder
        goes with them (its cache is in doubt)."""
        rows = [self.rows[depth][handle] for handle in decoder.handles]
        events: list[tuple[Row, TokenEvent | RowFailed]] = []
        done: list[Row] = []

        def failed(index: int, exc: Exception) -> None:
            events.append((rows[index], RowFailed.of(exc)))
            done.append(rows[index])

        index_of = {row.handle: i for i, row in enumerate(rows)}
        try:
            for index, event in step_policies(decoder, index_of, [row.policy for row in rows],
                                              on_error=failed):
                events.append((rows[index], event))
                if event.finished:
                    done.append(rows[index])
        except Exception as exc:
            events += [(row, RowFailed.of(exc)) for row in rows if row not in done]
            del self.decoders[depth], self.rows[depth]
            return events
        self._forget(depth, done)
        return events


def _inference(fn: Callable[..., T]) -> Callable[..., T]:
    def run(*args):
        with torch.inference_mode():
            return fn(*args)
    return run
