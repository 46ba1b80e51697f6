"""Saving and restoring everything a run needs to continue exactly, for any nn.Module.

A full checkpoint (`checkpoint_step_N.pt`) holds the weights, the optimizer (keyed by parameter
name, so it loads at any number of processes), the gradient scaler, the EMA, every rank's RNG
states (CPU and, where present, CUDA and MPS) and whatever position the caller adds (the data
sampler's). Under torchrun the state is gathered and rank 0 alone writes one consolidated file;
with FSDP a `torch.distributed.checkpoint` sharded copy (`checkpoint_step_N.dcp/`) is written
beside it for models too large to gather.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lantern.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from lantern.errors import LanternError
from lantern.fileio import atomic_replace_directory, remove_stale_leftovers
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA
from lantern.training.precision import Precision


def capture_rng_state() -> dict[str, Any]:
    """This process's global RNG states: CPU always, CUDA and MPS when they are in use."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def resume_file(path: str | Path) -> Path:
    path = Path(path)
    return latest_checkpoint(path) if path.is_dir() else path


class Checkpointer:
    """Writes a run's checkpoints into one directory; `metadata` (model config, tokenizer,
    settings) travels inside every file so each one is self-describing."""

    def __init__(self, directory: Path, dist: Distributed, metadata: dict[str, Any],
                 sharded: bool = False) -> None:
        self.directory, self.dist, self.metadata, self.sharded = directory, dist, metadata, sharded
        self.last_saved: Path | None = None

    def remove_stale_leftovers(self) -> None:
        """Half-written files and set-aside copies of a run that was killed mid-write (never a
        finished file)."""
        remove_stale_leftovers(self.directory)

    def refuse_nonfinite(self, weights: dict[str, torch.Tensor], step: int, name: str,
                         device: torch.device) -> None:
        """A checkpoint is never written from NaN or infinite weights (a finite loss can still
        step through an infinite gradient): stop, naming the step and the last good file."""
        bad = next((key for key, value in weights.items()
                    if value.is_floating_point() and not torch.isfinite(value).all()), None)
        if not self.dist.sum([float(bad is not None)], device)[0]:
            return
        where = f" ({bad})" if bad else ""
        raise LanternError(f"the weights are not finite at step {step}{where}; {name} was not "
                           f"written; last good checkpoint: {self.last_saved or 'none'}")

    def save(self, name: str, step: int, model: nn.Module, extra: dict[str, Any],
             optimizer: torch.optim.Optimizer | None = None, precision: Precision | None = None,
             ema: EMA | None = None, use_ema: bool = False) -> Path:
        """Collective: every rank calls it; rank 0 writes. Without an optimizer it is a
        weights-only file (the averaged weights when `use_ema`)."""
        path = self.directory / name
        if use_ema and ema is not None:
            with ema.applied():
                weights = self.dist.model_state(model)
        else:
            weights = self.dist.model_state(model)
        self.refuse_nonfinite(weights, step, name, next(model.parameters()).device)
        record: dict[str, Any] = {"model_state_dict": weights, **self.metadata, "step": step,
                                  "weights": "ema" if use_ema else "live", **extra}
        if optimizer is not None:
            record["optimizer_state_dict"] = self.dist.optimizer_state(model, optimizer)
            record["rng_per_rank"] = self.dist.gather(capture_rng_state())
            record["world_size"] = self.dist.world_size
            if precision is not None:
                record["scaler"] = precision.state_dict()
            if ema is not None:
                record["ema_state_dict"] = ema.state_dict()
                record["ema_decay"] = ema.decay
        if self.dist.is_main:
            save_checkpoint(path, record)
        if optimizer is not None:
            if self.sharded:
                self._save_sharded(path.with_suffix(".dcp"), model, optimizer)
            self.last_saved = path
        self.dist.barrier()
        return path

    def _save_sharded(self, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(model, optimizer)
        tmp = path.with_name(f".{path.name}.tmp")
        dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp))
        self.dist.barrier()
        if self.dist.is_main:
            atomic_replace_directory(tmp, path)

    def restore(self, state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                precision: Precision | None = None, ema: EMA | None = None) -> None:
        """Load a full checkpoint into parts built for this run (the weights were loaded before
        wrapping). Each rank takes its own RNG state when the number of ranks is unchanged."""
        saved = state["optimizer_state_dict"]
        try:
            self.dist.load_optimizer_state(model, optimizer, saved)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise LanternError(
                f"the optimizer state in this checkpoint does not fit this run's parameter groups "
                f"(an older LANTERN wrote it?); its weights still generate and export, but it cannot "
                f"resume ({str(exc).splitlines()[0][:100]})") from None
        if precision is not None:
            precision.load_state_dict(state.get("scaler", {}))
        if ema is not None:
            if "ema_state_dict" not in state:
                raise LanternError("--ema_decay on resume: the checkpoint holds no EMA to continue")
            ema.load_state_dict(state["ema_state_dict"])
        per_rank = state.get("rng_per_rank") or [{"cpu": state["rng"]["torch"]}]
        if len(per_rank) == self.dist.world_size:
            restore_rng_state(per_rank[self.dist.rank])


def read_resume_state(path: str | Path) -> tuple[Path, dict[str, Any]]:
    file = resume_file(path)
    state = load_checkpoint(file)
    if "optimizer_state_dict" not in state or "train_config" not in state:
        raise LanternError(f"{file} holds weights only; resume needs a checkpoint_step_N.pt file")
    return file, state
