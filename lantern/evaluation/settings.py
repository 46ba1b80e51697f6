"""What `lantern eval` scores a model with: which depths, how long a window, how much text,
how many windows at once, and on which engine and device."""

from __future__ import annotations

from dataclasses import dataclass

from lantern.setting import setting


@dataclass
class ScoreSettings:
    """Each a `lantern eval` flag."""

    depths: str | None = setting(None, "comma-separated steps per block to score a recursive "
                                 "model at, e.g. 1,2,4,8", unset="its own depth")
    context: int | None = setting(None, "tokens per window", unset="the model's context")
    max_tokens: int | None = setting(None, "score only the first N tokens", unset="all")
    batch_size: int = setting(8, "windows per forward pass")
    engine: str | None = setting(None, "for a .gguf: llama.cpp itself, or LANTERN's import of it",
                                 unset="llamacpp", choices=("llamacpp", "pytorch"))
    device: str = setting("auto", "auto, cpu, cuda or mps")
