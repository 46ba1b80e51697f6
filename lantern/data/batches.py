"""Random training windows, drawn from a seeded generator whose state is checkpointed.

Saving the generator's state is what makes a resumed run see exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch

from lantern.errors import LanternError


class WindowSampler:
    """Batches of (inputs, next-token targets), each row a random window of `seq_length`.

    With several processes every rank draws the same global batch of `batch_size` windows from
    the same generator and keeps its own disjoint slice, so the ranks together see exactly
    what one process would, and one generator state is the data position of every rank.
    """

    def __init__(self, tokens: np.ndarray, seq_length: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise LanternError(
                f"--batch_size {batch_size} does not split evenly over {world_size} processes; "
                f"use a multiple of {world_size}"
            )
        if len(tokens) < seq_length + 1:
            raise LanternError(
                f"the data has {len(tokens)} tokens, fewer than one window of seq_length "
                f"{seq_length} + 1; use more data or a smaller --seq_length"
            )
        self.tokens = tokens
        self.seq_length = seq_length
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        share = batch_size // world_size
        self._rows = slice(rank * share, (rank + 1) * share)
        self._offsets = np.arange(seq_length + 1)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(
            len(self.tokens) - self.seq_length, (self.batch_size,), generator=self.generator
        ).numpy()[self._rows]
        windows = torch.from_numpy(self.tokens[starts[:, None] + self._offsets].astype(np.int64))
        return windows[:, :-1], windows[:, 1:]

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def eval_windows(
    tokens: np.ndarray, seq_length: int, batch_size: int, num_batches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of evaluation batches, evenly spread over the held-out tokens, so every
    evaluation of a run (and of a resumed run) scores the same windows."""
    limit = len(tokens) - seq_length - 1
    if limit < 0:
        raise LanternError(
            f"the validation data has {len(tokens)} tokens, fewer than one window of "
            f"seq_length {seq_length} + 1"
        )
    count = min(num_batches * batch_size, limit + 1)
    starts = np.linspace(0, limit, count).astype(np.int64)
    offsets = np.arange(seq_length + 1)
    batches = []
    for i in range(0, count, batch_size):
        windows = torch.from_numpy(tokens[starts[i : i + batch_size, None] + offsets].astype(np.int64))
        batches.append((windows[:, :-1], windows[:, 1:]))
    return batches
