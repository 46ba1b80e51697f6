"""An exponential moving average of a model's weights (Polyak averaging), for any nn.Module.

`shadow = decay * shadow + (1 - decay) * weights` after every optimizer step. The average is
often a better model than the last weights; `applied()` swaps it in for evaluation or saving.
Under FSDP the shadow copies are sharded like the weights they follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the duration of the block."""
        with torch.no_grad():
            saved = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow, strict=True):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved, strict=True):
                    p.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full (gathered) tensors by parameter name; a collective call under FSDP."""
        return {name: _full(s).cpu() for name, s in zip(self.names, self.shadow, strict=True)}

    def shards(self) -> dict[str, torch.Tensor]:
        """The averages by parameter name as this rank holds them (DTensor shards under FSDP):
        a sharded checkpoint saves them, and loads into them in place, without gathering."""
        return dict(zip(self.names, self.shadow, strict=True))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, s in zip(self.names, self.shadow, strict=True):
            s.copy_(_like(state[name], s))


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _like(full: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A full tensor laid out like `target` (sharded the same way when target is a DTensor)."""
    if hasattr(target, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(target.dtype), target.device_mesh, target.placements)
    return full.to(target.device, target.dtype)
