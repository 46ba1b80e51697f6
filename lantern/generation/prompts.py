"""Prompt text -> token ids: checks, the context limit, and the chat template.

A prompt longer than the model's context is not an error: generation slides its window past
the context anyway, so a long prompt is treated the same way (its last `context` tokens are
kept) and the caller warns the user once.
"""

from __future__ import annotations

import torch

from lantern.chat_template import ASSISTANT, END_ASSISTANT, USER
from lantern.errors import LanternError
from lantern.tokenizers import Tokenizer
from lantern.tokenizers.base import UNK


def start_of_prompt(prompt: str | None, eos_id: int | None, holder: str) -> list[int] | None:
    """The one rule for prompts every engine shares: no prompt means "start a new document"
    (the end-of-sequence token of `holder`, "this tokenizer" or "this GGUF"); an empty one is an
    error. None: the prompt is text to encode."""
    if prompt is None:
        if eos_id is None:
            raise LanternError(f"{holder} has no end-of-sequence token; give a prompt")
        return [eos_id]
    if not prompt:
        raise LanternError("the prompt is empty; give some text, or leave the prompt out")
    return None


def encode_prompt(tokenizer: Tokenizer, prompt: str | None) -> list[int]:
    """Prompt ids; no prompt means "start a new document" (the end-of-sequence token)."""
    start = start_of_prompt(prompt, tokenizer.eos_id, "this tokenizer")
    if start is not None:
        return start
    ids = tokenizer.encode(prompt)
    unk = tokenizer.token_to_id(UNK)
    if unk is not None and unk in ids and UNK not in prompt:
        unknown = "".join(sorted({c for c in prompt if tokenizer.encode(c) == [unk]}))
        raise LanternError(
            f"the prompt has characters this model's tokenizer does not know: {unknown!r} "
            "(this vocabulary predates byte fallback; retrain to accept any text)"
        )
    if not ids:
        raise LanternError("the prompt encodes to no tokens")
    return ids


def fit_context(ids: list[int], context: int) -> tuple[list[int], bool]:
    """The last `context` ids, and whether anything was cut."""
    return (ids[-context:], True) if len(ids) > context else (ids, False)


def chat_messages(history: list[tuple[str, str]], message: str,
                  system: str | None = None) -> list[dict[str, str]]:
    """A conversation so far, and the new message, as chat messages."""
    messages = [{"role": "system", "content": system}] if system else []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": message}]


def chat_stop_ids(tokenizer: Tokenizer) -> set[int]:
    """Tokens that end an answer in LANTERN's layout: end-of-sequence, end-of-turn, the closing
    tag, or a new user turn."""
    ids = (tokenizer.eos_id, tokenizer.end_of_turn_id, tokenizer.token_to_id(END_ASSISTANT),
           tokenizer.token_to_id(USER))
    return {i for i in ids if i is not None}


@torch.inference_mode()
def trained_on_chat(model, tokenizer: Tokenizer) -> bool:
    """Whether the model learned the chat layout: after a user turn it expects `<assistant>`.

    A model that never saw the tags in training gives them almost no probability.
    """
    assistant = tokenizer.token_to_id(ASSISTANT)
    if assistant is None:
        return False
    ids = tokenizer.encode("<user>Hello</user>")
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([ids[-model.config.context_length:]], device=device))
    return float(logits[0, -1].float().softmax(dim=-1)[assistant]) > 0.5
