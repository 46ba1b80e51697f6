"""Training a tokenizer from text files of any size: `lantern tokenizer train`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from lantern.data.text import check_text_file
from lantern.errors import LanternError
from lantern.tokenizers.base import Tokenizer
from lantern.tokenizers.bpe import HFTokenizerAdapter
from lantern.tokenizers.char import CharTokenizer

TOKENIZER_TYPES = ("bpe", "unigram", "char")
_BATCH_CHARS = 1 << 20


def iter_training_text(paths: Sequence[str | Path]) -> Iterator[str]:
    """The files' text in batches of whole lines, so memory stays flat however large they are."""
    for path in paths:
        path = check_text_file(path)
        batch: list[str] = []
        size = 0
        with Path(path).open("r", encoding="utf-8", errors="strict") as f:
            try:
                for line in f:
                    batch.append(line)
                    size += len(line)
                    if size >= _BATCH_CHARS:
                        yield "".join(batch)
                        batch, size = [], 0
            except UnicodeDecodeError:
                raise LanternError(f"data file is not UTF-8 text: {path}") from None
        if batch:
            yield "".join(batch)


def train_tokenizer(paths: Sequence[str | Path], kind: str = "bpe", vocab_size: int = 8000,
                    min_frequency: int = 2, max_token_length: int | None = 16) -> Tokenizer:
    """A BPE or Unigram vocabulary (byte-level: every text round-trips) or a character
    vocabulary with byte fallback, trained on the given files."""
    if kind not in TOKENIZER_TYPES:
        raise LanternError(f"--type must be one of {', '.join(TOKENIZER_TYPES)} (got {kind!r})")
    if not paths:
        raise LanternError("give at least one training file with --data")
    if max_token_length is not None and max_token_length < 1:
        raise LanternError(f"--max_token_length must be positive (got {max_token_length})")
    if min_frequency < 0:
        raise LanternError(f"--min_freq must not be negative (got {min_frequency})")
    for path in paths:
        check_text_file(path)
    texts = iter_training_text(paths)
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind == "unigram":
        return HFTokenizerAdapter.train_unigram(texts, vocab_size, max_token_length)
    return HFTokenizerAdapter.train_bpe(texts, vocab_size, min_frequency, max_token_length)
