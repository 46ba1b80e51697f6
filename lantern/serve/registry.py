"""The models a server holds: each with its tokenizer, its batching scheduler and its name."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lantern.checkpoint import load_model
from lantern.errors import LanternError
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
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context_length(self) -> int:
        return self.model.config.context_length

    @property
    def max_depth(self) -> int:
        return self.model.config.steps_per_block


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
    """A default name for a checkpoint: its run directory's name."""
    path = Path(path)
    return (path if path.is_dir() else path.parent).resolve().name or "lantern"


def load_served_model(name: str, path: str | Path, device, limits: ServeLimits,
                      metrics: ServerMetrics) -> ServedModel:
    model, tokenizer, _ = load_model(path, device=device)
    scheduler = BatchScheduler(name, model, tokenizer, max_rows=limits.max_batch,
                               max_waiting=limits.max_waiting, metrics=metrics)
    return ServedModel(name, str(path), model, tokenizer, scheduler)
