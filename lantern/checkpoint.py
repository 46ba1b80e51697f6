"""Checkpoint files: plain tensors and data only (safe with `weights_only=True`), written
atomically, and self-describing (model config and tokenizer travel inside each file).

A run directory holds `checkpoint_step_N.pt` (full training state), `best_model.pt` and
`final_model.pt` (weights, config, tokenizer), plus `config.json`, `tokenizer.json`,
`model.safetensors` and `training_log.jsonl`.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.file_kind import file_kind
from lantern.fileio import atomic_write
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import TOKENIZER_FILE, Tokenizer, load_tokenizer, tokenizer_from_json

FORMAT_VERSION = 1
CHECKPOINT_KINDS = ("a zip archive", "a pickle")  # what torch.save writes (now, and before 1.6)
_STEP_FILE = re.compile(r"checkpoint_step_(\d+)\.pt$")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialized in memory first, so a failing write (full disk, size limit) surfaces as the
    OSError it is rather than as torch's zip-writer assertion."""
    buffer = io.BytesIO()
    torch.save({**payload, "format_version": FORMAT_VERSION}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    required: str = "model_state_dict") -> dict[str, Any]:
    """Read a checkpoint file safely; a damaged or foreign file gives one clear error. `required`
    is the entry every file of its kind holds (a sharded copy's plain-data part has no weights)."""
    path = Path(path)
    if not path.is_file():
        raise LanternError(f"checkpoint not found: {path}")
    kind = file_kind(path)
    if kind not in CHECKPOINT_KINDS:
        raise LanternError(f"{path} is not a LANTERN checkpoint (.pt): it is {kind}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never.
        raise LanternError(f"cannot read checkpoint {path}: it is damaged, or holds more than "
                           "tensors and plain data (LANTERN never loads pickled code)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, IndexError, KeyError,
            TypeError) as exc:  # what torch's unpickler raises on bytes that are no checkpoint
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LanternError(f"cannot read checkpoint {path}: {first_line[:200]}") from None
    if not isinstance(data, dict) or required not in data:
        raise LanternError(f"{path} is not a LANTERN checkpoint (no {required})")
    return data


def step_checkpoints(directory: Path, prefix: str = "") -> list[tuple[int, Path]]:
    """The resumable checkpoints in `directory` (of one phase, where its files carry a prefix),
    oldest first."""
    found = []
    for path in directory.glob(f"{prefix}checkpoint_step_*.pt"):
        match = _STEP_FILE.search(path.name)
        if match and path.name == f"{prefix}checkpoint_step_{match.group(1)}.pt":
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path:
    """The newest full training checkpoint in a run directory (for resuming)."""
    directory = Path(directory)
    found = step_checkpoints(directory)
    if not found:
        raise LanternError(f"no checkpoint_step_N.pt to resume from in {directory}")
    return found[-1][1]


RUN_MODEL_FILES = ("final_model.pt", "best_model.pt")  # what a run directory is read from, in order


def is_run_directory(path: str | Path) -> bool:
    """A directory holding a LANTERN model: a final or best model, or a step checkpoint."""
    path = Path(path)
    return path.is_dir() and (any((path / name).is_file() for name in RUN_MODEL_FILES)
                              or bool(step_checkpoints(path)))


def model_file(path: str | Path) -> Path:
    """A checkpoint file, or the best file to generate from in a run directory."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_MODEL_FILES:
            if (path / name).is_file():
                return path / name
        if not step_checkpoints(path):
            raise LanternError(f"no model in {path} (no final_model.pt, best_model.pt or "
                               "checkpoint_step_N.pt)")
        return latest_checkpoint(path)
    if not path.exists():
        raise LanternError(f"checkpoint not found: {path}")
    return path


def checkpoint_tokenizer(data: dict[str, Any], path: Path) -> Tokenizer:
    if "tokenizer" in data:
        return tokenizer_from_json(data["tokenizer"])
    beside = path.parent / TOKENIZER_FILE
    if beside.is_file():
        return load_tokenizer(beside)
    raise LanternError(f"{path} holds no tokenizer and there is no {TOKENIZER_FILE} beside it")


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    tokenizer: Tokenizer | None = None,
) -> tuple[LANTERNModel, Tokenizer, dict[str, Any]]:
    """(model in eval mode, its tokenizer, the checkpoint dict) from a file or run directory."""
    from lantern.training.lora import has_adapters, merged_checkpoint_weights

    file = model_file(path)
    data = load_checkpoint(file)
    if "config" not in data:
        raise LanternError(f"{file} holds no model config")
    config = LANTERNConfig.from_dict(data["config"])
    tokenizer = tokenizer or checkpoint_tokenizer(data, file)
    if tokenizer.vocab_size != config.vocab_size:
        raise LanternError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model in {file} was trained "
            f"with {config.vocab_size}; they do not belong together"
        )
    model = LANTERNModel(config)
    weights = data["model_state_dict"]
    if has_adapters(weights):  # a LoRA run's full checkpoint: merged, as its final model is
        weights = merged_checkpoint_weights(weights, data.get("train_config") or {})
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise LanternError(f"{file}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), tokenizer, data
