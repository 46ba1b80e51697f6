"""The models a server holds: each with its tokenizer, its batching scheduler and its name.

A GGUF file (or a known model name) is imported as a LANTERN model (`lantern.pretrained`), so it
is served on the same decoding core, with continuous batching, logprobs and every other field
the API has, and its chat template and end-of-turn token come along with its tokenizer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lantern.checkpoint import load_model
from lantern.errors import LanternError
from lantern.generation.adaptive.thresholds import AdaptiveDefaults, adaptive_defaults
from lantern.generation.backends.gguf import is_gguf
from lantern.generation.chat_format import ChatFormat, chat_format
from lantern.generation.prompts import chat_stop_ids
from lantern.pretrained import KNOWN_MODELS, load_pretrained, model_path
from lantern.serve.errors import APIError
from lantern.serve.limits import ServeLimits
from lantern.serve.metrics import ServerMetrics
from lantern.serve.scheduler import BatchScheduler
from lantern.tokenizers import Tokenizer


@dataclass
class ServedModel:
    name: str
    path: str
    model: object
    tokenizer: Tokenizer
    scheduler: BatchScheduler
    adaptive: AdaptiveDefaults = field(default_factory=lambda: adaptive_defaults({}))
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context_length(self) -> int:
        return self.model.config.context_length

    @property
    def max_depth(self) -> int:
        return self.model.config.steps_per_block

    @cached_property
    def chat_format(self) -> ChatFormat:
        return chat_format(self.tokenizer, chat_stop_ids(self.tokenizer))


class ModelRegistry:
    def __init__(self, models: list[ServedModel]) -> None:
        if not models:
            raise LanternError("give at least one model to serve")
        self.models = {m.name: m for m in models}
        if len(self.models) != len(models):
            raise LanternError("two served models share a name; name them with --model NAME=PATH")
        self.default = models[0].name

    def get(self, name: str | None) -> ServedModel:
        """The model a request names (the first one when it names none); unknown: 404."""
        key = name if name is not None else self.default
        if key not in self.models:
            raise APIError(404, f"the model {key!r} does not exist; served: "
                           f"{', '.join(self.models)}", param="model", code="model_not_found")
        return self.models[key]

    def __iter__(self):
        return iter(self.models.values())


def model_name(path: str | Path) -> str:
    """A default name for a model: a known model's name, a GGUF file's name without .gguf, or
    a checkpoint's run directory's name."""
    if str(path) in KNOWN_MODELS and not Path(path).exists():
        return str(path)
    path = Path(path)
    if is_gguf(path):
        return path.stem
    return (path if path.is_dir() else path.parent).resolve().name or "lantern"


def load_served_model(name: str, path: str | Path, device, limits: ServeLimits,
                      metrics: ServerMetrics) -> ServedModel:
    """`path`: a run directory, a .pt checkpoint, a GGUF file or a known model name."""
    path = model_path(str(path))
    if is_gguf(path):
        model, tokenizer = load_pretrained(path)
        model, state = model.to(device), {}
    else:
        model, tokenizer, state = load_model(path, device=device)
    scheduler = BatchScheduler(name, model, tokenizer, max_rows=limits.max_batch,
                               max_waiting=limits.max_waiting, metrics=metrics)
    return ServedModel(name, str(path), model, tokenizer, scheduler,
                       adaptive_defaults(state))
