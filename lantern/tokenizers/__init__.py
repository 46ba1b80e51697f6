"""Tokenizers behind one interface, stored as one JSON file, loaded by `load_tokenizer`."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from lantern.errors import LanternError
from lantern.tokenizers.base import SPECIAL_TOKENS, Tokenizer
from lantern.tokenizers.bpe import EXTRAS_KEY, HFTokenizerAdapter
from lantern.tokenizers.char import BYTE_TOKENS, CharTokenizer
from lantern.tokenizers.char import FORMAT as CHAR_FORMAT
from lantern.tokenizers.tiktoken_adapter import FORMAT as TIKTOKEN_FORMAT
from lantern.tokenizers.tiktoken_adapter import TiktokenTokenizer

TOKENIZER_FILE = "tokenizer.json"

__all__ = [
    "BYTE_TOKENS",
    "SPECIAL_TOKENS",
    "TOKENIZER_FILE",
    "CharTokenizer",
    "HFTokenizerAdapter",
    "TiktokenTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "resolve_tokenizer",
    "tokenizer_from_json",
]


def tokenizer_from_json(text: str) -> Tokenizer:
    """Rebuild a tokenizer from the JSON document written by `Tokenizer.to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LanternError(f"tokenizer file is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise LanternError("tokenizer file is not a tokenizer (expected a JSON object)")
    if data.get("format") == CHAR_FORMAT:
        return CharTokenizer.from_dict(data)
    if data.get("format") == TIKTOKEN_FORMAT:
        return TiktokenTokenizer(str(data.get("encoding", "gpt2")))
    if isinstance(data.get("model"), dict) and "type" in data["model"]:
        extras = data.pop(EXTRAS_KEY, None)
        if not isinstance(extras, dict | None):
            raise LanternError(f"tokenizer file: {EXTRAS_KEY!r} is not a JSON object")
        try:
            hf = HFTokenizer.from_str(text if extras is None else json.dumps(data))
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise LanternError(f"cannot read Hugging Face tokenizer: {exc}") from None
        extras = extras or {}
        return HFTokenizerAdapter(hf, kind=str(data["model"]["type"]).lower(),
                                  roles=extras.get("roles"), chat_template=extras.get("chat_template"))
    raise LanternError("tokenizer file is not a LANTERN or Hugging Face tokenizer")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from its JSON file, or from a run directory that holds one."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise LanternError(f"tokenizer file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LanternError(f"tokenizer file is not UTF-8 text: {path}") from None
    return tokenizer_from_json(text)


def resolve_tokenizer(spec: str | Path, encoding: str = "gpt2") -> Tokenizer:
    """`tiktoken` (with an encoding name or .tiktoken file) or a tokenizer file / run directory."""
    if str(spec) == "tiktoken":
        return TiktokenTokenizer(encoding)
    return load_tokenizer(spec)
