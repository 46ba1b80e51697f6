"""Byte-fallback tokens the training data never used are never sampled (one alone decodes to
"\ufffd"), unless the prompt holds them; vocabularies reused on new text keep the bytes they saw."""

from __future__ import annotations

import json

import pytest
import torch

from lantern.checkpoint import load_model
from lantern.generation.core import generate_stream, untrained_mask
from lantern.generation.settings import GenerationConfig
from lantern.tokenizers import CharTokenizer, load_tokenizer, tokenizer_from_json
from lantern.training.trainer import TrainConfig, train
from tests.conftest import TINY_TEXT

TINY = dict(config="nano", hidden_size=32, num_heads=2, num_blocks=1, seq_length=16, batch_size=4,
            max_steps=3, eval_interval=3, eval_batches=1, num_samples=0, sample_length=0)


@pytest.fixture(scope="module")
def brief_run(tmp_path_factory):
    """A character model after 3 steps: its byte tokens still get real probability."""
    out = tmp_path_factory.mktemp("brief")
    (out / "text.txt").write_text(TINY_TEXT, encoding="utf-8")
    train(TrainConfig(data_path=str(out / "text.txt"), output_dir=str(out / "run"), **TINY),
          quiet=True)
    model, tokenizer, _ = load_model(out / "run")
    return model, tokenizer


def sampled(model, tokenizer, prompt: str, masked: bool) -> list[int]:
    """32 samples of 24 tokens at temperature 1.5; the tokenizer's absence = no masking."""
    config = GenerationConfig(max_new_tokens=24, temperature=1.5, seed=0)
    ids = [tokenizer.encode(prompt)] * 32
    return [event.token for _, event in
            generate_stream(model, tokenizer if masked else None, ids, config)]


def byte_ids(tokenizer: CharTokenizer) -> set[int]:
    return {tokenizer.token_to_id(f"<0x{b:02X}>") for b in range(256)}


def test_a_briefly_trained_char_model_never_samples_byte_tokens(brief_run):
    model, tokenizer = brief_run
    bytes_ = byte_ids(tokenizer)
    assert len(bytes_) == 256
    raw = sampled(model, tokenizer, "Once upon", masked=False)
    assert bytes_ & set(raw), "the model must emit byte tokens unmasked, or this test shows nothing"
    tokens = sampled(model, tokenizer, "Once upon", masked=True)
    assert not bytes_ & set(tokens)
    text = tokenizer.decode(tokens)
    assert "\ufffd" not in text


def test_a_prompt_with_a_character_outside_the_vocabulary_still_works(brief_run):
    model, tokenizer = brief_run
    prompt = "Once \u2603 upon"  # a snowman: not in the training text
    snowman = set(tokenizer.encode("\u2603"))
    assert len(snowman) == 3 and snowman <= byte_ids(tokenizer)  # its three UTF-8 bytes
    mask = untrained_mask(tokenizer, tokenizer.encode(prompt), tokenizer.vocab_size, "cpu")[0]
    assert not mask[sorted(snowman)].any()  # the prompt's own bytes stay samplable
    assert mask.sum() == 256 - 3
    tokens = sampled(model, tokenizer, prompt, masked=True)
    assert set(tokens) <= set(range(tokenizer.vocab_size)) - (byte_ids(tokenizer) - snowman)
    assert tokenizer.decode(tokenizer.encode(prompt) + tokens[:24]).startswith(prompt)


def test_old_vocabularies_load_and_mask_every_byte():
    """A tokenizer.json from before `byte_tokens_seen` saw no byte tokens."""
    tokenizer = CharTokenizer.train(["abc"])
    data = json.loads(tokenizer.to_json())
    assert "byte_tokens_seen" not in data and data["byte_fallback"]
    old = tokenizer_from_json(json.dumps(data))
    assert len(old.untrained_ids()) == 256
    assert untrained_mask(old, old.encode("abc"), old.vocab_size, "cpu")[0].sum() == 256


def test_a_vocabulary_reused_on_new_characters_keeps_their_bytes(tmp_path):
    """The run's data holds "é", which the reused vocabulary spells in byte tokens: the model
    learned them, so generation may emit them."""
    (tmp_path / "tok.json").write_text(CharTokenizer.train([TINY_TEXT]).to_json())
    (tmp_path / "text.txt").write_text(TINY_TEXT.replace("park", "caf\u00e9"), encoding="utf-8")
    train(TrainConfig(data_path=str(tmp_path / "text.txt"), tokenizer=str(tmp_path / "tok.json"),
                      output_dir=str(tmp_path / "run"), **TINY), quiet=True)
    saved = load_tokenizer(tmp_path / "run" / "tokenizer.json")
    e_acute = set(saved.encode("\u00e9"))
    assert len(e_acute) == 2
    assert e_acute.isdisjoint(saved.untrained_ids())
    assert len(saved.untrained_ids()) == 254
    mask = untrained_mask(saved, saved.encode("x"), saved.vocab_size, torch.device("cpu"))[0]
    assert not mask[sorted(e_acute)].any()
