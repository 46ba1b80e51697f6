"""Recursion depth per training step, so one weight-shared model works at many depths.

Specs (`--depth_schedule`):
- `fixed:K` - always K steps per block;
- `random:A-B` - uniform in A..B each step (mean (A+B)/2);
- `poisson:M` - 1 + Poisson(M - 1), capped at 2M: mostly near M with a tail of deeper steps,
  the heavy-tailed sampling used for recurrent-depth models, which teaches the block to keep
  improving (not diverge) when applied more often than usual.

Depths are drawn from a generator the trainer seeds alike on every rank (all ranks run the same
depth each step) and saves in checkpoints, so resumed runs draw the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from lantern.errors import LanternError

_SPEC = re.compile(r"^(fixed|random|poisson):(\d+(?:\.\d+)?)(?:-(\d+))?$")


@dataclass(frozen=True)
class DepthSchedule:
    kind: str
    low: float
    high: int

    @classmethod
    def parse(cls, spec: str) -> DepthSchedule:
        match = _SPEC.match(spec.strip())
        if not match:
            raise LanternError(f"--depth_schedule must look like fixed:4, random:1-4 or poisson:3 "
                               f"(got {spec!r})")
        kind, first, second = match.groups()
        value = float(first)
        if kind == "random":
            if second is None or not 1 <= value <= int(second) or value != int(value):
                raise LanternError(
                    f"--depth_schedule random:A-B needs whole numbers 1 <= A <= B (got {spec!r})"
                )
            return cls(kind, value, int(second))
        if second is not None or value < 1 or (kind == "fixed" and value != int(value)):
            raise LanternError(f"--depth_schedule {kind}: needs one number >= 1 (got {spec!r})")
        return cls(kind, value, int(value) if kind == "fixed" else int(2 * value))

    def sample(self, generator: torch.Generator | None = None) -> int:
        if self.kind == "fixed":
            return self.high
        if self.kind == "random":
            return int(torch.randint(int(self.low), self.high + 1, (), generator=generator).item())
        draw = 1 + int(torch.poisson(torch.tensor(self.low - 1.0), generator=generator).item())
        return min(draw, self.high)

    @property
    def mean(self) -> float:
        if self.kind == "random":
            return (self.low + self.high) / 2
        return self.low
