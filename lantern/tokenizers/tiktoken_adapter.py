"""OpenAI's tiktoken encodings (GPT-2 and later) behind LANTERN's interface, offline-first.

An encoding is looked for, in order: a `.tiktoken` file given by path; `NAME.tiktoken` in
LANTERN's cache (`$LANTERN_CACHE/tiktoken/`); then tiktoken's own cache, which tiktoken fills
when it can download. GPT-2's ranks are those of `r50k_base.tiktoken`, so that file serves both.

tiktoken knows one special token, `<|endoftext|>`; LANTERN's `<eos>` maps to it. The other
LANTERN special tokens have no id of their own here and are encoded as plain text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from lantern.errors import LanternError
from lantern.tokenizers.base import EOS, Tokenizer, check_text

FORMAT = "lantern-tiktoken"
ENDOFTEXT = "<|endoftext|>"
_FILE_NAMES = {"gpt2": ("gpt2.tiktoken", "r50k_base.tiktoken")}


def tiktoken_cache_dir() -> Path:
    root = Path(os.environ.get("LANTERN_CACHE", Path.home() / ".cache" / "lantern"))
    return root / "tiktoken"


def _import_tiktoken():
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        raise LanternError("tiktoken is not installed; run `pip install tiktoken`") from None
    return tiktoken


def _from_file(name: str, path: Path):
    """An Encoding built from a local `.tiktoken` rank file, with GPT-2's split pattern."""
    tiktoken = _import_tiktoken()
    from tiktoken_ext.openai_public import r50k_pat_str

    try:
        ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    except Exception as exc:  # malformed lines raise ValueError, binascii.Error, ...
        raise LanternError(f"{path} is not a tiktoken rank file ({exc})") from None
    if not ranks:
        raise LanternError(f"{path} is not a tiktoken rank file (no ranks)")
    return tiktoken.Encoding(name=name, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: max(ranks.values()) + 1})


def load_encoding(encoding: str):
    """The tiktoken Encoding for a name or a `.tiktoken` file, from local files only."""
    path = Path(encoding)
    if path.suffix == ".tiktoken" or path.is_file():
        if not path.is_file():
            raise LanternError(f"tiktoken encoding file not found: {path}")
        return _from_file(path.stem, path)
    for file_name in _FILE_NAMES.get(encoding, (f"{encoding}.tiktoken",)):
        cached = tiktoken_cache_dir() / file_name
        if cached.is_file():
            return _from_file(encoding, cached)
    tiktoken = _import_tiktoken()
    try:
        return tiktoken.get_encoding(encoding)
    except ValueError:
        raise LanternError(f"unknown tiktoken encoding {encoding!r}") from None
    except Exception as exc:
        raise LanternError(
            f"tiktoken encoding {encoding!r} is not available locally and could not be downloaded "
            f"({type(exc).__name__}); put r50k_base.tiktoken in {tiktoken_cache_dir()} or pass "
            "--encoding FILE.tiktoken"
        ) from None


class TiktokenTokenizer(Tokenizer):
    kind = "tiktoken"

    def __init__(self, encoding: str = "gpt2") -> None:
        self.encoding = encoding
        self.enc = load_encoding(encoding)
        self._eot = self.enc.eot_token

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def token_to_id(self, token: str) -> int | None:
        if token in (EOS, ENDOFTEXT):
            return self._eot
        return None

    def _split_eos(self, text: str) -> list[str]:
        return text.replace(ENDOFTEXT, EOS).split(EOS)

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Every core: all pieces of all texts go to tiktoken's thread pool at once."""
        for text in texts:
            check_text(text)  # tiktoken itself would replace a lone surrogate silently
        split = [self._split_eos(t) for t in texts]
        flat = [part for parts in split for part in parts]
        encoded = iter(self.enc.encode_ordinary_batch(flat, num_threads=os.cpu_count() or 1))
        out = []
        for parts in split:
            ids: list[int] = []
            for i in range(len(parts)):
                if i:
                    ids.append(self._eot)
                ids.extend(next(encoded))
            out.append(ids)
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise LanternError("a token id is outside this tokenizer's vocabulary")
        pieces: list[bytes] = []
        start = 0
        for end in [*(k for k, i in enumerate(ids) if i == self._eot), len(ids)]:
            try:
                pieces.append(self.enc.decode_bytes(ids[start:end]))
            except KeyError as exc:
                raise LanternError(f"token id {exc.args[0]} is not in this encoding") from None
            if end < len(ids) and not skip_special_tokens:
                pieces.append(EOS.encode())
            start = end + 1
        return b"".join(pieces).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "encoding": self.encoding})
