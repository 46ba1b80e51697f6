"""A generated token as a response needs it, whichever policy made it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lantern.generation.core import PromptScores, TokenEvent


@dataclass
class Piece:
    """One generated token of choice `index`. `counted`: part of usage and logprobs (a stop
    token is not); `trace`: its adaptive-depth record, when the request was adaptive; `prompt`:
    instead of a token, the scores of the choice's prompt (echo with logprobs)."""

    index: int
    token: int
    text: str
    counted: bool
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: str | None = None
    trace: dict | None = None
    prompt: PromptScores | None = None


def finish_reason(stop_reason: str | None) -> str | None:
    """The OpenAI name of why a sequence ended: "stop" (a stop token or string) or "length"."""
    if stop_reason is None:
        return None
    return "length" if stop_reason == "length" else "stop"


def piece_of(index: int, event: TokenEvent | PromptScores) -> Piece:
    if isinstance(event, PromptScores):
        return Piece(index=index, token=-1, text="", counted=False, prompt=event,
                     finish_reason=finish_reason(event.stop_reason if event.finished else None))
    return Piece(index=index, token=event.token, text=event.text,
                 counted=event.stop_reason != "stop_token", logprob=event.logprob,
                 top_logprobs=list(event.top_logprobs),
                 finish_reason=finish_reason(event.stop_reason if event.finished else None))
