"""LANTERN tokenizers as Hugging Face `tokenizers` objects that `AutoTokenizer` loads.

Byte-level BPE and Unigram tokenizers already are `tokenizers` JSON. A character vocabulary
becomes a BPE model with no merges: each character is its own token, and it is the one model
in `tokenizers` with byte fallback (an unseen character becomes its UTF-8 bytes `<0xNN>`), so
ids match LANTERN's exactly, with or without byte fallback.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, decoders, models
from tokenizers import Tokenizer as HFTokenizer

from lantern.chat_template import JINJA_TEMPLATE
from lantern.errors import LanternError
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter, Tokenizer
from lantern.tokenizers.base import UNK

BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))


def char_vocabulary(tokenizer: CharTokenizer) -> tuple[list[str], list[str], bool]:
    """(every token in id order, the special tokens, byte fallback) of a character tokenizer."""
    data = json.loads(tokenizer.to_json())
    specials, fallback = list(data["special_tokens"]), bool(data.get("byte_fallback", False))
    tokens = specials + list(data["chars"]) + (list(BYTE_TOKENS) if fallback else [])
    if len(tokens) != tokenizer.vocab_size:
        raise LanternError("the character tokenizer's vocabulary does not add up; re-train it")
    return tokens, specials, fallback


def special_tokens(tokenizer: Tokenizer) -> list[str]:
    if isinstance(tokenizer, CharTokenizer):
        return char_vocabulary(tokenizer)[1]
    data = json.loads(tokenizer.to_json())
    return [t["content"] for t in data.get("added_tokens", []) if t.get("special")]


def to_hf_tokenizer(tokenizer: Tokenizer) -> HFTokenizer:
    """The `tokenizers` object that encodes every text to the same ids as `tokenizer`."""
    if isinstance(tokenizer, HFTokenizerAdapter):
        return HFTokenizer.from_str(tokenizer.hf.to_str())
    if not isinstance(tokenizer, CharTokenizer):
        raise LanternError(
            f"a {tokenizer.kind} tokenizer has no Hugging Face tokenizer file; char, BPE and "
            "Unigram tokenizers (lantern tokenizer train) export"
        )
    tokens, specials, fallback = char_vocabulary(tokenizer)
    vocab = {token: i for i, token in enumerate(tokens)}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, byte_fallback=fallback))
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return hf


def save_hf_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    """tokenizer.json + tokenizer_config.json (special tokens, chat template) in `directory`."""
    from transformers import PreTrainedTokenizerFast

    hf = to_hf_tokenizer(tokenizer)
    roles = (("bos", tokenizer.bos_id), ("eos", tokenizer.eos_id), ("pad", tokenizer.pad_id),
             ("unk", tokenizer.token_to_id(UNK)))  # an imported vocabulary's own roles
    named = {f"{role}_token": tokenizer.decode([i]) for role, i in roles if i is not None}
    fast = PreTrainedTokenizerFast(tokenizer_object=hf, **named)
    fast.chat_template = tokenizer.chat_template or JINJA_TEMPLATE
    fast.save_pretrained(str(directory))
