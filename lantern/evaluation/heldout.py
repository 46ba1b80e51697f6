"""Held-out loss, perplexity, bits per byte and next-token accuracy of a model on a text.

A PyTorch model (any LANTERN model, including one imported from transformers or GGUF) is scored
a batch of windows at a time, at each depth asked for; a GGUF can instead be scored by
llama.cpp itself, token by token on its own KV cache."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lantern.evaluation.calibration import Calibration
from lantern.evaluation.windows import Window
from lantern.generation.backends.llamacpp import LlamaCppModel


@dataclass
class Tally:
    """Sums over scored tokens; the figures follow from them."""

    nll: float = 0.0  # nats
    correct: int = 0
    tokens: int = 0
    extra: dict[str, float | int] = field(default_factory=dict)  # e.g. calibration figures

    def add(self, nll: torch.Tensor, correct: torch.Tensor) -> None:
        self.nll += float(nll.double().sum())
        self.correct += int(correct.sum())
        self.tokens += nll.numel()

    def figures(self, num_bytes: int) -> dict[str, float | int]:
        loss = self.nll / max(1, self.tokens)
        return {"tokens": self.tokens, "loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                "bits_per_byte": self.nll / math.log(2) / max(1, num_bytes),
                "accuracy": self.correct / max(1, self.tokens)}


@torch.no_grad()
def score_windows(model: nn.Module, windows: Sequence[Window], depths: Sequence[int | None],
                  batch_size: int, device: torch.device,
                  progress: Callable[[int], None] = lambda n: None,
                  calibrations: Sequence[Calibration] | None = None) -> list[Tally]:
    """One Tally per depth (None: the model's own). Windows of one length share a batch. With
    `calibrations` (one per depth), even-numbered windows fit a temperature, odd ones report."""
    tallies = [Tally() for _ in depths]
    by_length: dict[int, list[tuple[int, Window]]] = {}
    for number, window in enumerate(windows):
        by_length.setdefault(len(window.inputs), []).append((number, window))
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            batch = group[start:start + batch_size]
            x = torch.tensor([w.inputs for _, w in batch], device=device)
            for d, (depth, tally) in enumerate(zip(depths, tallies, strict=True)):
                logits = model(x, steps_per_block=depth)[0].float()
                for row, (number, window) in enumerate(batch):
                    scored = logits[row, window.scored_from:]
                    target = torch.tensor(window.targets, device=device)
                    tally.add(F.cross_entropy(scored, target, reduction="none"),
                              scored.argmax(-1) == target)
                    if calibrations is not None:
                        calibrations[d].add(scored, target, fit=number % 2 == 0)
            progress(len(batch))
    return tallies


def score_with_llamacpp(llm: LlamaCppModel, windows: Sequence[Window],
                        progress: Callable[[int], None] = lambda n: None) -> Tally:
    """llama.cpp's own log-probability of every scored token, reading each window's tokens on
    its KV cache (one new token per request)."""
    tally = Tally()
    for window in windows:
        for offset, target in enumerate(window.targets):
            read = window.inputs[:window.scored_from + offset + 1]
            logprob, top = llm.token_logprob(read, target, reuse_cache=True)
            tally.add(torch.tensor([-logprob]), torch.tensor([top == target]))
        progress(1)
    return tally


def progress_bar(total: int, unit: str, quiet: bool) -> tqdm:
    return tqdm(total=total, unit=unit, disable=quiet or None, dynamic_ncols=True)
