"""A run's training data: choose the corpus, build (or reuse) the tokenizer, encode both splits.

Train and validation always share one vocabulary. Token files (`.jsonl`, `.bin` shards) need
the tokenizer that made them; text files and the built-in story corpus can train a new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from lantern.data.stories import build_corpus
from lantern.data.text import check_text_file
from lantern.data.token_store import encode_text, is_token_file, load_tokens, read_text_blocks
from lantern.errors import LanternError
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter, Tokenizer, resolve_tokenizer
from lantern.tokenizers.base import EOS

# Text handed to tokenizer training per block: `tokenizers` buffers 256 of them at a time.
TRAIN_BLOCK_BYTES = 1 << 16


class DataSettings(Protocol):
    """What the data needs to know (the training config's data section provides it)."""

    data_path: str | None
    val_data_path: str | None
    val_fraction: float
    corpus_chars: int
    tokenizer: str
    encoding: str
    vocab_size: int | None


@dataclass
class RunData:
    tokenizer: Tokenizer
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    source: str


def builtin_corpus_text(num_chars: int, seed: int) -> str:
    """The built-in story corpus, each story closed by the end-of-sequence token."""
    return "".join(story + EOS for story in build_corpus(num_chars, seed=seed))


def training_text(paths: Sequence[str | Path], block_bytes: int = TRAIN_BLOCK_BYTES
                  ) -> Iterator[str]:
    """The files' text for a new tokenizer, block by block, so training holds a block, not a
    file. Blocks end where the tokenizers split anyway (see `read_text_blocks`), so the
    vocabulary is the one the whole text gives; the files are checked before any is read."""
    checked = [check_text_file(path) for path in paths]

    def blocks() -> Iterator[str]:
        for path in checked:
            blank = True
            for block in read_text_blocks(path, block_bytes):
                blank = blank and block.isspace()
                yield block
            if blank:
                raise LanternError(f"data file holds only whitespace: {path}")

    return blocks()


def make_tokenizer(cfg: DataSettings, texts: Iterable[str]) -> Tokenizer:
    if cfg.tokenizer == "char":
        return CharTokenizer.train(texts)
    if cfg.tokenizer == "bpe":
        return HFTokenizerAdapter.train_bpe(texts, vocab_size=cfg.vocab_size or 4096)
    if cfg.tokenizer == "tiktoken" or Path(cfg.tokenizer).exists():
        return resolve_tokenizer(cfg.tokenizer, cfg.encoding)
    raise LanternError(
        f"--tokenizer must be char, bpe, tiktoken or a tokenizer file (got {cfg.tokenizer!r})")


def prepare_data(cfg: DataSettings, tokenizer: Tokenizer | None, seed: int) -> RunData:
    """Build (or reuse) the tokenizer and the train/validation token arrays."""
    token_file = cfg.data_path is not None and is_token_file(cfg.data_path)
    known = cfg.tokenizer == "tiktoken" or Path(cfg.tokenizer).exists()
    if token_file and tokenizer is None and not known:
        raise LanternError("token files (.jsonl, .bin) need --tokenizer FILE: the tokenizer that made them")
    if cfg.data_path is None:
        text = builtin_corpus_text(cfg.corpus_chars, seed)
        tokenizer = tokenizer or make_tokenizer(cfg, [text])
        tokens = encode_text(text, tokenizer)
        source = f"built-in story corpus ({len(text):,} characters)"
    else:
        if tokenizer is None:
            paths = [] if token_file else [cfg.data_path]
            if cfg.val_data_path and not is_token_file(cfg.val_data_path) and cfg.tokenizer == "char":
                paths.append(cfg.val_data_path)
            tokenizer = make_tokenizer(cfg, training_text(paths))
        tokens = load_tokens(cfg.data_path, tokenizer)
        source = cfg.data_path
    if cfg.val_data_path:
        val_tokens = load_tokens(cfg.val_data_path, tokenizer)
        train_tokens = tokens
    else:
        split = int(len(tokens) * (1.0 - cfg.val_fraction))
        train_tokens, val_tokens = tokens[:split], tokens[split:]
    return RunData(tokenizer, train_tokens, val_tokens, source)


def sample_prompt(data: RunData) -> list[int]:
    """Documents separated by EOS start a fresh one; other text continues a held-out line."""
    eos = data.tokenizer.eos_id
    head = np.asarray(data.train_tokens[: 1 << 20])
    if eos is not None and np.count_nonzero(head == eos) > 1:
        return [eos]
    return [int(t) for t in data.val_tokens[:16]]
