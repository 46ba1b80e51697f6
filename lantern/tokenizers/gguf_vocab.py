"""A tokenizer from a GGUF file's metadata, encoding text to the ids llama.cpp gives.

A byte-level BPE vocabulary (`tokenizer.ggml.model` "gpt2": tokens, merges, and the
pre-tokenizer named by `tokenizer.ggml.pre`) becomes a Hugging Face `tokenizers` BPE; a
character vocabulary as `lantern export` writes it ("llama" model, one character per token
plus 256 byte tokens) becomes LANTERN's character tokenizer again. The bos, eos, end-of-turn
and padding ids and the chat template come from the metadata, never from token names.
Anything else is refused by name: its ids would differ from llama.cpp's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from lantern.errors import LanternError
from lantern.tokenizers.base import Tokenizer
from lantern.tokenizers.bpe import HFTokenizerAdapter
from lantern.tokenizers.char import BYTE_TOKENS, CharTokenizer

NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 3, 4, 6  # gguf.TokenType values
SPM_SPACE = "\u2581"  # how a "llama" (SentencePiece) vocabulary writes a space
ROLE_KEYS = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
             "eot": "tokenizer.ggml.eot_token_id", "pad": "tokenizer.ggml.padding_token_id"}
# llama.cpp's Llama 3 split (the same pattern as Llama 3's own tokenizer.json)
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gpt2_split() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def smollm_split() -> pre_tokenizers.PreTokenizer:
    """llama.cpp's "smollm": every digit alone, then GPT-2's split."""
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2_split()])


def llama3_split() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


# tokenizer.ggml.pre -> (pre-tokenizer, whether a word already in the vocabulary skips the merges)
PRE_TOKENIZERS: dict[str, tuple[Callable[[], pre_tokenizers.PreTokenizer], bool]] = {
    "gpt-2": (gpt2_split, False),
    "smollm": (smollm_split, False),
    "llama-bpe": (llama3_split, True),
    "llama3": (llama3_split, True),
}


def pre_tokenizer_name(hf: HFTokenizer) -> str:
    """The `tokenizer.ggml.pre` name of the split `hf` uses, for an export: llama.cpp must cut
    text where the tokenizer does (SmolLM2's "smollm" writes every digit alone)."""
    own = json.loads(hf.to_str())
    for name, (split, ignore_merges) in PRE_TOKENIZERS.items():
        probe = HFTokenizer(models.BPE())
        probe.pre_tokenizer = split()
        if (own["pre_tokenizer"] == json.loads(probe.to_str())["pre_tokenizer"]
                and bool(own["model"].get("ignore_merges")) == ignore_merges):
            return name
    raise LanternError("llama.cpp has no pre-tokenizer that splits text as this BPE tokenizer does "
                       f"(it knows {', '.join(PRE_TOKENIZERS)}); export with --format hf")


def role_ids(fields: Mapping[str, Any]) -> dict[str, int]:
    return {role: int(fields[key]) for role, key in ROLE_KEYS.items() if fields.get(key) is not None}


def byte_level_bpe(fields: Mapping[str, Any], tokens: list[str], types: list[int]) -> HFTokenizerAdapter:
    pre = fields.get("tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise LanternError(f"the vocabulary splits text as {pre!r} (tokenizer.ggml.pre), which LANTERN "
                           f"cannot reproduce; it reads: {', '.join(PRE_TOKENIZERS)}")
    split, ignore_merges = PRE_TOKENIZERS[pre]
    merges = []
    for merge in fields.get("tokenizer.ggml.merges") or []:
        pair = tuple(merge.split(" "))
        if len(pair) != 2:
            raise LanternError(f"the merge {merge!r} is not two tokens separated by a space")
        merges.append(pair)
    vocab = {token: i for i, token in enumerate(tokens)}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    hf.pre_tokenizer = split()
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, kind in zip(tokens, types, strict=True) if kind == CONTROL])
    hf.add_tokens([AddedToken(t, special=False, normalized=False)
                   for t, kind in zip(tokens, types, strict=True) if kind == USER_DEFINED])
    return HFTokenizerAdapter(hf, "bpe", roles=role_ids(fields),
                              chat_template=fields.get("tokenizer.chat_template"))


def lantern_characters(tokens: list[str], types: list[int]) -> CharTokenizer:
    """The character vocabulary `lantern export` wrote: control tokens, single characters (a
    space spelled as SPM_SPACE), then the 256 byte tokens."""
    plain = [t.replace(SPM_SPACE, " ") for t in tokens]
    specials = [t for t, kind in zip(plain, types, strict=True) if kind == CONTROL]
    chars = [t for t, kind in zip(plain, types, strict=True) if kind == NORMAL]
    if plain == specials + chars + list(BYTE_TOKENS) and all(len(c) == 1 for c in chars):
        try:
            return CharTokenizer(chars, specials, byte_fallback=True)
        except KeyError:  # no <unk> among the specials
            pass
    raise LanternError("this SentencePiece (\"llama\") vocabulary is not a character vocabulary "
                       "LANTERN wrote; LANTERN reads byte-level BPE (\"gpt2\") vocabularies and its own")


def tokenizer_from_gguf(fields: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer the metadata describes (`fields`: key -> value, as `gguf` reads them)."""
    tokens = list(fields.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise LanternError("the file holds no vocabulary (tokenizer.ggml.tokens)")
    types = [int(t) for t in fields.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)]
    if len(types) != len(tokens):
        raise LanternError(f"the vocabulary has {len(tokens)} tokens but {len(types)} token types")
    if len(set(tokens)) != len(tokens):
        seen: set[str] = set()
        twice = next(t for t in tokens if t in seen or seen.add(t))
        raise LanternError(f"the vocabulary lists the token {twice!r} more than once")
    model = fields.get("tokenizer.ggml.model")
    if model == "gpt2":
        tokenizer: Tokenizer = byte_level_bpe(fields, tokens, types)
    elif model == "llama":
        tokenizer = lantern_characters(tokens, types)
    else:
        raise LanternError(f"a {model!r} vocabulary (tokenizer.ggml.model) cannot be imported; byte-level "
                           "BPE (gpt2) and LANTERN's own character vocabularies can")
    if tokenizer.vocab_size != len(tokens):
        raise LanternError(f"the vocabulary of {len(tokens)} tokens rebuilt as {tokenizer.vocab_size}")
    return tokenizer
