"""Byte-level BPE and Unigram on Hugging Face `tokenizers`: any UTF-8 text round-trips exactly.

Both models work on the 256 byte symbols of the ByteLevel pre-tokenizer, so no character is
ever unknown; the special tokens are added tokens, matched before pre-tokenization and never
split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from lantern.errors import LanternError
from lantern.tokenizers.base import ROLES, SPECIAL_TOKENS, UNK, Tokenizer, check_text

# The key under which LANTERN keeps what `tokenizers` JSON has no place for: role ids and the
# chat template an imported vocabulary came with. `tokenizer_from_json` removes it again.
EXTRAS_KEY = "lantern"
MIN_BPE_VOCAB = len(SPECIAL_TOKENS) + 256  # specials + the 256 byte symbols


def check_vocab_size(vocab_size: int, kind: str) -> None:
    if vocab_size < MIN_BPE_VOCAB:
        raise LanternError(
            f"vocab_size {vocab_size} is too small for {kind}: it needs at least {MIN_BPE_VOCAB} "
            f"({len(SPECIAL_TOKENS)} special tokens + 256 bytes)"
        )


def _byte_level(model) -> HFTokenizer:
    tokenizer = HFTokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class HFTokenizerAdapter(Tokenizer):
    """Any Hugging Face `tokenizers` tokenizer (BPE, Unigram, ...) behind LANTERN's interface.

    `roles` (bos, eos, eot, pad ids) and `chat_template` are what an imported vocabulary states
    about itself (GGUF metadata); a tokenizer LANTERN trained has neither and finds its markers
    by name.
    """

    def __init__(self, tokenizer: HFTokenizer, kind: str = "bpe", roles: Mapping[str, int] | None = None,
                 chat_template: str | None = None) -> None:
        self.hf = tokenizer
        self.kind = kind
        unknown = sorted(set(roles or {}) - set(ROLES))
        if unknown:
            raise LanternError(f"unknown token roles {unknown}; known: {', '.join(ROLES)}")
        size = self.vocab_size
        for role, token_id in (roles or {}).items():
            if type(token_id) is not int or not 0 <= token_id < size:
                raise LanternError(f"the {role} token id {token_id} is outside the vocabulary (size {size})")
        self.roles = dict(roles or {})
        self.chat_template = chat_template

    @classmethod
    def train_bpe(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        min_frequency: int = 2,
        max_token_length: int | None = None,
    ) -> HFTokenizerAdapter:
        check_vocab_size(vocab_size, "BPE")
        tokenizer = _byte_level(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            max_token_length=max_token_length,
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer, "bpe")

    @classmethod
    def train_unigram(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        max_token_length: int | None = None,
    ) -> HFTokenizerAdapter:
        check_vocab_size(vocab_size, "Unigram")
        tokenizer = _byte_level(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            unk_token=UNK,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            max_piece_length=max_token_length or 16,
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer, "unigram")

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        try:
            return self.hf.encode(text, add_special_tokens=False).ids
        except TypeError:  # what the Rust side raises for a lone surrogate or a non-str
            check_text(text)
            raise

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        try:
            encodings = self.hf.encode_batch(texts, add_special_tokens=False)
        except TypeError:
            for text in texts:
                check_text(text)
            raise
        return [e.ids for e in encodings]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise LanternError("a token id is outside this tokenizer's vocabulary")
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def to_json(self) -> str:
        text = self.hf.to_str()
        if not self.roles and self.chat_template is None:
            return text
        extras = {"roles": self.roles, "chat_template": self.chat_template}
        return json.dumps({**json.loads(text), EXTRAS_KEY: extras}, ensure_ascii=False)
