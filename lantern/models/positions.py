"""Position information: learned or sinusoidal absolute embeddings, or rotary (RoPE).

RoPE uses one layout everywhere (the "rotate half" layout: the first and second halves of each
head are the two coordinates of each rotated pair), in training, caching and export alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine table of "Attention Is All You Need", shape (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class AbsolutePositions(nn.Module):
    """Adds a learned or sinusoidal vector per position to the token embeddings."""

    def __init__(self, kind: str, context_length: int, dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(context_length, dim))
        else:
            self.register_buffer("table", sinusoidal_table(context_length, dim), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.table[position_ids]


class Rotary(nn.Module):
    """Precomputed RoPE angles; `forward` returns (cos, sin) for the given positions."""

    def __init__(self, head_dim: int, context_length: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(context_length, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, L) -> (B, 1, L, head_dim), broadcast over heads
        return self.cos[position_ids].unsqueeze(1), self.sin[position_ids].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate query or key heads x (B, H, L, D) by the angles of their positions."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)
