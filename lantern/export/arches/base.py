"""What one standard architecture knows, and the registry that finds it.

An `ExportArch` holds everything about one architecture that a format needs: which LANTERN
configs it computes exactly, its `transformers` config and tensor names, its GGUF name,
metadata and tensor names, and the way back from both formats. The writers and readers
(`hf_export`, `gguf_export`, `hf_import`, `gguf_import`, `describe`, `llamacpp`) name no
architecture: they ask the registry, by LANTERN config, `model_type` or `general.architecture`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError

if TYPE_CHECKING:
    from lantern.export.architecture import ExportPlan
    from lantern.tokenizers import Tokenizer

# A GGUF tensor by name, taken from the file; `take(name, width)` gives zeros of that width when
# the file has no such tensor (an absent bias is a zero bias).
Take = Callable[..., torch.Tensor]


class ExportArch(ABC):
    """One architecture of `transformers` and/or llama.cpp that computes what some LANTERN
    configs compute. Instances are stateless; `register` makes one of each subclass known."""

    name: ClassVar[str]  # what `lantern export` and `lantern info` call it
    settings: ClassVar[str]  # the LANTERN settings that export to it, for refusals
    hf_model_type: ClassVar[str]  # config.json's model_type
    gguf_name: ClassVar[str | None] = None  # general.architecture; None: llama.cpp has no equivalent
    # transformers' common config names (num_hidden_layers, ...) that this config spells its own way
    hf_aliases: ClassVar[dict[str, str]] = {}
    positions_shift: ClassVar[bool] = True  # llama.cpp can shift cached positions past the context

    @abstractmethod
    def matches(self, config: LANTERNConfig) -> bool:
        """Whether `config` is this architecture's (at most one registered architecture says yes)."""

    def refusal(self, config: LANTERNConfig) -> str | None:
        """Why a matching config cannot export after all (a feature this architecture lacks)."""
        return None

    def gguf_refusal(self, config: LANTERNConfig) -> str | None:
        """Why a matching config cannot export to GGUF (llama.cpp has no such graph)."""
        if self.gguf_name is None:
            return f"llama.cpp has no {self.name} architecture; export with --format hf"
        return None

    # --- transformers -------------------------------------------------------------------------

    @abstractmethod
    def hf_config(self, model, plan: ExportPlan, tokenizer: Tokenizer) -> Any:
        """The `transformers` config of the exported model."""

    @abstractmethod
    def hf_state_dict(self, model, plan: ExportPlan) -> dict[str, torch.Tensor]:
        """The exported weights under `transformers`' names."""

    @abstractmethod
    def config_from_hf(self, c: dict[str, Any]) -> LANTERNConfig:
        """The LANTERN config of a config.json of this model_type; refuse what LANTERN lacks."""

    @abstractmethod
    def state_from_hf(self, weights: dict[str, torch.Tensor], cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
        """A `transformers` state dict as LANTERN's (one block per layer)."""

    # --- GGUF ---------------------------------------------------------------------------------

    def key(self, name: str) -> str:
        """The GGUF metadata key of this architecture's hyper-parameter `name`."""
        return f"{self.gguf_name}.{name}"

    @abstractmethod
    def gguf_tensors(self, model, plan: ExportPlan) -> dict[str, np.ndarray]:
        """The exported weights under llama.cpp's names, float32, (out, in) shape."""

    @abstractmethod
    def add_gguf_hyperparameters(self, writer, model, plan: ExportPlan) -> None:
        """This architecture's metadata, written with a `gguf.GGUFWriter`."""

    @abstractmethod
    def config_from_gguf(self, fields: dict[str, Any], names: set[str], vocab_size: int) -> LANTERNConfig:
        """The LANTERN config of a file's metadata `fields` and tensor `names`."""

    @abstractmethod
    def state_from_gguf(self, take: Take, cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
        """The file's tensors as LANTERN's state dict."""


ARCHES: list[ExportArch] = []
A = TypeVar("A", bound=type[ExportArch])


def register(cls: A) -> A:
    """Class decorator: the architecture becomes known to every writer and reader."""
    ARCHES.append(cls())
    return cls


def effective_window(config: LANTERNConfig) -> int | None:
    """The attention window, or None when it never limits anything inside the context."""
    window = config.attention_window
    return None if window is None or window >= config.context_length else window


def arch_for_config(config: LANTERNConfig) -> ExportArch:
    """The one architecture that computes what `config` computes; refuse when none does."""
    found = [arch for arch in ARCHES if arch.matches(config)]
    if not found:
        raise LanternError(
            f"position {config.position} + norm {config.norm} + mlp {config.mlp} has no standard "
            f"equivalent; these export: {'; '.join(arch.settings for arch in ARCHES)}"
        )
    if len(found) > 1:
        raise LanternError(f"internal error: {', '.join(a.name for a in found)} all claim this config")
    reason = found[0].refusal(config)
    if reason:
        raise LanternError(reason)
    return found[0]


def arch_for_hf(model_type: Any) -> ExportArch:
    """The architecture of a config.json's model_type; refuse one LANTERN cannot import."""
    for arch in ARCHES:
        if arch.hf_model_type == model_type:
            return arch
    supported = ", ".join(arch.hf_model_type for arch in ARCHES)
    raise LanternError(f"model_type {model_type!r} cannot be imported; supported: {supported}")


def arch_for_gguf(name: Any) -> ExportArch:
    """The architecture of a GGUF file's general.architecture; refuse one LANTERN cannot import."""
    for arch in ARCHES:
        if arch.gguf_name is not None and arch.gguf_name == name:
            return arch
    supported = ", ".join(arch.gguf_name for arch in ARCHES if arch.gguf_name is not None)
    raise LanternError(f"architecture {name!r} cannot be imported; supported: {supported}")


def can_shift_positions(gguf_name: str) -> bool:
    """Whether llama.cpp can go on past the context in this GGUF architecture (RoPE keys
    shift; learned positions cannot). One LANTERN does not know is left to llama.cpp."""
    return all(arch.positions_shift for arch in ARCHES if arch.gguf_name == gguf_name)


def hf_value(config: dict[str, Any], key: str) -> Any:
    """A config.json value under transformers' common name `key` (num_hidden_layers, ...) or
    under the name a registered architecture gives it (GPT-2's n_layer); None if absent."""
    for name in (key, *(arch.hf_aliases[key] for arch in ARCHES if key in arch.hf_aliases)):
        if name in config:
            return config[name]
    return None
