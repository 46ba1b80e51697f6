"""Pieces every architecture's mapping reads the same way: LANTERN's fused query/key/value
projection split, its norm epsilon and special ids, and GGUF metadata values."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lantern.errors import LanternError
from lantern.tokenizers import Tokenizer


def split_qkv(model, block: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of the query, key and value projections of one block."""
    cfg = model.config
    attn = model.transformer.blocks[block].attn
    widths = [cfg.num_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim]
    weights = attn.qkv.weight.detach().split(widths)
    biases = attn.qkv.bias.detach().split(widths) if attn.qkv.bias is not None else [None] * 3
    return list(zip(weights, biases, strict=True))


def norm_eps(model) -> float:
    return float(model.transformer.norm.eps)


def token_ids(tokenizer: Tokenizer) -> dict[str, int | None]:
    """The special ids a `transformers` config names."""
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id}


def float32_array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def required(fields: dict[str, Any], key: str) -> Any:
    """A GGUF metadata value the file must hold."""
    if fields.get(key) is None:
        raise LanternError(f"the file lacks {key}")
    return fields[key]


def float32_value(value: float) -> float:
    """A float32 from the file as the number it was written as (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(value)))
