"""Byte-level BPE on Hugging Face `tokenizers`: any UTF-8 text round-trips exactly."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from lantern.errors import LanternError
from lantern.tokenizers.base import SPECIAL_TOKENS, Tokenizer

MIN_BPE_VOCAB = len(SPECIAL_TOKENS) + 256  # specials + the 256 byte symbols


class HFTokenizerAdapter(Tokenizer):
    """Any Hugging Face `tokenizers` tokenizer (BPE, Unigram, ...) behind LANTERN's interface."""

    def __init__(self, tokenizer: HFTokenizer, kind: str = "bpe") -> None:
        self.hf = tokenizer
        self.kind = kind

    @classmethod
    def train_bpe(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        min_frequency: int = 2,
        max_token_length: int | None = None,
    ) -> HFTokenizerAdapter:
        if vocab_size < MIN_BPE_VOCAB:
            raise LanternError(
                f"vocab_size {vocab_size} is too small for BPE: it needs at least {MIN_BPE_VOCAB} "
                f"({len(SPECIAL_TOKENS)} special tokens + 256 bytes)"
            )
        tokenizer = HFTokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
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

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise LanternError("a token id is outside this tokenizer's vocabulary")
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def to_json(self) -> str:
        return self.hf.to_str()
