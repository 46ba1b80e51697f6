"""Token ids -> text as it is made: incremental decoding that stops at stop strings.

Text is released only when it is final: a trailing partial UTF-8 character (byte-level BPE) or
a tail that could still grow into a stop string is held back until the next token decides it.
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
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
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

    def finish(self) -> str:
        """Everything not yet released (generation ended without a stop string)."""
        return self._release(len(self.text))

    def _release(self, end: int) -> str:
        piece = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece
