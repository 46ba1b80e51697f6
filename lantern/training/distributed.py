"""Data-parallel training under torchrun: one process per device, gradients averaged.

`torchrun --nproc_per_node N -m lantern train ...` (or `accelerate launch`, which sets the same
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR variables) starts N copies of the trainer. Each
wraps the model in DistributedDataParallel, or with `--fsdp` shards it with FSDP2
(`fully_shard`); NCCL connects GPUs, gloo connects CPUs. Without those variables everything
here is a no-op and training runs in one process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from lantern.device import pick_device
from lantern.errors import LanternError

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    fsdp: bool = False
    active: bool = False

    @classmethod
    def start(cls, fsdp: bool, requested_device: str) -> tuple[Distributed, torch.device]:
        """Join the process group torchrun set up (if any); returns it and this rank's device."""
        if not launched_by_torchrun():
            if fsdp:
                raise LanternError("--fsdp shards the model over processes: launch with "
                                   "`torchrun --nproc_per_node N -m lantern train ... --fsdp` "
                                   "(or resume an FSDP run in one process with --no-fsdp)")
            return cls(), pick_device(requested_device)
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = pick_device(requested_device)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        elif device.type == "mps":
            raise LanternError("torchrun on MPS is not supported; use --device cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=(
                device if device.type == "cuda" else None))
        return cls(rank, world, local_rank, fsdp, True), device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device, varying_graph: bool = False) -> nn.Module:
        """The module the training step calls: the model itself, a DDP wrapper, or the model
        sharded in place by FSDP2. `varying_graph`: some steps may leave parameters unused (a
        sampled recursion depth skips later steps' re-injection gates), which DDP must look for."""
        if not self.active:
            return model
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            for layers in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
                for layer in layers:  # each repeated layer gathers its weights only while it runs
                    fully_shard(layer)
            return fully_shard(model)
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                       find_unused_parameters=varying_graph)

    def sync_gradients(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on inner micro-batches (`no_sync`); the last one syncs."""
        if not self.active:
            return contextlib.nullcontext()
        if self.fsdp:
            wrapped.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if sync else wrapped.no_sync()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over ranks (loss totals, stop requests)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (a list of one without torchrun)."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The full, unsharded weights on CPU (collective under FSDP; empty on ranks > 0)."""
        if not self.fsdp:
            return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return get_model_state_dict(model, options=FULL)

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Optimizer state keyed by parameter name, so it loads at any number of processes."""
        return get_optimizer_state_dict(model, optimizer, options=FULL)

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        # strict=False: a parameter that never had a gradient (an unused head) has no state to load
        set_optimizer_state_dict(model, optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, strict=False))


def run_worker(work: Callable[[], object]) -> int:
    """Run `work` in this process; under torchrun, as one worker whose errors print once (rank 0)
    as one line, and whose every exit is immediate, so a failed rank brings the job down rather
    than hanging it."""
    if not launched_by_torchrun():
        work()
        return 0
    rank = int(os.environ["RANK"])
    try:
        work()
        code = 0
    except LanternError as exc:
        if rank == 0:
            print(f"lantern: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        if rank == 0:
            print("lantern: interrupted", file=sys.stderr)
        code = 130
    except RuntimeError as exc:
        if not is_lost_peer(exc):
            raise
        print(f"lantern: error: rank {rank} lost another process of the job (it failed or was "
              f"killed; see its output): {str(exc).splitlines()[0][:160]}", file=sys.stderr)
        code = 1
    end_worker(code)
    return code


def is_lost_peer(exc: RuntimeError) -> bool:
    """A collective failed because another rank is gone (gloo / NCCL connection errors)."""
    text = str(exc)
    return any(mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed"))


def end_worker(code: int) -> None:
    """End a torchrun worker cleanly: with gloo a rank can abort at interpreter exit after a
    correct run, so on success wait for all ranks and leave the group; then flush and exit at
    once (on failure without waiting, so torchrun stops the other ranks)."""
    if code == 0 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
