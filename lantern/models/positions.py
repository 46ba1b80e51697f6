"""Position information: learned or sinusoidal absolute embeddings, or rotary (RoPE).

RoPE uses one layout everywhere (the "rotate half" layout: the first and second halves of each
head are the two coordinates of each rotated pair), in training, caching and export alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The fixed sine/cosine vectors of "Attention Is All You Need" for any positions (...)."""
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)
                          * (-math.log(10000.0) / dim))
    angle = positions.float()[..., None] * frequency
    table = torch.zeros(*positions.shape, dim, device=positions.device)
    table[..., 0::2] = torch.sin(angle)
    table[..., 1::2] = torch.cos(angle[..., : dim // 2])
    return table


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal vectors of positions 0..length-1, shape (length, dim)."""
    return sinusoids(torch.arange(length), dim)


class AbsolutePositions(nn.Module):
    """Adds a learned or sinusoidal vector per position to the token embeddings."""

    def __init__(self, kind: str, context_length: int, dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(context_length, dim))
        else:
            self.register_buffer("table", sinusoidal_table(context_length, dim), persistent=False)

    def cover(self, end: int) -> None:
        """Make positions 0..end-1 available: a sinusoidal table grows (a learned one cannot)."""
        rows, dim = self.table.shape
        if self.kind == "sinusoidal" and end > rows:
            self.table = sinusoidal_table(max(end, 2 * rows), dim).to(self.table)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.table[position_ids]


class Rotary(nn.Module):
    """RoPE angles, precomputed for the context; `cover` extends them for positions beyond it
    (a sliding-window model generating on). `forward` returns (cos, sin)."""

    def __init__(self, head_dim: int, context_length: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        cos, sin = self.angles(torch.arange(context_length))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.float()[..., None] * self.inv_freq.to(positions.device)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()

    def cover(self, end: int) -> None:
        """Make positions 0..end-1 available (the tables at least double when they grow)."""
        rows = self.cos.shape[0]
        if end > rows:
            self.cos, self.sin = self.angles(torch.arange(max(end, 2 * rows),
                                                          device=self.inv_freq.device))

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, L) -> (B, 1, L, head_dim), broadcast over heads
        return self.cos[position_ids].unsqueeze(1), self.sin[position_ids].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate query or key heads x (B, H, L, D) by the angles of their positions."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)
