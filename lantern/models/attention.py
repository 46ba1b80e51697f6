"""Causal self-attention and the key/value cache used for fast decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lantern.config import LANTERNConfig
from lantern.models.positions import apply_rotary


class KVCache:
    """Keys and values of every block application, allocated once for `max_length` positions.

    A recursive model applies each block several times; each application is its own layer
    here (`layer = block_index * steps + step`), because each sees different hidden states.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        kv_heads: int,
        head_dim: int,
        max_length: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (num_layers, batch_size, kv_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        self.max_length = max_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values (B, H, L, D) and return all cached ones so far."""
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, num_tokens: int) -> None:
        """Called once per forward pass, after every layer has stored its new positions."""
        self.length += num_tokens

    def reset(self) -> None:
        self.length = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder) batch rows, e.g. to follow surviving beams."""
        self.keys = self.keys[:, rows]
        self.values = self.values[:, rows]


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal attention through PyTorch's fused SDPA kernel."""

    def __init__(self, config: LANTERNConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.kv_heads = config.kv_heads
        self.head_dim = config.head_dim
        qkv_width = (config.num_heads + 2 * config.kv_heads) * config.head_dim
        self.qkv = nn.Linear(config.hidden_size, qkv_width, bias=config.bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, L, C). attn_mask: boolean (B, 1, L, keys), True = may attend; None = causal."""
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.num_heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim],
            dim=-1,
        )
        q = q.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        if rope is not None:
            q = apply_rotary(q, *rope)
            k = apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=attn_mask is None and length > 1,
            enable_gqa=self.kv_heads != self.num_heads,
        )
        y = y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.resid_dropout(self.proj(y))
