"""Dataset quality checks: line counts, uniqueness, characters, tokens; dedupe.

Both stream the file once, so a file larger than memory is fine; uniqueness keeps an 8-byte
digest per distinct line, not the line.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from lantern.data.text import check_text_file
from lantern.data.token_store import iter_file_tokens
from lantern.errors import LanternError
from lantern.fileio import atomic_write
from lantern.tokenizers import Tokenizer


def _digest(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()


def iter_lines(path: Path, quiet: bool = True) -> Iterator[str]:
    """Lines of a checked UTF-8 file without their line ends, with a byte progress bar."""
    check_text_file(path)
    with path.open("r", encoding="utf-8", errors="strict", newline="") as f, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}",
        file=sys.stderr, disable=quiet or None,
    ) as bar:
        try:
            for line in f:
                bar.update(len(line.encode("utf-8")))
                yield line.rstrip("\r\n")
        except UnicodeDecodeError:
            raise LanternError(f"data file is not UTF-8 text: {path}") from None


@dataclass
class Stats:
    lines: int = 0
    non_empty: int = 0
    unique: int = 0
    characters: int = 0
    distinct_characters: int = 0
    tokens: int | None = None
    top_tokens: list[tuple[str, int]] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.non_empty - self.unique

    @property
    def unique_share(self) -> float:
        return self.unique / self.non_empty if self.non_empty else 0.0

    def report(self) -> str:
        rows = [("lines", f"{self.lines:,}"), ("non-empty lines", f"{self.non_empty:,}"),
                ("unique non-empty lines", f"{self.unique:,} ({self.unique_share:.1%})"),
                ("duplicate lines", f"{self.duplicates:,}"),
                ("characters", f"{self.characters:,}"),
                ("distinct characters", f"{self.distinct_characters:,}")]
        if self.tokens is not None:
            rows.append(("tokens", f"{self.tokens:,}"))
            rows.append(("top tokens", ", ".join(f"{t!r} {n:,}" for t, n in self.top_tokens)))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def file_stats(path: str | Path, tokenizer: Tokenizer | None = None, top: int = 10,
               quiet: bool = True) -> Stats:
    path = Path(path)
    stats = Stats()
    seen: set[bytes] = set()
    chars: set[str] = set()
    for line in iter_lines(path, quiet):
        stats.lines += 1
        stats.characters += len(line) + 1
        chars.update(line)
        if line.strip():
            stats.non_empty += 1
            seen.add(_digest(line))
    stats.unique = len(seen)
    stats.distinct_characters = len(chars)
    if tokenizer is not None:
        counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
        for ids in iter_file_tokens(path, tokenizer, quiet):
            counts += np.bincount(ids, minlength=tokenizer.vocab_size)[: tokenizer.vocab_size]
        stats.tokens = int(counts.sum())
        best = np.argsort(counts)[::-1][:top]
        stats.top_tokens = [(tokenizer.decode([int(i)]), int(counts[i])) for i in best
                            if counts[i] > 0]
    return stats


def dedupe(path: str | Path, out: str | Path, keep_empty: bool = False, quiet: bool = True
           ) -> tuple[int, int]:
    """Copy `path` to `out` keeping the first copy of each line; returns (kept, dropped)."""
    path, out = Path(path), Path(out)
    kept = dropped = 0
    seen: set[bytes] = set()

    def write(f: IO[bytes]) -> None:
        nonlocal kept, dropped
        for line in iter_lines(path, quiet):
            if not line.strip():
                if keep_empty:
                    f.write(b"\n")
                continue
            digest = _digest(line)
            if digest in seen:
                dropped += 1
                continue
            seen.add(digest)
            f.write((line + "\n").encode("utf-8"))
            kept += 1

    atomic_write(out, write)
    return kept, dropped
