"""The one small interface every tokenizer implements, and the reserved special tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from lantern.chat_template import CHAT_TAGS
from lantern.errors import LanternError

PAD, UNK, BOS, EOS, THINK = "<pad>", "<unk>", "<bos>", "<eos>", "<think>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS, THINK, *CHAT_TAGS)
# How imported vocabularies spell the same markers (SentencePiece Llama/Mistral, GPT-2, Llama 3):
# LANTERN's own name wins where a vocabulary has both.
EOS_NAMES = (EOS, "</s>", "<|endoftext|>", "<|end_of_text|>")
BOS_NAMES = (BOS, "<s>", "<|begin_of_text|>")
# Roles a vocabulary can name by id (a GGUF's tokenizer.ggml.*_token_id); they win over names.
ROLES = ("bos", "eos", "eot", "pad")


def check_text(text: str) -> None:
    """Refuse what no tokenizer can encode: anything but a str of valid Unicode. The usual
    culprit is a lone surrogate, which is what Python makes of bytes that are not UTF-8 in
    command-line arguments and file names."""
    if not isinstance(text, str):
        raise LanternError(f"a tokenizer encodes text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LanternError(
            f"the text is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at "
            f"character {exc.start} (was it read from bytes that are not UTF-8?)"
        ) from None


class Tokenizer(ABC):
    """Text <-> token ids. Special tokens are single ids and are never split."""

    kind: str
    roles: Mapping[str, int] = MappingProxyType({})  # role -> id, from the vocabulary's own metadata
    chat_template: str | None = None  # Jinja an imported vocabulary came with

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...

    @abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @abstractmethod
    def to_json(self) -> str:
        """The whole tokenizer as one JSON document (what `tokenizer.json` holds)."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    @property
    def eos_id(self) -> int | None:
        return self.roles.get("eos", self._first_known(EOS_NAMES))

    @property
    def bos_id(self) -> int | None:
        return self.roles.get("bos", self._first_known(BOS_NAMES))

    @property
    def end_of_turn_id(self) -> int | None:
        """The token that ends a chat turn, where the vocabulary names one apart from eos
        (Llama 3's `<|eot_id|>`)."""
        return self.roles.get("eot")

    def _first_known(self, names: Sequence[str]) -> int | None:
        for name in names:
            token_id = self.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    @property
    def pad_id(self) -> int | None:
        return self.roles.get("pad", self.token_to_id(PAD))

    @property
    def think_id(self) -> int | None:
        return self.token_to_id(THINK)

    def untrained_ids(self) -> list[int]:
        """Ids the training data never used, which generation never samples unless the prompt
        holds them (a character vocabulary's byte fallback; none for other kinds)."""
        return []

    def note_training_tokens(self, tokens: np.ndarray) -> None:
        """Remember which of `untrained_ids` a run's training tokens do use after all (a
        vocabulary reused on text with new characters); other kinds have nothing to note."""
        return None

    def special_ids(self) -> set[int]:
        ids = (self.token_to_id(t) for t in SPECIAL_TOKENS)
        return {i for i in ids if i is not None}
