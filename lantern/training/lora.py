"""Low-rank adapters (LoRA, through `peft`) on a pretrained LANTERN model's linear layers.

With `--lora_rank R` each chosen linear layer keeps its weight W frozen and learns two small
matrices beside it, A (R x in) and B (out x R), so that it computes with W + (alpha / R) B A.
Gradients and optimizer state cover the adapters alone, which is where the memory goes.
Full checkpoints keep W and the adapters apart (peft's parameter names), so a run resumes exactly;
weights-only files, `model.safetensors` and every export hold the merged W + (alpha / R) B A
under W's own name, so what a LoRA run leaves behind is a plain LANTERN model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lantern.errors import LanternError
from lantern.training.settings import LoraSection

TARGETS = ("qkv", "proj", "up", "down")  # every linear layer of a block (attention and MLP)
ADAPTER_NAME = "default"  # peft's name for a model's one adapter
_A_SUFFIX = f".lora_A.{ADAPTER_NAME}.weight"
_B_SUFFIX = f".lora_B.{ADAPTER_NAME}.weight"


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]

    @classmethod
    def from_section(cls, section: LoraSection | Mapping[str, Any]) -> LoraSettings | None:
        """The run's adapters, or None when it trains every weight."""
        get = section.get if isinstance(section, Mapping) else lambda name: getattr(section, name)
        rank = int(get("lora_rank") or 0)
        if rank <= 0:
            return None
        names = get("lora_targets") or ",".join(TARGETS)
        targets = tuple(name.strip() for name in names.split(",") if name.strip())
        unknown = [name for name in targets if name not in TARGETS]
        if unknown or not targets:
            raise LanternError(f"--lora_targets {names!r}: choose among {', '.join(TARGETS)} "
                               "(comma-separated)")
        alpha = get("lora_alpha")
        return cls(rank, float(alpha) if alpha is not None else 2.0 * rank,
                   float(get("lora_dropout") or 0.0), targets)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


def target_layers(model: nn.Module, targets: tuple[str, ...]) -> dict[str, nn.Linear]:
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets}


def attach_lora(model: nn.Module, settings: LoraSettings) -> None:
    """Adapters on every target layer, in place (B starts at zero, so the model computes exactly
    what it did); every other weight is frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    layers = target_layers(model, settings.targets)
    missing = [t for t in settings.targets if not any(n.endswith(f".{t}") for n in layers)]
    if missing:
        raise LanternError(f"--lora_targets {','.join(missing)}: this model has no such linear "
                           f"layers (LoRA adapts {', '.join(TARGETS)})")
    smallest = min(min(layer.in_features, layer.out_features) for layer in layers.values())
    if settings.rank > smallest:
        raise LanternError(f"--lora_rank {settings.rank} is above the smallest adapted layer's "
                           f"width ({smallest}); a low-rank adapter needs a rank below it")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=sorted(layers), bias="none")
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad = ".lora_" in name


def has_adapters(weights: Mapping[str, Any]) -> bool:
    return any(key.endswith(_A_SUFFIX) for key in weights)


def merged_weights(weights: Mapping[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Plain LANTERN weights from a LoRA model's: W + scaling * B @ A (computed in float32) under
    W's own name, every other tensor as it was (tied tensors stay one tensor)."""
    plain = {key.replace(".base_layer.", "."): value for key, value in weights.items()
             if ".lora_" not in key}
    for key, a in weights.items():
        if not key.endswith(_A_SUFFIX):
            continue
        layer = key.removesuffix(_A_SUFFIX)
        b, w = weights[layer + _B_SUFFIX], plain[layer + ".weight"]
        plain[layer + ".weight"] = (w.float() + scaling * (b.float() @ a.float())).to(w.dtype)
    return plain


def merged_checkpoint_weights(weights: Mapping[str, torch.Tensor],
                              train_config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A LoRA run's full checkpoint as a plain model's weights (its settings say the scaling)."""
    settings = LoraSettings.from_section(train_config.get("lora") or {})
    if settings is None:
        raise LanternError("this checkpoint holds LoRA adapters but no --lora_rank in its settings")
    return merged_weights(weights, settings.scaling)


@contextmanager
def merged_state_dicts(model: nn.Module, settings: LoraSettings | None) -> Iterator[None]:
    """Within the block, `model.state_dict()` gives the merged plain weights (what weights-only
    files and exports hold); the model itself, its adapters and its training are untouched."""
    if settings is None:
        yield
        return

    def merge(module: nn.Module, state: dict[str, Any], prefix: str, metadata: Any) -> None:
        plain = merged_weights(state, settings.scaling)
        state.clear()
        state.update(plain)

    handle = model.register_state_dict_post_hook(merge)
    try:
        yield
    finally:
        handle.remove()


def trainable_summary(model: nn.Module, settings: LoraSettings) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    layers = sum(1 for name, _ in model.named_modules() if name.endswith(f".lora_A.{ADAPTER_NAME}"))
    return (f"LoRA: rank {settings.rank}, alpha {settings.alpha:g}, dropout {settings.dropout:g} on "
            f"{layers} layers ({', '.join(settings.targets)}) | {trainable:,} trainable parameters")
