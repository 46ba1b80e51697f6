"""A pretrained model from what a user names: a known model name, a GGUF file, a local
transformers directory, or a LANTERN run or checkpoint. `--init_from` and `lantern convert`
take any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lantern.checkpoint import is_run_directory, load_model
from lantern.errors import LanternError
from lantern.pretrained.catalog import KNOWN_MODELS
from lantern.pretrained.pull import pull
from lantern.tokenizers import Tokenizer


def resolve(spec: str | Path) -> Path:
    """The file or directory `spec` names; a known name is pulled into the cache first."""
    path = Path(spec)
    if path.exists():
        return path
    if str(spec) in KNOWN_MODELS:
        return pull(KNOWN_MODELS[str(spec)])
    raise LanternError(f"{spec} is neither a file or directory nor a known model name "
                       f"(known: {', '.join(KNOWN_MODELS)})")


def model_path(spec: str) -> str:
    """`spec` itself, or, for a known model name that is no path here, its file in the cache
    (pulled first): what `generate`, `chat` and `serve` take where they take a file."""
    if str(spec) in KNOWN_MODELS and not Path(spec).exists():
        return str(pull(KNOWN_MODELS[str(spec)]))
    return spec


def load_pretrained(spec: str | Path) -> tuple[Any, Tokenizer]:
    """(LANTERNModel in eval mode, Tokenizer) from a name, a .gguf file, a transformers directory
    or a LANTERN run directory / .pt checkpoint."""
    path = resolve(spec)
    if path.suffix == ".pt" or is_run_directory(path):
        model, tokenizer, _ = load_model(path)
        return model, tokenizer
    if path.is_dir():
        from lantern.export.hf_import import load_hf_checkpoint

        return load_hf_checkpoint(path)
    from lantern.export.gguf_import import load_gguf

    return load_gguf(path)
