"""The windows a long text is scored in: every token scored exactly once, each window as long
as the model's context, in the layout of EleutherAI's lm-evaluation-harness
(`loglikelihood_rolling`), so the two report the same figures for the same model and text.

The first window starts with a prefix token (the tokenizer's BOS, else its EOS) so that the
text's first token is scored too; without either, scoring starts at the second token. Later
windows score the next `context` tokens, each reading the tokens before it in its window; the
last window is filled up with earlier tokens (read, not scored again)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    inputs: list[int]  # what the model reads
    targets: list[int]  # the tokens scored: the next token at the last len(targets) positions

    @property
    def scored_from(self) -> int:
        """The first input position whose next token is scored."""
        return len(self.inputs) - len(self.targets)


def rolling_windows(tokens: Sequence[int], context: int, prefix: int | None) -> Iterator[Window]:
    """Windows over `tokens` for a model that reads `context` tokens."""
    if context < 1:
        raise ValueError("a window needs a context of at least one token")
    tokens = list(tokens)
    if prefix is None:  # nothing to read before the first token: it is not scored
        if len(tokens) < 2:
            return
        first = min(context + 1, len(tokens))
        yield Window(tokens[:first - 1], tokens[1:first])
        predicted = first
    else:
        first = min(context, len(tokens))
        if first == 0:
            return
        yield Window([prefix, *tokens[:first - 1]], tokens[:first])
        predicted = first
    while predicted < len(tokens):
        end = min(predicted + context, len(tokens))
        yield Window(tokens[end - context - 1:end - 1], tokens[predicted:end])
        predicted = end
