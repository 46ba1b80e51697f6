"""Held-out loss, perplexity and accuracy over fixed windows, and a short sample of text."""

from __future__ import annotations

import math

import torch
from torch import nn

from lantern.generation.core import generate_stream
from lantern.generation.settings import GenerationConfig
from lantern.tokenizers import Tokenizer
from lantern.training.precision import Precision
from lantern.training.settings import EvalSection


class Evaluator:
    def __init__(self, cfg: EvalSection, batches: list[tuple[torch.Tensor, torch.Tensor]],
                 precision: Precision, tokenizer: Tokenizer, prompt: list[int], seed: int) -> None:
        self.cfg, self.batches, self.precision = cfg, batches, precision
        self.tokenizer, self.prompt, self.seed = tokenizer, prompt, seed

    def due(self, step: int, max_steps: int) -> bool:
        return step % self.cfg.eval_interval == 0 or step == max_steps

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean loss, perplexity and next-token accuracy; every rank scores every window, so
        all ranks agree on the result (and FSDP's collectives stay in step)."""
        was_training = model.training
        model.eval()
        total_loss, correct, count = 0.0, 0, 0
        device = self.precision.device
        for x, y in self.batches:
            x, y = x.to(device), y.to(device)
            with self.precision.autocast():
                logits, loss = model(x, y)
            total_loss += loss.item() * y.numel()
            correct += (logits.argmax(-1) == y).sum().item()
            count += y.numel()
        model.train(was_training)
        val_loss = total_loss / count
        return {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50.0)),
                "val_accuracy": correct / count}

    @torch.no_grad()
    def sample(self, model: nn.Module, offset: int = 0) -> str:
        """A short sample from a fixed prompt, with its own RNG so training randomness is
        untouched; through the decoding core, so it follows generation's rules (no byte token
        the training data never used)."""
        config = GenerationConfig(max_new_tokens=self.cfg.sample_length, temperature=0.8, top_k=40,
                                  seed=self.seed + offset)
        eos = self.tokenizer.eos_id
        tokens = [event.token for _, event in generate_stream(
            model, self.tokenizer, [self.prompt], config, stop_ids=() if eos is None else (eos,))
            if event.token != eos]
        return self.tokenizer.decode(tokens, skip_special_tokens=True)
