"""Token ids on disk: text streams through the tokenizer into memory-mapped arrays.

Text is read in blocks and cut only where a newline is followed by a non-space character, a
point where the tokenizers' pre-tokenizers split anyway, so streamed ids equal whole-text ids
while memory stays flat. Each block is encoded as a batch of pieces, which the Rust tokenizers
(and tiktoken) spread over every core.

Three on-disk forms: a cache of encoded text files (keyed by tokenizer and the file's identity,
so editing either re-encodes), JSONL (one JSON array of ids per line), and binary
shards (a 32-byte header, then the ids) that memory-map without a copy.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from lantern.data.text import check_text_file
from lantern.errors import LanternError
from lantern.fileio import atomic_write, json_lines
from lantern.tokenizers import Tokenizer
from lantern.tokenizers.base import EOS

CACHE_FORMAT = "2"  # cached ids from an earlier way of cutting text into pieces are not reused
_PIECE_CHARS = 1 << 15  # pieces encoded in parallel by the Rust tokenizers
_BLOCK_BYTES = 1 << 21  # text read per step (64 pieces); memory use is a small multiple of it
SHARD_MAGIC = b"LNTNTOK1"
_HEADER = struct.Struct("<8sQQQ")  # magic, bytes per id, number of ids, vocabulary size


def cache_dir() -> Path:
    return Path(os.environ.get("LANTERN_CACHE", Path.home() / ".cache" / "lantern")) / "tokens"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def is_token_file(path: str | Path) -> bool:
    """Files that already hold token ids (and so need the tokenizer that made them)."""
    path = Path(path)
    return path.suffix in (".jsonl", ".bin") or (path.is_dir() and any(path.glob("*.bin")))


def _cut(text: str, start: int, limit: int) -> int:
    """Where to end the piece that begins at `start` and may reach `limit`, so that the pieces
    encoded apart give the ids of the whole text under GPT-2's and Llama 3's splits: after a
    newline with a non-space character on each side, else before a space with a non-space
    character on each side, else at the limit. (After a run of newlines is not safe: GPT-2's
    split reads "\n\n" before a word as "\n" + "\n", but as one "\n\n" at the end of a piece.)"""
    if limit >= len(text):
        return len(text)
    for mark, after in (("\n", 1), (" ", 0)):
        end = limit
        while (at := text.rfind(mark, start + 1, end)) > start:
            if not text[at - 1].isspace() and not text[at + 1].isspace():
                return at + after
            end = at
    return limit


def _pieces(text: str) -> Iterator[str]:
    size, start = _PIECE_CHARS, 0
    while start < len(text):
        end = _cut(text, start, start + size)
        yield text[start:end]
        start = end


def read_text_blocks(path: Path, block_bytes: int | None = None,
                     progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """A UTF-8 file as consecutive text blocks, each ending at a safe cut point."""
    block_bytes = block_bytes or _BLOCK_BYTES
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    carry = ""
    consumed = 0
    with path.open("rb") as f:
        while True:
            raw = f.read(block_bytes)
            try:
                text = carry + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                raise LanternError(
                    f"data file is not UTF-8 text (byte {consumed + exc.start}): {path}"
                ) from None
            if "\x00" in text:
                raise LanternError(f"data file looks binary (it contains NUL bytes): {path}")
            consumed += len(raw)
            if progress:
                progress(len(raw))
            if not raw:
                if text:
                    yield text
                return
            end = _cut(text, 0, max(len(text) - 1, 1))
            yield text[:end]
            carry = text[end:]


def encode_text(text: str, tokenizer: Tokenizer) -> np.ndarray:
    """Encode a whole text into a flat id array."""
    return _encode_block(text, tokenizer, token_dtype(tokenizer.vocab_size))


def _encode_block(text: str, tokenizer: Tokenizer, dtype: np.dtype) -> np.ndarray:
    encoded = tokenizer.encode_batch(list(_pieces(text)))
    total = sum(len(ids) for ids in encoded)
    return np.fromiter((i for ids in encoded for i in ids), dtype=dtype, count=total)


def _progress_bar(path: Path, quiet: bool) -> tqdm:
    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"tokenizing {path.name}", disable=quiet or None, file=sys.stderr,
                dynamic_ncols=True)


def iter_file_tokens(path: str | Path, tokenizer: Tokenizer, quiet: bool = True
                     ) -> Iterator[np.ndarray]:
    """Token ids of a text file, block by block, with a progress bar (rate and ETA)."""
    path = check_text_file(path)
    dtype = token_dtype(tokenizer.vocab_size)
    with _progress_bar(path, quiet) as bar:
        for block in read_text_blocks(path, progress=bar.update):
            yield _encode_block(block, tokenizer, dtype)


def encode_file(path: str | Path, tokenizer: Tokenizer, out: str | Path, quiet: bool = True) -> int:
    """Encode a text file of any size into a raw id file; returns the number of ids."""
    count = 0

    def write(f: IO[bytes]) -> None:
        nonlocal count
        for ids in iter_file_tokens(path, tokenizer, quiet):
            f.write(ids.tobytes())
            count += len(ids)

    atomic_write(out, write)
    return count


# --- binary shards ------------------------------------------------------------------------


def write_shards(chunks: Iterable[np.ndarray], out: str | Path, vocab_size: int,
                 shard_tokens: int | None = None) -> list[Path]:
    """Write ids to one shard file `out`, or, with `shard_tokens`, to `out/shard-NNNNN.bin`
    files of at most that many ids each."""
    out = Path(out)
    dtype = token_dtype(vocab_size)
    if shard_tokens is not None and shard_tokens <= 0:
        raise LanternError(f"--shard_tokens must be positive (got {shard_tokens})")
    limit = shard_tokens or sys.maxsize
    paths: list[Path] = []
    buffer: list[np.ndarray] = []
    buffered = 0

    def flush(parts: list[np.ndarray]) -> None:
        ids = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
        path = out if shard_tokens is None else out / f"shard-{len(paths):05d}.bin"
        header = _HEADER.pack(SHARD_MAGIC, dtype.itemsize, len(ids), vocab_size)
        atomic_write(path, lambda f: (f.write(header), f.write(ids.tobytes())))
        paths.append(path)

    if shard_tokens is None:  # one file: stream straight to disk, count in the header at the end
        count = 0

        def write(f: IO[bytes]) -> None:
            nonlocal count
            f.write(b"\0" * _HEADER.size)
            for ids in chunks:
                f.write(ids.astype(dtype, copy=False).tobytes())
                count += len(ids)
            f.seek(0)
            f.write(_HEADER.pack(SHARD_MAGIC, dtype.itemsize, count, vocab_size))

        atomic_write(out, write)
        return [out]
    for ids in chunks:
        while len(ids):
            take = ids[: limit - buffered]
            buffer.append(take)
            buffered += len(take)
            ids = ids[len(take):]
            if buffered == limit:
                flush(buffer)
                buffer, buffered = [], 0
    if buffer or not paths:
        flush(buffer)
    return paths


def read_shard(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """Memory-map one shard file, checking its header against the tokenizer's vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise LanternError(f"data file not found: {path}")
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
    if len(head) < _HEADER.size or head[:8] != SHARD_MAGIC:
        raise LanternError(f"{path} is not a LANTERN token shard (bad header)")
    _, itemsize, count, shard_vocab = _HEADER.unpack(head)
    if itemsize not in (2, 4) or path.stat().st_size != _HEADER.size + itemsize * count:
        raise LanternError(f"{path} is truncated or damaged (size does not match its header)")
    if vocab_size is not None and shard_vocab != vocab_size:
        raise LanternError(
            f"{path} was made with a vocabulary of {shard_vocab}, not this tokenizer's {vocab_size}"
        )
    if count == 0:
        return np.zeros(0, dtype=np.uint16 if itemsize == 2 else np.uint32)
    return np.memmap(path, dtype=np.uint16 if itemsize == 2 else np.uint32, mode="r",
                     offset=_HEADER.size, shape=(count,))


def read_shards(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """One shard file, or a directory of them joined in name order (joined once, then cached)."""
    path = Path(path)
    if path.is_file():
        return read_shard(path, vocab_size)
    files = sorted(path.glob("*.bin"))
    if not files:
        raise LanternError(f"no .bin token shards in {path}")
    shards = [read_shard(f, vocab_size) for f in files]
    if len(shards) == 1:
        return shards[0]
    key = hashlib.sha256("\0".join(
        f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files).encode()
    ).hexdigest()[:32]
    dtype = shards[0].dtype
    cached = cache_dir() / f"{key}.{dtype.name}"
    if not cached.exists():
        atomic_write(cached, lambda f: [f.write(np.asarray(s, dtype=dtype).tobytes())
                                        for s in shards])
    return np.memmap(cached, dtype=dtype, mode="r")


# --- JSONL --------------------------------------------------------------------------------


def iter_documents(path: str | Path) -> Iterator[str]:
    """Documents of a text file: one per line (blank lines skip); a line may hold several
    separated by `<eos>`."""
    path = check_text_file(path)
    with path.open("r", encoding="utf-8", errors="strict", newline="\n") as f:
        try:
            for line in f:
                for doc in line.rstrip("\n").split(EOS):
                    if doc.strip():
                        yield doc
        except UnicodeDecodeError:
            raise LanternError(f"data file is not UTF-8 text: {path}") from None


def iter_jsonl_rows(docs: Iterable[str], tokenizer: Tokenizer, max_length: int,
                    add_eos: bool = True, batch: int = 1024) -> Iterator[list[int]]:
    """Rows of at most `max_length` ids; each document ends with `<eos>` and a long one fills
    several rows, so nothing is dropped."""
    if max_length <= 0:
        raise LanternError(f"--max_length must be positive (got {max_length})")
    eos = tokenizer.eos_id if add_eos else None
    pending: list[str] = []

    def emit(texts: list[str]) -> Iterator[list[int]]:
        for ids in tokenizer.encode_batch(texts):
            if eos is not None:
                ids.append(eos)
            for start in range(0, len(ids), max_length):
                yield ids[start:start + max_length]

    for doc in docs:
        pending.append(doc)
        if len(pending) == batch:
            yield from emit(pending)
            pending = []
    if pending:
        yield from emit(pending)


def write_jsonl(rows: Iterable[list[int]], out: str | Path) -> int:
    count = 0

    def write(f: IO[bytes]) -> None:
        nonlocal count
        for row in rows:
            f.write((json.dumps(row, separators=(",", ":")) + "\n").encode())
            count += 1

    atomic_write(out, write)
    return count


def read_jsonl_tokens(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """JSONL token files: one JSON array of ids per line, concatenated in order."""
    path = Path(path)
    if not path.is_file():
        raise LanternError(f"data file not found: {path}")
    rows = [np.array(row, dtype=np.int64) for row in json_lines(
        path, "a JSON array of token ids",
        lambda v: isinstance(v, list) and all(isinstance(i, int) and i >= 0 for i in v))]
    ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    if ids.size == 0:
        raise LanternError(f"data file holds no token ids: {path}")
    if vocab_size is not None and int(ids.max()) >= vocab_size:
        raise LanternError(
            f"{path} holds token id {int(ids.max())}, outside the vocabulary of {vocab_size}"
        )
    return ids.astype(token_dtype(int(ids.max()) + 1))


# --- the one entry point the trainer uses -------------------------------------------------


def load_tokens(path: str | Path, tokenizer: Tokenizer, quiet: bool = True) -> np.ndarray:
    """Token ids of a text file, a JSONL file, a shard file or a directory of shards; text is
    encoded once (streaming) and then memory-mapped from the cache."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl_tokens(path, tokenizer.vocab_size)
    if path.suffix == ".bin" or path.is_dir():
        tokens = read_shards(path, tokenizer.vocab_size)
        if len(tokens) == 0:
            raise LanternError(f"data file holds no token ids: {path}")
        return tokens
    check_text_file(path)
    stat = path.resolve().stat()
    key = hashlib.sha256("\0".join(
        [CACHE_FORMAT, tokenizer.to_json(), str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    ).encode()).hexdigest()[:32]
    dtype = token_dtype(tokenizer.vocab_size)
    cached = cache_dir() / f"{key}.{dtype.name}"
    if not cached.exists():
        encode_file(path, tokenizer, cached, quiet=quiet)
    if cached.stat().st_size == 0:
        raise LanternError(f"data file encodes to no tokens: {path}")
    return np.memmap(cached, dtype=dtype, mode="r")
