"""Pause-token training: THINK tokens inserted at random places, their targets ignored.

The model never has to predict a THINK token, but it learns to read one as an extra
computation step before the next real token, which adaptive generation can later buy on demand.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def insert_pause_tokens(
    x: torch.Tensor, y: torch.Tensor, think_id: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert `count` THINK tokens at random positions of each row of a (B, L) batch.

    The window keeps its length L (the tail is dropped); targets at THINK positions, i.e.
    "predict THINK", become -100, and the position after a THINK predicts the next real token.
    """
    if count <= 0:
        return x, y
    batch, length = x.shape
    sequence = torch.cat([x, y[:, -1:]], dim=1)  # (B, L + 1)
    total = length + 1 + count
    slots = torch.rand(batch, total, device=x.device).topk(count, dim=1).indices
    is_think = torch.zeros(batch, total, dtype=torch.bool, device=x.device)
    is_think.scatter_(1, slots, True)
    padded = torch.full((batch, total), think_id, dtype=x.dtype, device=x.device)
    padded[~is_think] = sequence.reshape(-1)
    padded, is_think = padded[:, : length + 1], is_think[:, : length + 1]
    targets = padded[:, 1:].masked_fill(is_think[:, 1:], IGNORE_INDEX)
    return padded[:, :-1], targets
