"""The model builder: a preset plus shape overrides, sized to the tokenizer and the window; or
a pretrained model to continue from (`--init_from`: a GGUF file, a known model name, or a
transformers directory)."""

from __future__ import annotations

import dataclasses

from lantern.config import LANTERNConfig, preset_config
from lantern.errors import LanternError
from lantern.models.lantern_model import LANTERNModel
from lantern.pretrained import load_pretrained
from lantern.tokenizers import Tokenizer
from lantern.training.settings import MODEL_SHAPE_FLAGS, ModelSection


def build_model_config(cfg: ModelSection, vocab_size: int, seq_length: int | None) -> LANTERNConfig:
    overrides = {name: getattr(cfg, name) for name in MODEL_SHAPE_FLAGS if name != "config"}
    base = preset_config(cfg.config, **overrides)
    return dataclasses.replace(base, vocab_size=vocab_size, context_length=seq_length or base.context_length)


def shape_overrides(cfg: ModelSection) -> list[str]:
    return [f"--{name}" for name in MODEL_SHAPE_FLAGS if name != "config" and getattr(cfg, name) is not None]


def load_initial_model(cfg: ModelSection, seq_length: int | None) -> tuple[LANTERNModel, Tokenizer]:
    """Weights and tokenizer of a pretrained model, to fine-tune. `seq_length` is then the
    training window only: the model keeps its own context for generation."""
    given = shape_overrides(cfg)
    if given:
        raise LanternError(f"--init_from takes the model's shape from {cfg.init_from}; "
                           f"drop {', '.join(given)}")
    model, tokenizer = load_pretrained(cfg.init_from)
    if seq_length is not None and seq_length > model.config.context_length:
        raise LanternError(f"--seq_length {seq_length}: the model in {cfg.init_from} has context "
                           f"{model.config.context_length}; train on windows no longer than that")
    return model, tokenizer
