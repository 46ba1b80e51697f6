"""Shared fixtures: tiny real models, tokenizers and text, all made on the spot."""

from __future__ import annotations

import pytest
import torch

from lantern.config import LANTERNConfig
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer

TINY_TEXT = (
    "Once upon a time, a little fox found a red ball in the park. "
    "She said, \"Look what I found!\" Her friend the owl was happy. "
    "They played all day and went home at night.\n"
) * 40


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Token caches go to a temporary folder, never the user's home."""
    monkeypatch.setenv("LANTERN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny_text() -> str:
    return TINY_TEXT


@pytest.fixture
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.train([TINY_TEXT])


def tiny_config(**overrides) -> LANTERNConfig:
    values = dict(vocab_size=40, context_length=32, hidden_size=32, num_heads=4, num_blocks=2,
                  steps_per_block=1)
    values.update(overrides)
    return LANTERNConfig(**values)


@pytest.fixture
def tiny_model() -> LANTERNModel:
    torch.manual_seed(0)
    return LANTERNModel(tiny_config()).eval()


def perturbed_model(tokenizer, **overrides) -> LANTERNModel:
    """A tiny model with weights far from their init, so every mapping error shows (export)."""
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(vocab_size=tokenizer.vocab_size, context_length=64,
                                     **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def save_run(model: LANTERNModel, tokenizer, directory, **fields) -> None:
    """A run directory as training leaves it: `final_model.pt` with the weights, config and
    tokenizer, plus any other checkpoint fields (step, losses)."""
    from lantern.checkpoint import save_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(directory / "final_model.pt", {
        "model_state_dict": model.state_dict(), "config": model.config.to_dict(),
        "tokenizer": tokenizer.to_json(), **fields})
