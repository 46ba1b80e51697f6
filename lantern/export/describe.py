"""What a model file holds, for every format LANTERN reads or writes (`lantern info`).

Every reader returns the same keys (None where a format does not say): format, file,
file_size_bytes, architecture, parameters, layers, hidden_size, heads, kv_heads,
context_length, vocab_size, tokenizer, tensor_types, steps_trained, val_loss, best_val_loss.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from lantern.errors import LanternError
from lantern.export.file_kind import file_kind, is_gguf_file

KEYS = ("format", "file", "file_size_bytes", "architecture", "parameters", "layers", "hidden_size",
        "heads", "kv_heads", "context_length", "vocab_size", "tokenizer", "tensor_types",
        "steps_trained", "val_loss", "best_val_loss")
# Training facts an export carries: GGUF metadata keys, and one key in a transformers config.
GGUF_STEP, GGUF_VAL_LOSS = "lantern.steps_trained", "lantern.val_loss"
HF_TRAINING = "lantern_training"


def summary(**values: Any) -> dict[str, Any]:
    return {key: values.get(key) for key in KEYS} | {k: v for k, v in values.items() if k not in KEYS}


def type_counts(types: list[str]) -> str:
    """"F32 x 9, Q8_0 x 14": how many tensors of each type."""
    return ", ".join(f"{name} x {n}" for name, n in sorted(Counter(types).items()))


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def open_gguf(path: str | Path):
    """A `gguf.GGUFReader` on `path`, or one clear error for a missing, foreign or damaged
    file (llama.cpp and the importer are never handed a file this rejects)."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise LanternError(f"GGUF file not found: {path}")
    if not is_gguf_file(path):
        raise LanternError(f"{path} is not a GGUF file: it is {file_kind(path)}")
    try:
        reader = GGUFReader(str(path))
    except (ValueError, KeyError, IndexError, OSError, OverflowError, TypeError) as exc:
        reason = str(exc)[:120] or type(exc).__name__
        raise LanternError(f"{path} is a damaged GGUF file ({reason})") from None
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > path.stat().st_size or not reader.tensors:
        raise LanternError(f"{path} is a damaged GGUF file (its tensor data is cut short)")
    return reader


def gguf_summary(path: str | Path) -> dict[str, Any]:
    """A GGUF file's architecture, shape, tokenizer and tensor types."""
    path = Path(path)
    reader = open_gguf(path)

    def field(name: str, default: Any = None) -> Any:
        f = reader.fields.get(name)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch is None:
        raise LanternError(f"{path} is a damaged GGUF file (no general.architecture)")
    tokens = field("tokenizer.ggml.tokens") or []
    return summary(
        format="gguf", file=str(path), file_size_bytes=path.stat().st_size, architecture=arch,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        layers=field(f"{arch}.block_count"), hidden_size=field(f"{arch}.embedding_length"),
        heads=field(f"{arch}.attention.head_count"),
        kv_heads=field(f"{arch}.attention.head_count_kv", field(f"{arch}.attention.head_count")),
        context_length=field(f"{arch}.context_length"), vocab_size=len(tokens),
        tokenizer=field("tokenizer.ggml.model"),
        tensor_types=type_counts([t.tensor_type.name for t in reader.tensors]),
        steps_trained=field(GGUF_STEP), val_loss=field(GGUF_VAL_LOSS),
        eos_id=field("tokenizer.ggml.eos_token_id"), bos_id=field("tokenizer.ggml.bos_token_id"),
        eot_id=field("tokenizer.ggml.eot_token_id"), name=field("general.name"),
        chat_template=field("tokenizer.chat_template"), special_tokens=role_tokens(tokens, field),
    )


def role_tokens(tokens: list[str], field) -> dict[str, str]:
    """The bos, eos and padding tokens the file names by id, as text (named as transformers'
    special_tokens_map names them, which is how chat templates refer to them)."""
    ids = {name: field(f"tokenizer.ggml.{role}_token_id") for name, role in
           (("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "padding"))}
    return {name: tokens[i] for name, i in ids.items() if i is not None and 0 <= i < len(tokens)}


def safetensors_header(path: Path) -> dict[str, Any]:
    """Tensor names, shapes and dtypes, read from the header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_slice(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise LanternError(f"cannot read {path} as safetensors: {str(exc)[:120]}") from None


def tensor_stats(files: list[Path]) -> tuple[int, str]:
    count, types = 0, []
    for file in files:
        for tensor in safetensors_header(file).values():
            shape = tensor.get_shape()
            n = 1
            for d in shape:
                n *= d
            count += n
            types.append(tensor.get_dtype())
    return count, type_counts(types)


def hf_tokenizer_kind(directory: Path) -> str | None:
    file = directory / "tokenizer.json"
    if not file.is_file():
        return None
    from lantern.export.hf_import import char_tokenizer

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return "char" if char_tokenizer(data) is not None else str(data["model"]["type"]).lower()
    except (ValueError, KeyError, TypeError):
        return "unreadable"


def training_log_facts(directory: Path) -> dict[str, Any]:
    """The last step and validation loss a run's training_log.jsonl records."""
    file = directory / "training_log.jsonl"
    facts: dict[str, Any] = {}
    if not file.is_file():
        return facts
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(record, dict):
            if "step" in record:
                facts["steps_trained"] = record["step"]
            if "val_loss" in record:
                facts["val_loss"] = record["val_loss"]
    return facts


def hf_summary(directory: Path) -> dict[str, Any]:
    """A `transformers` directory (config.json with a model_type, safetensors weights)."""
    from lantern.export.arches import hf_value

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    files = sorted(directory.glob("*.safetensors"))
    params, types = tensor_stats(files) if files else (None, None)
    vocab = None
    if (directory / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as HFTokenizer

        vocab = HFTokenizer.from_file(str(directory / "tokenizer.json")).get_vocab_size(True)
    heads = hf_value(config, "num_attention_heads")
    training = config.get(HF_TRAINING) or {}
    return summary(
        steps_trained=training.get("steps_trained"), val_loss=training.get("val_loss"),
        format="transformers", file=str(directory), file_size_bytes=directory_size(directory),
        architecture=", ".join(config.get("architectures") or [config.get("model_type", "?")]),
        parameters=params, layers=hf_value(config, "num_hidden_layers"),
        hidden_size=hf_value(config, "hidden_size"), heads=heads,
        kv_heads=config.get("num_key_value_heads", heads),
        context_length=hf_value(config, "max_position_embeddings"),
        vocab_size=vocab or config.get("vocab_size"), tokenizer=hf_tokenizer_kind(directory),
        tensor_types=types, sliding_window=config.get("sliding_window"),
    )


def lantern_summary(path: Path) -> dict[str, Any]:
    """A LANTERN checkpoint (.pt) or run directory."""
    from lantern.checkpoint import load_model, model_file
    from lantern.export.architecture import plan_export

    file = model_file(path)
    model, tokenizer, data = load_model(file)
    cfg = model.config
    try:
        exports = plan_export(cfg).arch.name
    except LanternError as exc:
        exports = f"none ({exc})"
    types = [str(t.dtype).removeprefix("torch.") for t in data["model_state_dict"].values()]
    return summary(
        format="lantern checkpoint", file=str(file), file_size_bytes=file.stat().st_size,
        architecture=f"lantern ({cfg.num_blocks} blocks x {cfg.steps_per_block} steps)",
        parameters=model.num_parameters(), layers=cfg.num_layers(),
        hidden_size=cfg.hidden_size, heads=cfg.num_heads, kv_heads=cfg.kv_heads,
        context_length=cfg.context_length, vocab_size=tokenizer.vocab_size,
        tokenizer=tokenizer.kind, tensor_types=type_counts(types),
        steps_trained=data.get("step"), val_loss=data.get("val_loss"),
        best_val_loss=data.get("best_val_loss"), exports_as=exports, config=cfg.to_dict(),
    )


def lantern_safetensors_summary(file: Path) -> dict[str, Any]:
    """A `model.safetensors` file; its config.json and tokenizer.json beside it, when there."""
    from lantern.config import LANTERNConfig

    params, types = tensor_stats([file])
    values: dict[str, Any] = dict(format="safetensors", file=str(file),
                                  file_size_bytes=file.stat().st_size, parameters=params,
                                  tensor_types=types)
    config_file = file.parent / "config.json"
    if config_file.is_file():
        data = json.loads(config_file.read_text(encoding="utf-8"))
        if "model_type" in data:
            return hf_summary(file.parent) | {"format": "safetensors (transformers)", "file": str(file),
                                              "file_size_bytes": file.stat().st_size}
        cfg = LANTERNConfig.from_dict(data)
        values |= dict(architecture=f"lantern ({cfg.num_blocks} blocks x {cfg.steps_per_block} steps)",
                       layers=cfg.num_layers(), hidden_size=cfg.hidden_size,
                       heads=cfg.num_heads, kv_heads=cfg.kv_heads, context_length=cfg.context_length,
                       vocab_size=cfg.vocab_size)
    if (file.parent / "tokenizer.json").is_file():
        from lantern.tokenizers import load_tokenizer

        values["tokenizer"] = load_tokenizer(file.parent / "tokenizer.json").kind
    return summary(**values, **training_log_facts(file.parent))


def describe(path: str | Path) -> dict[str, Any]:
    """The summary of any model path: run dir, .pt, .safetensors, transformers dir, .gguf."""
    path = Path(path)
    if not path.exists():
        raise LanternError(f"not found: {path}")
    if path.is_file() and path.suffix == ".gguf":
        return gguf_summary(path)
    if path.is_file() and path.suffix == ".safetensors":
        return lantern_safetensors_summary(path)
    if path.is_dir() and (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise LanternError(f"{path / 'config.json'} is not valid JSON") from None
        if isinstance(config, dict) and "model_type" in config:
            return hf_summary(path)
    if is_gguf_file(path):
        return gguf_summary(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # every .pt LANTERN writes is a zip
        raise LanternError(f"{path} is not a model file LANTERN reads (a .pt checkpoint, "
                           ".safetensors, .gguf, a run or transformers directory)")
    if path.is_dir() and not any(path.glob("*.pt")) and (path / "model.safetensors").is_file():
        return lantern_safetensors_summary(path / "model.safetensors")
    return lantern_summary(path)
