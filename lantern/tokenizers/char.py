"""Character-level tokenizer: one id per character seen in the training text, plus 256 byte
tokens so that a character never seen in training still round-trips exactly."""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Iterable, Sequence

import numpy as np

from lantern.errors import LanternError
from lantern.tokenizers.base import SPECIAL_TOKENS, UNK, Tokenizer, check_text

FORMAT = "lantern-char"
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))  # SentencePiece's and llama.cpp's names
NOTE_SLICE_TOKENS = 1 << 24  # training tokens scanned at once for the byte tokens they use


def special_pattern(special_tokens: Sequence[str]) -> re.Pattern[str]:
    """Matches any of the special tokens, the longest first."""
    ordered = sorted(special_tokens, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(t) for t in ordered) + ")")


_SPECIAL_PATTERN = special_pattern(SPECIAL_TOKENS)


def split_special(text: str, pattern: re.Pattern[str] = _SPECIAL_PATTERN) -> list[str]:
    """Split text around special-token strings, keeping them as separate pieces."""
    if "<" not in text:
        return [text]
    return [piece for piece in pattern.split(text) if piece]


def release_pages(tokens: np.ndarray) -> None:
    """Drop a read-only memory-mapped array's pages from this process's resident memory after
    reading them: the page cache keeps them, but resident memory no longer grows with the file."""
    mapped = getattr(tokens, "_mmap", None)  # numpy's own handle on the mapping
    if mapped is not None and getattr(tokens, "mode", None) == "r" and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


class CharTokenizer(Tokenizer):
    """Ids 0..len(specials)-1 are the special tokens, then the characters in sorted order,
    then (with `byte_fallback`, the default) the byte tokens `<0x00>`..`<0xFF>`.

    A character outside the vocabulary is encoded as the byte tokens of its UTF-8 form, so any
    text round-trips. Vocabularies saved before byte fallback existed load without it and
    keep their old behaviour: unknown characters become `<unk>`.

    The vocabulary comes from the training text, so its byte tokens occur there only when a run
    reuses it on text with new characters; `seen_bytes` holds those bytes (saved as
    `byte_tokens_seen`; a file without the key saw none). The others are `untrained_ids`: a
    model never learned when to emit them, and one alone decodes to "\ufffd".
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = SPECIAL_TOKENS,
                 byte_fallback: bool = True, seen_bytes: Iterable[int] = ()):
        self.tokens = list(special_tokens) + [c for c in chars if c not in special_tokens]
        self._byte_start = len(self.tokens)
        self.byte_fallback = byte_fallback
        if byte_fallback:
            self.tokens += BYTE_TOKENS
        self._ids = {tok: i for i, tok in enumerate(self.tokens)}
        self._specials = set(special_tokens)
        self._pattern = special_pattern(special_tokens)  # this vocabulary's own specials
        self._unk = self._ids[UNK]
        self.seen_bytes = set(seen_bytes) if byte_fallback else set()

    @classmethod
    def train(cls, texts: Iterable[str], byte_fallback: bool = True) -> CharTokenizer:
        chars: set[str] = set()
        for text in texts:
            for piece in split_special(text):
                if piece not in SPECIAL_TOKENS:
                    chars.update(piece)
        return cls(sorted(chars), byte_fallback=byte_fallback)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def untrained_ids(self) -> list[int]:
        if not self.byte_fallback:
            return []
        return [self._byte_start + b for b in range(256) if b not in self.seen_bytes]

    def note_training_tokens(self, tokens: np.ndarray) -> None:
        """One pass over the (memory-mapped) training tokens, a slice at a time, so that memory
        stays flat however large the corpus."""
        if self.byte_fallback:
            for start in range(0, len(tokens), NOTE_SLICE_TOKENS):
                piece = np.asarray(tokens[start:start + NOTE_SLICE_TOKENS])
                used = np.unique(piece[piece >= self._byte_start])
                self.seen_bytes.update(int(i) - self._byte_start for i in used)
                release_pages(tokens)

    def _encode_plain(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        unique, inverse = np.unique(codes, return_inverse=True)
        lookup = np.array([self._ids.get(chr(c), self._unk) for c in unique], dtype=np.int64)
        ids = lookup[inverse]
        if not self.byte_fallback or not (lookup == self._unk).any():
            return ids
        pieces = [[i] if i != self._unk else [self._byte_start + b for b in chr(c).encode("utf-8")]
                  for i, c in zip(ids.tolist(), codes.tolist(), strict=True)]
        return np.fromiter((i for piece in pieces for i in piece), dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        try:
            for piece in split_special(text, self._pattern):
                if piece in self._specials:
                    ids.append(self._ids[piece])
                else:
                    ids.extend(self._encode_plain(piece).tolist())
        except (UnicodeEncodeError, TypeError):  # a lone surrogate, or not text at all
            check_text(text)
            raise
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out: list[str] = []
        pending = bytearray()  # consecutive byte tokens form one UTF-8 sequence
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise LanternError(f"token id {i} is outside this tokenizer's vocabulary")
            if i >= self._byte_start:
                pending.append(i - self._byte_start)
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            tok = self.tokens[i]
            if skip_special_tokens and tok in self._specials:
                continue
            out.append(tok)
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def to_json(self) -> str:
        specials = [t for t in self.tokens[: self._byte_start] if t in self._specials]
        chars = [t for t in self.tokens[: self._byte_start] if t not in self._specials]
        data = {"format": FORMAT, "special_tokens": specials, "chars": chars}
        if self.byte_fallback:
            data["byte_fallback"] = True
        if self.seen_bytes:
            data["byte_tokens_seen"] = sorted(self.seen_bytes)
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        """A saved vocabulary; one without the `byte_fallback` key predates it and has none."""
        try:
            chars, specials = list(data["chars"]), list(data["special_tokens"])
        except (KeyError, TypeError):
            raise LanternError("character tokenizer file lacks its `chars` or `special_tokens`"
                               ) from None
        if not all(isinstance(t, str) for t in chars + specials) or UNK not in specials:
            raise LanternError("character tokenizer file is damaged: its tokens are not text "
                               f"or it has no {UNK}")
        seen = data.get("byte_tokens_seen", [])
        if not isinstance(seen, list) or not all(type(b) is int and 0 <= b < 256 for b in seen):
            raise LanternError("character tokenizer file is damaged: byte_tokens_seen must list "
                               "byte values 0..255")
        return cls(chars, specials, bool(data.get("byte_fallback", False)), seen)
