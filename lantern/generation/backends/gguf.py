"""`lantern generate` and `lantern chat` on a .gguf file: the same fronts, run by llama.cpp.

`LlamaCppEngine` is the text engine (`lantern.generation.engine.TextEngine`) for a GGUF file. The
GGUF carries its tokenizer, end-of-sequence id and context; what the PyTorch path offers and
llama.cpp does not (beam search, adaptive depth, another recursion depth, another tokenizer,
another device) is refused by name.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from lantern.chat_template import END_ASSISTANT, USER
from lantern.errors import LanternError
from lantern.export.file_kind import is_gguf_file
from lantern.generation.backends.llamacpp import LlamaCppModel
from lantern.generation.chat_format import ChatFormat, has_own_template, own_format
from lantern.generation.engine import OnText
from lantern.generation.prompts import start_of_prompt
from lantern.generation.settings import GenerationConfig
from lantern.generation.textgen import Completion


def is_gguf(path: str | Path) -> bool:
    """Named .gguf (a file that is no GGUF is refused, naming what it is), or a GGUF by content."""
    return Path(path).suffix == ".gguf" or is_gguf_file(path)


class LlamaCppEngine:
    """A GGUF model in llama.cpp, behind the interface the text fronts use."""

    think_id = None

    def __init__(self, path: str | Path) -> None:
        self.model = LlamaCppModel(path)
        self.context_length = self.model.context_length - 1  # room for one new token
        self.eos_id = self.model.eos_id
        info = self.model.info
        if has_own_template(info["chat_template"]):
            self.chat_format = own_format(info["chat_template"], info["special_tokens"],
                                          (self.eos_id, info["eot_id"]))
        else:
            tags = (self.model.tokenize(tag) for tag in (END_ASSISTANT, USER))
            self.chat_format = ChatFormat(frozenset({self.eos_id, info["eot_id"]} - {None}
                                                    | {t[0] for t in tags if len(t) == 1}))

    def close(self) -> None:
        self.model.close()

    def encode(self, text: str | None) -> list[int]:
        """The prompt's ids by llama.cpp's tokenizer; no prompt starts a new document (EOS)."""
        start = start_of_prompt(text, self.eos_id, "this GGUF")
        return start if start is not None else self.model.tokenize(text)

    def stop_ids(self, chat: bool) -> set[int]:
        return set(self.chat_format.stop_ids) if chat else {self.eos_id} - {None}

    def knows_chat(self) -> bool:
        """Whether the model has a template of its own, or learned LANTERN's chat layout: after
        a user turn it expects `<assistant>`."""
        if self.chat_format.template is not None:
            return True
        tags = self.model.tokenize("<user>hi</user><assistant>")
        if len(tags) < 2:
            return False
        return int(self.model.next_token_logprobs(tags[:-1]).argmax()) == tags[-1]

    def complete(self, prompts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
                 config: GenerationConfig, stop_ids: Collection[int],
                 on_text: OnText | None = None, first_row: int = 0) -> list[Completion]:
        results = []
        for i, (prompt, ids) in enumerate(zip(prompts, prompt_ids, strict=True)):
            if not self.model.can_slide and len(ids) + config.max_new_tokens > self.context_length:
                print(f"lantern: warning: llama.cpp cannot slide a {self.model.info['architecture']} "
                      f"model's learned positions past its context; generation ends at "
                      f"{self.model.context_length} tokens", file=sys.stderr)
            show = None if on_text is None else (lambda piece, row=i: on_text(row, piece))
            results.append(self.model.generate(ids, config, stop_ids, on_text=show, prompt=prompt,
                                               row=first_row + i))
        return results

    def best_beams(self, prompt: str, prompt_ids: Sequence[int], config: GenerationConfig,
                   stop_ids: Collection[int], count: int) -> list[Completion]:
        raise LanternError("--num_beams: not available for a .gguf model (llama.cpp runs it)")
