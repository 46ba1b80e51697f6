"""The model an export starts from: a run directory or checkpoint, optionally its EMA weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lantern.checkpoint import load_checkpoint, load_model, model_file, step_checkpoints
from lantern.errors import LanternError

EMA_KEY = "ema_state_dict"


def find_ema(path: Path, data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The averaged weights: the file itself when it was saved from the EMA, its EMA state, or
    (for a run directory) the EMA state of the newest full checkpoint."""
    if data.get("weights") == "ema":
        return data["model_state_dict"]
    if isinstance(data.get(EMA_KEY), dict):
        return data[EMA_KEY]
    if path.is_dir():
        for _, file in reversed(step_checkpoints(path)):
            state = load_checkpoint(file).get(EMA_KEY)
            if isinstance(state, dict):
                return state
    raise LanternError(f"{path} holds no EMA weights; train with --ema_decay, or drop --ema")


def load_for_export(path: str | Path, ema: bool = False):
    """(model, tokenizer, checkpoint dict); with `ema`, the averaged weights replace the raw ones."""
    path = Path(path)
    model, tokenizer, data = load_model(path)
    if ema:
        state = find_ema(path, data)
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if model.config.tie_embeddings else set()
        if set(missing) - tied or unexpected:
            raise LanternError(f"the EMA weights in {model_file(path)} do not fit the model "
                               f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), tokenizer, data
