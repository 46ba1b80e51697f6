"""Token ids on disk: text is encoded once and cached as a memory-mapped array.

The cache key covers the tokenizer and the file's identity (path, size, modification time),
so editing either re-encodes, and training runs on the same data share one cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lantern.data.text import check_text_file
from lantern.errors import LanternError
from lantern.fileio import atomic_write
from lantern.tokenizers import Tokenizer

_PIECE_CHARS = 1 << 16  # pieces encoded in parallel by the Rust tokenizers


def cache_dir() -> Path:
    return Path(os.environ.get("LANTERN_CACHE", Path.home() / ".cache" / "lantern")) / "tokens"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _pieces(text: str) -> Iterator[str]:
    """Cut text into pieces of about _PIECE_CHARS, each ending at a line break."""
    start = 0
    while start < len(text):
        end = min(len(text), start + _PIECE_CHARS)
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        yield text[start:end]
        start = end


def encode_text(text: str, tokenizer: Tokenizer) -> np.ndarray:
    """Encode a whole text into a flat id array."""
    dtype = token_dtype(tokenizer.vocab_size)
    pieces = list(_pieces(text))
    encoded = tokenizer.encode_batch(pieces)
    return np.fromiter((i for ids in encoded for i in ids), dtype=dtype) if encoded else np.zeros(
        0, dtype=dtype
    )


def read_jsonl_tokens(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """Seed 004's token files: one JSON array of ids per line, concatenated in order."""
    path = Path(path)
    if not path.is_file():
        raise LanternError(f"data file not found: {path}")
    rows: list[list[int]] = []
    with path.open("r", encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise LanternError(f"{path}:{number}: not a JSON array of token ids") from None
            if not isinstance(row, list) or not all(isinstance(i, int) and i >= 0 for i in row):
                raise LanternError(f"{path}:{number}: not a JSON array of token ids")
            rows.append(row)
    ids = np.fromiter((i for row in rows for i in row), dtype=np.int64)
    if ids.size == 0:
        raise LanternError(f"data file holds no token ids: {path}")
    if vocab_size is not None and int(ids.max()) >= vocab_size:
        raise LanternError(
            f"{path} holds token id {int(ids.max())}, outside the vocabulary of {vocab_size}"
        )
    return ids.astype(token_dtype(int(ids.max()) + 1))


def load_tokens(path: str | Path, tokenizer: Tokenizer) -> np.ndarray:
    """Token ids of a text or JSONL file; text is encoded once and then memory-mapped."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl_tokens(path, tokenizer.vocab_size)
    check_text_file(path)
    stat = path.resolve().stat()
    key = hashlib.sha256(
        "\0".join([tokenizer.to_json(), str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]).encode()
    ).hexdigest()[:32]
    dtype = token_dtype(tokenizer.vocab_size)
    cached = cache_dir() / f"{key}.{dtype.name}"
    if not cached.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise LanternError(f"data file is not UTF-8 text (byte {exc.start}): {path}") from None
        ids = encode_text(text, tokenizer)
        atomic_write(cached, lambda f: f.write(ids.tobytes()))
    if cached.stat().st_size == 0:
        raise LanternError(f"data file encodes to no tokens: {path}")
    return np.memmap(cached, dtype=dtype, mode="r")
