"""AdamW with decay only where it belongs, and the warmup + cosine (or warmup-stable-decay)
learning-rate schedule.

Both work on any `nn.Module` with a plain training step (the language-model trainer, the
LLM-TRM pipeline).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lantern.training.settings import OptimizerSection, ScheduleSection


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed), by nanoGPT's rule: decay only the weight matrices of linear
    layers. Gates, norms, biases, embeddings and position tables are left alone; a linear
    weight tied to an embedding (a tied output head) counts as the embedding."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    decay, plain = [], []
    for param in model.parameters():  # unique parameters: a tied weight appears once
        if not param.requires_grad:
            continue
        is_matrix = id(param) in linear and id(param) not in embedded
        (decay if is_matrix else plain).append(param)
    return decay, plain


def make_optimizer(model: nn.Module, cfg: OptimizerSection) -> torch.optim.AdamW:
    decay, plain = parameter_groups(model)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), foreach=True)


def learning_rate_at(
    step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int,
    shape: str = "cosine", decay_fraction: float = 0.2,
) -> float:
    """Linear warmup from 0 to max_lr over warmup_steps, then cosine decay to min_lr; or, with
    shape "wsd", max_lr held until the last `decay_fraction` of max_steps, then a linear fall
    to min_lr."""
    if warmup_steps > 0 and step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    if shape == "wsd":
        decay_start = max(warmup_steps, max_steps - round(decay_fraction * max_steps))
        if step < decay_start:
            return max_lr
        progress = (step - decay_start) / max(1, max_steps - decay_start)
        return max_lr + progress * (min_lr - max_lr)
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


class LRSchedule:
    """Sets each step's learning rate on an optimizer; stateless, so resuming needs only the step."""

    def __init__(self, cfg: ScheduleSection, max_lr: float, max_steps: int) -> None:
        self.max_lr, self.max_steps, self.cfg = max_lr, max_steps, cfg
        self.min_lr = cfg.min_lr if cfg.min_lr is not None else max_lr / 10

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        cfg = self.cfg
        lr = learning_rate_at(step, self.max_lr, self.min_lr, cfg.warmup_steps, self.max_steps,
                              cfg.lr_schedule, cfg.decay_fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
