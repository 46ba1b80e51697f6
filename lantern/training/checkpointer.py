"""Saving and restoring everything a run needs to continue exactly, for any nn.Module.

A full checkpoint (`checkpoint_step_N.pt`) holds the weights, the optimizer (keyed by parameter
name, so it loads at any number of processes), the gradient scaler, the EMA, every rank's RNG
states (CPU and, where present, CUDA and MPS) and whatever position the caller adds (the data
sampler's). Under torchrun the state is gathered and rank 0 alone writes one consolidated file;
with FSDP a sharded copy (`checkpoint_step_N.dcp/`, `lantern.training.sharded`) is written first,
beside it, and a resume under FSDP reads that copy instead, each rank only its own shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lantern.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, step_checkpoints
from lantern.errors import LanternError
from lantern.fileio import remove_stale_leftovers
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA
from lantern.training.precision import Precision
from lantern.training.sharded import (
    SUFFIX,
    is_resumable,
    load_sharded,
    read_train_state,
    save_sharded,
    sharded_checkpoints,
    sharded_copy,
)


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


def resume_file(path: str | Path, sharded: bool = False) -> Path:
    """The checkpoint a resume reads: the file or sharded copy named, or a run directory's newest
    step. With `sharded` (FSDP) a step's sharded copy stands in for its consolidated file, so no
    process loads the full state."""
    path = Path(path)
    if path.suffix == SUFFIX:
        return path
    if not sharded:
        return latest_checkpoint(path) if path.is_dir() else path
    if not path.is_dir():
        return sharded_copy(path) if is_resumable(sharded_copy(path)) else path
    steps = dict(step_checkpoints(path)) | dict(sharded_checkpoints(path))
    if not steps:
        return latest_checkpoint(path)  # says what is missing
    return steps[max(steps)]


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
        if optimizer is not None and self.sharded:  # first: a .pt on disk has its sharded copy
            save_sharded(sharded_copy(path), record, model, optimizer, ema, self.dist)
        if self.dist.is_main:
            save_checkpoint(path, record)
        if optimizer is not None:
            self.last_saved = path
        self.dist.barrier()
        return path

    def restore(self, state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                precision: Precision | None = None, ema: EMA | None = None,
                source: Path | None = None) -> None:
        """Load a checkpoint into parts built for this run: a full one (its weights were loaded
        before wrapping), or, when `source` is a sharded copy, weights, optimizer state and EMA
        from its shards (collective, after wrapping). Each rank takes its own RNG state when the
        number of ranks is unchanged."""
        if ema is not None and "ema_decay" not in state:
            raise LanternError("--ema_decay on resume: the checkpoint holds no EMA to continue")
        if source is not None and source.suffix == SUFFIX:
            load_sharded(source, model, optimizer, ema)
        else:
            self._restore_full(state, model, optimizer, ema)
        if precision is not None:
            precision.load_state_dict(state.get("scaler", {}))
        per_rank = state.get("rng_per_rank") or [{"cpu": state["rng"]["torch"]}]
        if len(per_rank) == self.dist.world_size:
            restore_rng_state(per_rank[self.dist.rank])

    def _restore_full(self, state: dict[str, Any], model: nn.Module,
                      optimizer: torch.optim.Optimizer, ema: EMA | None) -> None:
        try:
            self.dist.load_optimizer_state(model, optimizer, state["optimizer_state_dict"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise LanternError(
                f"the optimizer state in this checkpoint does not fit this run's parameter groups "
                f"(an older LANTERN wrote it?); its weights still generate and export, but it cannot "
                f"resume ({str(exc).splitlines()[0][:100]})") from None
        if ema is not None:
            ema.load_state_dict(state["ema_state_dict"])


def read_resume_state(path: str | Path, sharded: bool = False) -> tuple[Path, dict[str, Any]]:
    """The checkpoint `resume_file` picks and its state; of a sharded copy, the plain-data part
    only (the tensors are read by `Checkpointer.restore`)."""
    file = resume_file(path, sharded)
    if file.suffix == SUFFIX:
        return file, read_train_state(file)
    state = load_checkpoint(file)
    if "optimizer_state_dict" not in state or "train_config" not in state:
        raise LanternError(f"{file} holds weights only; resume needs a checkpoint_step_N.pt file")
    return file, state
