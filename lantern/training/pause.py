"""Pause-token training: THINK tokens inserted into training windows, their targets ignored.

The model never has to predict a THINK token, but it learns to read one as an extra
computation step before the next real token, which adaptive generation can later buy on demand.
Pauses go at random places, or after a marker token (e.g. the `=` before an answer), where the
computation they buy is needed (Goyal et al. 2023: pauses help only where trained to).
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
    return _window(padded, is_think, length)


def insert_pauses_after(
    x: torch.Tensor, y: torch.Tensor, think_id: int, marker_id: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert `count` THINK tokens after every `marker_id` of each row of a (B, L) batch.

    The same rules as `insert_pause_tokens`: the window keeps its length, "predict THINK" is
    ignored, and the last THINK predicts the token that followed the marker.
    """
    if count <= 0:
        return x, y
    batch, length = x.shape
    sequence = torch.cat([x, y[:, -1:]], dim=1)  # (B, L + 1)
    markers = (sequence == marker_id).long()
    shift = count * (markers.cumsum(1) - markers)  # THINK tokens inserted before each token
    destination = torch.arange(length + 1, device=x.device) + shift
    total = int(destination.max()) + 1
    padded = torch.full((batch, total), think_id, dtype=x.dtype, device=x.device)
    padded.scatter_(1, destination, sequence)
    is_think = torch.ones(batch, total, dtype=torch.bool, device=x.device)
    is_think.scatter_(1, destination, False)
    return _window(padded, is_think, length)


def _window(padded: torch.Tensor, is_think: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of the first L + 1 tokens, "predict THINK" ignored."""
    padded, is_think = padded[:, : length + 1], is_think[:, : length + 1]
    targets = padded[:, 1:].masked_fill(is_think[:, 1:], IGNORE_INDEX)
    return padded[:, :-1], targets
