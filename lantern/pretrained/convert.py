"""A pretrained model written as a LANTERN run directory, so every command that takes a run
(generate, chat, serve, export, info, train --resume_from's siblings) takes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lantern.checkpoint import save_checkpoint
from lantern.export.output import check_output, write_directory
from lantern.pretrained.load import load_pretrained, resolve
from lantern.tokenizers import TOKENIZER_FILE


def write_run(model, tokenizer, output: Path, source: str) -> None:
    """final_model.pt (weights, config, tokenizer), config.json, tokenizer.json and
    model.safetensors, as training leaves them; the whole directory appears at once."""
    from safetensors.torch import save_model

    def fill(tmp: Path) -> None:
        save_checkpoint(tmp / "final_model.pt", {
            "model_state_dict": model.state_dict(), "config": model.config.to_dict(),
            "tokenizer": tokenizer.to_json(), "source": source})
        (tmp / "config.json").write_text(model.config.to_json(), encoding="utf-8")
        (tmp / TOKENIZER_FILE).write_text(tokenizer.to_json(), encoding="utf-8")
        save_model(model, str(tmp / "model.safetensors"))

    write_directory(output, fill)


def convert(spec: str, output: Path, overwrite: bool = False) -> tuple[Any, Any]:
    """Write the model `spec` names (name, .gguf, transformers directory) as the run `output`;
    returns (model, tokenizer)."""
    check_output(output, overwrite)  # before any download
    path = resolve(spec)
    check_output(output, overwrite, source=path)
    model, tokenizer = load_pretrained(path)
    write_run(model, tokenizer, output, str(spec))
    return model, tokenizer
