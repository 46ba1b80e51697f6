"""Text in, text out: prompts -> token ids -> sampling or beam search -> finished completions.

This is the one generation path the command line, the interactive session and the Python API
share. A completion ends at the first stop token (end-of-sequence, or a chat closing tag), at
a stop string (cut off, not included), or after `max_new_tokens`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch

from lantern.errors import LanternError
from lantern.generation.beam import beam_search
from lantern.generation.decode import left_pad, stream_tokens
from lantern.generation.sampling import SamplingConfig
from lantern.generation.streaming import TextStream
from lantern.tokenizers import Tokenizer


@dataclass
class GenerationSettings:
    """Everything that decides what is generated (besides the model and the prompt)."""

    max_new_tokens: int = 200
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop_strings: tuple[str, ...] = ()
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    steps_per_block: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise LanternError(f"--max_new_tokens must be positive (got {self.max_new_tokens})")
        if self.num_beams <= 0:
            raise LanternError(f"--num_beams must be positive (got {self.num_beams})")
        if not math.isfinite(self.length_penalty):
            raise LanternError(f"--length_penalty must be a finite number (got {self.length_penalty})")
        if self.steps_per_block is not None and self.steps_per_block <= 0:
            raise LanternError(f"--steps_per_block must be positive (got {self.steps_per_block})")


@dataclass
class Completion:
    prompt: str
    text: str
    num_tokens: int
    seconds: float
    stop_reason: str  # "stop_token", "stop_string" or "length"

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.seconds if self.seconds > 0 else float("inf")


def complete(
    model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    prompt_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    stop_ids: Collection[int] = (),
    generator: torch.Generator | None = None,
    on_text: Callable[[int, str], None] | None = None,
) -> list[Completion]:
    """Generate one completion per prompt, as one batch. `on_text(row, piece)` receives text
    the moment it is final (streaming)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    ids, valid = left_pad(prompt_ids, pad, device)
    valid_or_none = None if bool(valid.all()) else valid
    start = time.perf_counter()
    if settings.num_beams > 1:
        return _complete_beams(model, tokenizer, prompts, ids, valid_or_none, settings, stop_ids,
                               start, on_text)
    streams = [TextStream(tokenizer, settings.stop_strings) for _ in prompts]
    counts = [0] * len(prompts)
    reasons = ["length"] * len(prompts)
    finished = [False] * len(prompts)
    tokens = stream_tokens(model, ids, settings.max_new_tokens, settings.sampling, valid_or_none,
                           generator, settings.steps_per_block)
    for step in tokens:
        for row, token in enumerate(step[:, 0].tolist()):
            if finished[row]:
                continue
            if token in stop_ids:
                finished[row], reasons[row] = True, "stop_token"
                continue
            counts[row] += 1
            piece = streams[row].add(token)
            if streams[row].stopped:
                finished[row], reasons[row] = True, "stop_string"
            if piece and on_text is not None:
                on_text(row, piece)
        if all(finished):
            break
    seconds = time.perf_counter() - start
    results = []
    for row, stream in enumerate(streams):
        rest = stream.finish()
        if rest and on_text is not None:
            on_text(row, rest)
        results.append(Completion(prompts[row], stream.text, counts[row], seconds, reasons[row]))
    return results


def _complete_beams(
    model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    ids: torch.Tensor,
    valid: torch.Tensor | None,
    settings: GenerationSettings,
    stop_ids: Collection[int],
    start: float,
    on_text: Callable[[int, str], None] | None,
) -> list[Completion]:
    """The best beam of each prompt; its text arrives in one piece once the search ends."""
    found = beam_search(model, ids, settings.num_beams, settings.max_new_tokens, stop_ids,
                        settings.length_penalty, settings.early_stopping, valid,
                        settings.steps_per_block)
    seconds = time.perf_counter() - start
    results = []
    for row, hypotheses in enumerate(found):
        best = hypotheses[0].tokens
        ended = bool(best) and best[-1] in stop_ids
        stream = TextStream(tokenizer, settings.stop_strings)
        for token in best[:-1] if ended else best:
            stream.add(token)
            if stream.stopped:
                break
        reason = "stop_string" if stream.stopped else "stop_token" if ended else "length"
        if on_text is not None and stream.text:
            on_text(row, stream.text)
        results.append(Completion(prompts[row], stream.text, len(best) - ended, seconds, reason))
    return results
