"""Token ids -> text as it is made: incremental decoding that stops at stop strings.

Text is released only when it is final: a trailing partial UTF-8 character (byte-level BPE) or
a tail that could still grow into a stop string is held back until the next token decides it.
Each token decodes only the tokens since the text was last complete, with the token run before
them as context (a decoder may treat a run's first token differently, e.g. strip its leading
space), so a stream costs O(n) in its length, not O(n^2).
"""

from __future__ import annotations

from collections.abc import Sequence

from lantern.tokenizers import Tokenizer


class TextStream:
    """One row's generated text; `add` returns the newly final text, '' if none."""

    def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.ids: list[int] = []
        self.emitted = 0
        self.stopped = False
        self.text = ""
        self._complete = ""  # the text of ids[:_read], which ends on a whole character
        self._context = 0  # ids[_context:_read]: the run decoded before the new tokens
        self._read = 0

    def _held_back(self, text: str) -> int:
        """Length of the longest tail of `text` that begins some stop string."""
        longest = 0
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-size:]):
                    longest = size
                    break
        return longest

    def add(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self._decode()
        hits = [i for i in (text.find(s, max(0, self.emitted - len(s))) for s in self.stop_strings)
                if i >= 0]
        if hits:
            self.stopped = True
            self.text = text[: min(hits)]
            return self._release(len(self.text))
        self.text = text
        end = len(text) - self._held_back(text)
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
