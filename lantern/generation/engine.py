"""What the text fronts (`lantern generate`, interactive sessions, `lantern chat`) generate with.

A `TextEngine` turns prompt text into ids and ids into finished completions. `TorchEngine` runs
a LANTERN model on the decoding core (sampling, beam search, or the adaptive controller);
`lantern.generation.backends.gguf.LlamaCppEngine` runs a GGUF file in llama.cpp. The fronts are
written once, against this interface.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from lantern.generation.chat_format import ChatFormat, chat_format
from lantern.generation.prompts import chat_stop_ids, encode_prompt, fit_context, trained_on_chat
from lantern.generation.settings import GenerationConfig
from lantern.generation.textgen import Completion, beam_completions, complete
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import Tokenizer

OnText = Callable[[int, str], None]
Complete = Callable[..., list[Completion]]  # complete()'s signature, given a model and tokenizer


class TextEngine(Protocol):
    context_length: int
    eos_id: int | None
    think_id: int | None
    chat_format: ChatFormat  # how a conversation becomes its prompt, and what ends an answer

    def close(self) -> None:
        """Free what the engine holds (llama.cpp's server)."""

    def encode(self, text: str | None) -> list[int]:
        """Prompt ids (no text: a new document); refuses empty or unencodable text."""

    def stop_ids(self, chat: bool) -> set[int]:
        """Tokens that end an answer: EOS, and in chat those of the chat format."""

    def knows_chat(self) -> bool:
        """Whether the model has a chat template of its own or learned LANTERN's layout."""

    def complete(self, prompts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
                 config: GenerationConfig, stop_ids: Collection[int],
                 on_text: OnText | None = None, first_row: int = 0) -> list[Completion]:
        """One completion per prompt; row i samples with seed `config.seed + first_row + i`."""

    def best_beams(self, prompt: str, prompt_ids: Sequence[int], config: GenerationConfig,
                   stop_ids: Collection[int], count: int) -> list[Completion]:
        """The `count` best beam-search hypotheses of one prompt."""


def fit_prompt(ids: list[int], context: int) -> list[int]:
    """The last `context` ids, with a warning on stderr when anything was cut."""
    ids, cut = fit_context(ids, context)
    if cut:
        print(f"lantern: warning: the prompt is longer than the model's context ({context} "
              f"tokens); only its last {context} tokens are used", file=sys.stderr)
    return ids


class TorchEngine:
    """A LANTERN model on the decoding core; `sampler` replaces plain sampling (--adaptive)."""

    def __init__(self, model: LANTERNModel, tokenizer: Tokenizer,
                 sampler: Complete | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.sampler = sampler or complete
        self.context_length = model.config.context_length
        self.eos_id, self.think_id = tokenizer.eos_id, tokenizer.think_id
        self.chat_format = chat_format(tokenizer, chat_stop_ids(tokenizer))

    def close(self) -> None:
        pass

    def encode(self, text: str | None) -> list[int]:
        return encode_prompt(self.tokenizer, text)

    def stop_ids(self, chat: bool) -> set[int]:
        return set(self.chat_format.stop_ids) if chat else {self.eos_id} - {None}

    def knows_chat(self) -> bool:
        return self.chat_format.template is not None or trained_on_chat(self.model, self.tokenizer)

    def complete(self, prompts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
                 config: GenerationConfig, stop_ids: Collection[int],
                 on_text: OnText | None = None, first_row: int = 0) -> list[Completion]:
        return self.sampler(self.model, self.tokenizer, prompts, prompt_ids, config, stop_ids,
                            on_text, first_row=first_row)

    def best_beams(self, prompt: str, prompt_ids: Sequence[int], config: GenerationConfig,
                   stop_ids: Collection[int], count: int) -> list[Completion]:
        return beam_completions(self.model, self.tokenizer, prompt, prompt_ids, config, stop_ids,
                                count)
