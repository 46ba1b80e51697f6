"""The pieces of one transformer block: norms, MLPs, and the block itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lantern.config import LANTERNConfig
from lantern.models.attention import CausalSelfAttention
from lantern.models.kv_cache import CacheWrite, KVCache

RMS_NORM_EPS, LAYER_NORM_EPS = 1e-6, 1e-5  # the defaults of configs without norm_eps


def make_norm(config: LANTERNConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.hidden_size, eps=config.norm_eps or RMS_NORM_EPS)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps or LAYER_NORM_EPS, bias=config.bias)


class MLP(nn.Module):
    """Position-wise feed-forward network: GELU, or SwiGLU (gated, as in LLaMA)."""

    def __init__(self, config: LANTERNConfig) -> None:
        super().__init__()
        self.gated = config.mlp == "swiglu"
        width = config.ffn_size * (2 if self.gated else 1)
        self.up = nn.Linear(config.hidden_size, width, bias=config.bias)
        self.down = nn.Linear(config.ffn_size, config.hidden_size, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, value = self.up(x).chunk(2, dim=-1)
            hidden = F.silu(gate) * value
        else:
            hidden = F.gelu(self.up(x), approximate="tanh")
        return self.dropout(self.down(hidden))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LANTERNConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        write: CacheWrite | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope=rope, cache=cache, layer=layer, write=write)
        return x + self.mlp(self.mlp_norm(x))
