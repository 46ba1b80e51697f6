"""Token ids -> text as it is made: incremental decoding that stops at stop strings.

Text is released only when it is final: a trailing partial UTF-8 character (byte-level BPE) or
a tail that could still grow into a stop string is held back until the next token decides it.
Each token decodes only the tokens since the text was last complete, with the token run before
them as context (a decoder may treat a run's first token differently, e.g. strip its leading
space), so a stream costs O(n) in its length, not O(n^2). Stop strings are matched by one
Knuth-Morris-Pratt automaton each, so a token costs time in its own text, however long the stop
strings are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from lantern.tokenizers import Tokenizer


@functools.lru_cache(maxsize=256)
def _failure(stop: str) -> tuple[int, ...]:
    """KMP's table: entry i is the length of the longest proper prefix of stop[:i + 1] that is
    also its suffix (where a partial match falls back to when the next character differs)."""
    fail = [0] * len(stop)
    k = 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k - 1]
        if stop[i] == stop[k]:
            k += 1
        fail[i] = k
    return tuple(fail)


def _advance(stop: str, fail: tuple[int, ...], state: int, text: str, start: int, end: int,
             min_end: int) -> tuple[int, int | None]:
    """Read text[start:end] from `state` (the length of the longest tail read so far that begins
    `stop`): the new state, and the end of the first occurrence that ends at or after `min_end`."""
    for i in range(start, end):
        char = text[i]
        while state and stop[state] != char:
            state = fail[state - 1]
        if stop[state] == char:
            state += 1
        if state == len(stop):
            if i + 1 >= min_end:
                return state, i + 1
            state = fail[state - 1]
    return state, None


class StopMatcher:
    """Stop strings in a text that grows at its end, each character read once (amortized)."""

    def __init__(self, stop_strings: Sequence[str]) -> None:
        self.stops = [s for s in stop_strings if s]
        self.tables = [_failure(s) for s in self.stops]
        self.reset()

    def reset(self) -> None:
        """Start over (the text was rewritten)."""
        self.states = [0] * len(self.stops)
        self.read = 0

    def scan(self, text: str, final: int, min_end: int) -> tuple[int | None, int]:
        """Read `text` from where the last scan stopped: up to `final` for good, the rest (an
        incomplete character's provisional text) tentatively. Returns where the earliest stop
        string ending at or after `min_end` starts (None: none) and the length of the longest
        tail of `text` that begins a stop string (text to hold back)."""
        starts, held = [], 0
        for k, (stop, fail) in enumerate(zip(self.stops, self.tables, strict=True)):
            state, end = _advance(stop, fail, self.states[k], text, self.read, final, min_end)
            self.states[k] = state
            if end is None:
                state, end = _advance(stop, fail, state, text, final, len(text), min_end)
            if end is not None:
                starts.append(end - len(stop))
            held = max(held, state)
        self.read = final
        return (min(starts) if starts else None), held


class TextStream:
    """One row's generated text; `add` returns the newly final text, '' if none."""

    def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = StopMatcher(stop_strings)
        self.ids: list[int] = []
        self.emitted = 0
        self.stopped = False
        self.text = ""
        self._complete = ""  # the text of ids[:_read], which ends on a whole character
        self._context = 0  # ids[_context:_read]: the run decoded before the new tokens
        self._read = 0

    def add(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self._decode()
        start, held = self.stops.scan(text, len(self._complete), self.emitted)
        if start is not None:
            self.stopped = True
            self.text = text[:start]
            return self._release(len(self.text))
        self.text = text
        end = len(text) - held
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
            end = min(end, len(text) - 1)
        return self._release(end)

    def _decode(self) -> str:
        """The whole text so far, decoding only the tokens after the last complete point."""
        decode = self.tokenizer.decode
        context = decode(self.ids[self._context:self._read], skip_special_tokens=True)
        window = decode(self.ids[self._context:], skip_special_tokens=True)
        if not window.startswith(context):  # the new tokens rewrote their context: start over
            self._complete, self._context, self._read = "", 0, 0
            self.stops.reset()
            context, window = "", decode(self.ids, skip_special_tokens=True)
        new = window[len(context):]
        if new.endswith("\ufffd"):  # inside a multi-byte character: keep decoding from here
            return self._complete + new
        self._complete += new
        if new:  # the run just read shows text: it is the context from now on (a run that shows
            self._context = self._read  # none, e.g. a lone "▁" at the start, cannot serve as one)
        self._read = len(self.ids)
        return self._complete

    def finish(self) -> str:
        """Everything not yet released (generation ended without a stop string)."""
        return self._release(len(self.text))

    def _release(self, end: int) -> str:
        piece = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece
