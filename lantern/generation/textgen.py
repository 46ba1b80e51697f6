"""Text in, text out: prompts -> token ids -> sampling or beam search -> finished completions.

The command line, the interactive session and the Python API share this front. A completion
ends at the first stop token (end-of-sequence, or a chat closing tag), at a stop string (cut off,
not included), or after `max_new_tokens`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from lantern.errors import LanternError
from lantern.generation.beam import beam_search
from lantern.generation.core import generate_stream
from lantern.generation.settings import GenerationConfig
from lantern.generation.streaming import TextStream
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import Tokenizer


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
    model: LANTERNModel,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    prompt_ids: Sequence[Sequence[int]],
    config: GenerationConfig,
    stop_ids: Collection[int] = (),
    on_text: Callable[[int, str], None] | None = None,
    first_row: int = 0,
) -> list[Completion]:
    """One completion per prompt, generated as one batch. `on_text(row, piece)` receives text
    the moment it is final (streaming); row i samples with seed `config.seed + first_row + i`."""
    start = time.perf_counter()
    if config.num_beams > 1:
        return _complete_beams(model, tokenizer, prompts, prompt_ids, config, stop_ids, start,
                               on_text)
    counts = [0] * len(prompts)
    reasons = ["length"] * len(prompts)
    texts = [""] * len(prompts)
    for row, event in generate_stream(model, tokenizer, prompt_ids, config, stop_ids,
                                      first_row=first_row):
        counts[row] += event.stop_reason != "stop_token"
        texts[row] += event.text
        if event.finished:
            reasons[row] = event.stop_reason or "length"
        if event.text and on_text is not None:
            on_text(row, event.text)
    seconds = time.perf_counter() - start
    return [Completion(prompts[row], texts[row], counts[row], seconds, reasons[row])
            for row in range(len(prompts))]


def beam_completions(
    model: LANTERNModel,
    tokenizer: Tokenizer,
    prompt: str,
    prompt_ids: Sequence[int],
    config: GenerationConfig,
    stop_ids: Collection[int],
    count: int,
) -> list[Completion]:
    """The `count` best beams of one prompt (count <= num_beams)."""
    if count > config.num_beams:
        raise LanternError(f"beam search returns at most --num_beams ({config.num_beams}) "
                           f"hypotheses; --num_samples {count} asks for more")
    start = time.perf_counter()
    found = beam_search(model, [prompt_ids], config.num_beams, config.max_new_tokens, stop_ids,
                        config.length_penalty, config.early_stopping, config.steps_per_block,
                        config.compile)
    seconds = time.perf_counter() - start
    return [_beam_text(tokenizer, prompt, h.tokens, config, stop_ids, seconds)
            for h in found[0][:count]]


def _beam_text(tokenizer: Tokenizer, prompt: str, tokens: list[int], config: GenerationConfig,
               stop_ids: Collection[int], seconds: float) -> Completion:
    ended = bool(tokens) and tokens[-1] in stop_ids
    stream = TextStream(tokenizer, config.stop_strings)
    for token in tokens[:-1] if ended else tokens:
        stream.add(token)
        if stream.stopped:
            break
    reason = "stop_string" if stream.stopped else "stop_token" if ended else "length"
    return Completion(prompt, stream.text, len(tokens) - ended, seconds, reason)


def _complete_beams(
    model: LANTERNModel,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    prompt_ids: Sequence[Sequence[int]],
    config: GenerationConfig,
    stop_ids: Collection[int],
    start: float,
    on_text: Callable[[int, str], None] | None,
) -> list[Completion]:
    """The best beam of each prompt; its text arrives in one piece once the search ends."""
    found = beam_search(model, prompt_ids, config.num_beams, config.max_new_tokens, stop_ids,
                        config.length_penalty, config.early_stopping, config.steps_per_block,
                        config.compile)
    seconds = time.perf_counter() - start
    results = []
    for row, hypotheses in enumerate(found):
        result = _beam_text(tokenizer, prompts[row], hypotheses[0].tokens, config, stop_ids, seconds)
        if on_text is not None and result.text:
            on_text(row, result.text)
        results.append(result)
    return results
