"""Qwen2 (`Qwen2ForCausalLM`, GGUF `qwen2`): Llama with a bias on the query, key and value
projections only (LANTERN's `qkv_bias` without `bias`).

Its tensors are named as Llama's. llama.cpp's `qwen2` graph rotates in the rotate-half layout
LANTERN uses, so, unlike `llama`, the GGUF keeps query and key rows as they are (llama.cpp's
`convert_hf_to_gguf.py` does not permute Qwen2 either).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.arches.base import effective_window, register
from lantern.export.arches.llama import Llama, is_llama_family

if TYPE_CHECKING:
    from lantern.export.architecture import ExportPlan
    from lantern.tokenizers import Tokenizer


@register
class Qwen2(Llama):
    name = "qwen2"
    settings = "position rope + norm rmsnorm + mlp swiglu + qkv_bias, bias false (Qwen2)"
    hf_model_type = "qwen2"
    gguf_name = "qwen2"

    def matches(self, config: LANTERNConfig) -> bool:
        return (is_llama_family(config) and effective_window(config) is None
                and config.qkv_bias and not config.bias)

    def hf_config(self, model, plan: ExportPlan, tokenizer: Tokenizer) -> Any:
        from transformers import Qwen2Config

        return Qwen2Config(use_sliding_window=False, **self.hf_values(model, plan, tokenizer))

    def fields_from_hf(self, c: dict[str, Any]) -> dict[str, Any]:
        if c.get("use_sliding_window"):
            raise LanternError("Qwen2 sliding-window layers (use_sliding_window) cannot be imported")
        return super().fields_from_hf(c) | dict(bias=False, qkv_bias=True)

    def to_gguf_rows(self, w: np.ndarray, heads: int) -> np.ndarray:
        return w

    def from_gguf_rows(self, w: torch.Tensor, heads: int) -> torch.Tensor:
        return w
