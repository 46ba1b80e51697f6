"""A local `transformers` directory as a LANTERN model + tokenizer.

The inverse of `hf_export`: config.json's model_type picks the architecture (`arches`), which
reads the config and maps the weights; each layer becomes one LANTERN block (steps_per_block 1),
so a LANTERN export at any depth comes back as the same function. Anything LANTERN cannot
compute exactly is refused, naming the setting; the norm epsilon travels into the config
(`norm_eps`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lantern.errors import LanternError
from lantern.export.arches import ExportArch, arch_for_hf
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter, Tokenizer


def read_config(directory: Path) -> tuple[ExportArch, dict[str, Any]]:
    """The architecture and contents of the directory's config.json."""
    file = directory / "config.json"
    if not file.is_file():
        raise LanternError(f"{directory} is not a transformers model directory (no config.json)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise LanternError(f"{file} is not valid JSON") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    return arch_for_hf(kind), config


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the directory's safetensors files (or its pytorch_model.bin, read safely)."""
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if files:
        weights: dict[str, torch.Tensor] = {}
        for file in files:
            weights |= load_file(str(file))
        return weights
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise LanternError(f"{directory} holds no weights (*.safetensors or pytorch_model.bin)")


def char_tokenizer(data: dict[str, Any]) -> CharTokenizer | None:
    """The character tokenizer `hf_tokenizer` exported (a BPE with no merges), or None."""
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("merges") or data.get("pre_tokenizer") is not None:
        return None
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    specials = [t["content"] for t in sorted(data.get("added_tokens", []), key=lambda t: t["id"])
                if t.get("special")]
    fallback = bool(model.get("byte_fallback"))
    chars = [t for t in tokens if t not in specials][: len(tokens) - len(specials) - 256 * fallback]
    try:
        tokenizer = CharTokenizer(chars, specials, fallback)
    except (KeyError, LanternError):
        return None
    return tokenizer if tokenizer.tokens == tokens and all(len(c) == 1 for c in chars) else None


def load_tokenizer_dir(directory: Path) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    file = directory / "tokenizer.json"
    if not file.is_file():
        raise LanternError(f"{directory} has no tokenizer.json (a fast tokenizer is needed)")
    text = file.read_text(encoding="utf-8")
    data = json.loads(text)
    char = char_tokenizer(data)
    if char is not None:
        return char
    return HFTokenizerAdapter(HFTokenizer.from_str(text), kind=str(data["model"]["type"]).lower())


def load_hf_checkpoint(directory: str | Path):
    """(LANTERNModel in eval mode, Tokenizer) from a local transformers directory of a
    registered architecture (config.json, safetensors weights, tokenizer.json)."""
    from lantern.models.lantern_model import LANTERNModel

    directory = Path(directory)
    if not directory.is_dir():
        raise LanternError(f"not a directory: {directory}")
    arch, c = read_config(directory)
    cfg = arch.config_from_hf(c)
    tokenizer = load_tokenizer_dir(directory)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise LanternError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model "
                           f"{cfg.vocab_size}; LANTERN needs them equal")
    weights = read_weights(directory)
    state = {k: v.float() for k, v in arch.state_from_hf(weights, cfg).items()}
    model = LANTERNModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise LanternError(f"{directory}: weights do not match config.json ({first})") from None
    return model.eval(), tokenizer
