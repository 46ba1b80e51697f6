"""The sharded copy of a checkpoint, `checkpoint_step_N.dcp/` (`torch.distributed.checkpoint`),
written beside the consolidated `checkpoint_step_N.pt` under FSDP.

Every rank writes and reads only its own shards of the weights, the optimizer state and the
EMA, so a resume under FSDP never loads the consolidated state into any process. The plain data a
resume also needs (step, RNG states, data position, scaler, settings, tokenizer) travels in a
small `train_state.pt` inside the directory. torch.distributed.checkpoint reshards on load: the
copy resumes at another number of processes, and into an unsharded model in one process.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import CheckpointException, FileSystemReader
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from lantern.checkpoint import load_checkpoint, save_checkpoint
from lantern.errors import LanternError
from lantern.fileio import atomic_replace_directory
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA

SUFFIX = ".dcp"
TRAIN_STATE = "train_state.pt"  # the plain-data part, inside the directory
SHARDED_PARTS = ("model_state_dict", "optimizer_state_dict", "ema_state_dict")  # in the shards
_STEP_COPY = re.compile(r"checkpoint_step_(\d+)\.dcp")


def sharded_copy(checkpoint: Path) -> Path:
    """`checkpoint_step_N.dcp` for `checkpoint_step_N.pt`."""
    return checkpoint.with_suffix(SUFFIX)


def is_resumable(path: Path) -> bool:
    """A complete sharded copy this version can resume from (it holds the plain-data part)."""
    return path.suffix == SUFFIX and (path / TRAIN_STATE).is_file()


def sharded_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """The resumable sharded copies in a run directory, by step."""
    found = [(int(match.group(1)), path) for path in directory.glob("checkpoint_step_*.dcp")
             if (match := _STEP_COPY.fullmatch(path.name)) and is_resumable(path)]
    return sorted(found)


def save_sharded(path: Path, record: dict[str, Any], model: nn.Module,
                 optimizer: torch.optim.Optimizer, ema: EMA | None, dist: Distributed) -> None:
    """Collective. Written under a temporary name and renamed once every rank is done, so a
    directory of this name is always complete."""
    tensors = _sharded_tensors(model, optimizer, ema)
    tmp = path.with_name(f".{path.name}.tmp")
    dcp.save(tensors, checkpoint_id=str(tmp))
    if dist.is_main:
        save_checkpoint(tmp / TRAIN_STATE,
                        {key: value for key, value in record.items() if key not in SHARDED_PARTS})
    dist.barrier()
    if dist.is_main:
        atomic_replace_directory(tmp, path)


def read_train_state(path: Path) -> dict[str, Any]:
    """The plain-data part of a sharded copy: everything a resume needs but the tensors."""
    if not path.is_dir():
        raise LanternError(f"checkpoint not found: {path}")
    if not is_resumable(path):
        raise LanternError(f"{path} holds no {TRAIN_STATE} (incomplete, or written before sharded "
                           f"resumes); resume from {path.with_suffix('.pt')} instead")
    return load_checkpoint(path / TRAIN_STATE, required="train_config")


def load_sharded(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 ema: EMA | None) -> None:
    """Collective. Each rank reads the shards it needs into the parts built (and wrapped) for this
    run, whatever the number of processes that wrote them."""
    tensors = _sharded_tensors(model, optimizer, ema)
    _check_fits(path, tensors)
    try:
        with warnings.catch_warnings():  # one process reading a sharded copy is intended here
            warnings.filterwarnings("ignore", "torch.distributed is disabled")
            dcp.load(tensors, checkpoint_id=str(path))
    except CheckpointException as exc:  # a BaseException: it would escape every handler
        raise LanternError(f"cannot read the sharded checkpoint {path}: {_first_failure(exc)}") from None
    try:
        set_state_dict(model, optimizer, model_state_dict=tensors["model"],
                       optim_state_dict=tensors["optimizer"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise LanternError(f"the optimizer state in {path} does not fit this run's parameter groups "
                           f"({str(exc).splitlines()[0][:100]})") from None


def _sharded_tensors(model: nn.Module, optimizer: torch.optim.Optimizer,
                     ema: EMA | None) -> dict[str, Any]:
    """The run's tensors as this rank holds them (DTensor shards under FSDP), keyed by name;
    `dcp.load` reads into them in place."""
    model_state, optim_state = get_state_dict(model, optimizer)
    tensors = {"model": model_state, "optimizer": optim_state}
    if ema is not None:
        tensors["ema"] = ema.shards()
    return tensors


def _check_fits(path: Path, tensors: dict[str, Any]) -> None:
    """Refuse, in one line, a copy whose weights do not match this model's names and shapes
    (torch would report a size mismatch per rank, as a multi-page exception)."""
    try:
        saved = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    except Exception as exc:  # whatever unreadable metadata raises: one line
        raise LanternError(f"cannot read the sharded checkpoint {path}: its .metadata is missing "
                           f"or damaged ({type(exc).__name__})") from None
    ours = {f"{part}.{name}": tuple(value.shape) for part in ("model", "ema")
            for name, value in tensors.get(part, {}).items()}
    theirs = {key: tuple(meta.size) for key, meta in saved.items()
              if key.startswith(("model.", "ema.")) and hasattr(meta, "size")}
    missing = sorted(ours.keys() - theirs.keys())
    if missing:
        raise LanternError(f"{path} does not fit this model: it holds no {missing[0]} "
                           f"({len(missing)} tensor(s) missing; a checkpoint of another model?)")
    for key, shape in ours.items():
        if theirs[key] != shape:
            raise LanternError(f"{path} does not fit this model: {key} is {list(theirs[key])} there "
                               f"and {list(shape)} here (a checkpoint of another model?)")
    extra = sorted(key for key in theirs.keys() - ours.keys() if key.startswith("model."))
    if extra:
        raise LanternError(f"{path} does not fit this model: it holds {extra[0]}, which this model "
                           "lacks (a checkpoint of another model?)")


def _first_failure(exc: CheckpointException) -> str:
    """The first failing rank's error in one line (a missing or damaged shard file)."""
    rank, (error, _) = min(exc.failures.items())
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"rank {rank}: {type(error).__name__}: {first}"
