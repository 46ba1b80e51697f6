"""Mixed precision: autocast for the forward pass, a gradient scaler for float16.

Master weights stay float32; bfloat16 has float32's range and needs no scaling, float16 does
(`torch.amp.GradScaler` scales the loss up, unscales before clipping, and skips steps whose
gradients overflowed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

from lantern.device import autocast, pick_device, pick_dtype
from lantern.errors import LanternError
from lantern.training.settings import PrecisionSection


def check_dtype_runs(device: torch.device, dtype: torch.dtype) -> None:
    """Refuse, with one clear line, a compute dtype this device cannot run."""
    if dtype == torch.float32:
        return
    name = str(dtype).removeprefix("torch.")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise LanternError(f"--dtype {name}: this GPU does not support it; use --dtype float16 or float32")
    try:
        with torch.autocast(device_type=device.type, dtype=dtype):
            probe = torch.ones(2, 2, device=device)
            (probe @ probe).sum().item()
    except (RuntimeError, TypeError) as exc:
        raise LanternError(f"--dtype {name} does not run on {device.type}: "
                           f"{str(exc).splitlines()[0][:120]}; use --dtype float32") from None


class Precision:
    """`sharded`: gradients are sharded over ranks (FSDP), so an overflow seen by one rank must
    skip the step on all of them (ShardedGradScaler all-reduces that finding)."""

    def __init__(self, cfg: PrecisionSection, device: torch.device | None = None,
                 sharded: bool = False) -> None:
        self.device = device or pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        check_dtype_runs(self.device, self.dtype)
        self.scaler: torch.amp.GradScaler | None = None
        if self.dtype == torch.float16 and sharded:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            self.scaler = ShardedGradScaler(self.device.type)
        elif self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor], clip: float) -> None:
        """Unscale (float16), clip the gradient norm (clip > 0), step, and clear the gradients."""
        if self.scaler:
            self.scaler.unscale_(optimizer)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params), clip)
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)
