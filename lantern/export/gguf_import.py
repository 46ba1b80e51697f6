"""A GGUF file (llama.cpp's format) as a LANTERN model and tokenizer.

The inverse of `gguf_export`, and the way in for models published as GGUF. The file's
`general.architecture` picks the architecture (`arches`), which reads the metadata (width,
heads, grouped-query included, norm epsilon, RoPE base, context, tied embeddings) and maps the
tensors, dequantized to float32 by the `gguf` package, to LANTERN's; each layer becomes one
LANTERN block. Whatever LANTERN cannot compute exactly is refused, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.arches import ExportArch, arch_for_gguf
from lantern.export.describe import open_gguf
from lantern.tokenizers import Tokenizer
from lantern.tokenizers.gguf_vocab import tokenizer_from_gguf

TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")


def metadata(reader) -> dict[str, Any]:
    """Every metadata key of the file with its value (numbers, strings, lists)."""
    return {name: field.contents() for name, field in reader.fields.items()}


def file_arch(fields: dict[str, Any], vocab_size: int) -> ExportArch:
    """The file's architecture, once its vocabulary size is checked against the metadata."""
    arch = arch_for_gguf(fields.get("general.architecture"))
    size = fields.get(arch.key("vocab_size"))
    if size not in (None, vocab_size):
        raise LanternError(f"{arch.key('vocab_size')} is {size} but the vocabulary holds "
                           f"{vocab_size} tokens")
    return arch


def check_tensor_types(reader) -> None:
    for t in reader.tensors:
        if t.tensor_type.name not in TENSOR_TYPES:
            raise LanternError(f"tensor {t.name} is {t.tensor_type.name}; LANTERN reads "
                               f"{', '.join(TENSOR_TYPES)}")


def dequantized(reader) -> dict[str, torch.Tensor]:
    """Every tensor as float32, in (out, in) shape."""
    from gguf.quants import dequantize

    tensors = {}
    for t in reader.tensors:
        shape = [int(d) for d in reversed(t.shape)]
        values = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        tensors[t.name] = torch.tensor(values)
    return tensors


class TensorTaker:
    """Hands out the file's tensors by name, so those left over can be refused afterwards."""

    def __init__(self, tensors: dict[str, torch.Tensor], arch: str) -> None:
        self.tensors, self.arch = dict(tensors), arch

    def __call__(self, name: str, zeros: int | None = None) -> torch.Tensor:
        if name in self.tensors:
            return self.tensors.pop(name)
        if zeros is not None:  # an absent bias is a zero bias
            return torch.zeros(zeros)
        raise LanternError(f"the file lacks the tensor {name}")

    def check_all_taken(self) -> None:
        if self.tensors:
            name = sorted(self.tensors)[0]
            raise LanternError(f"tensor {name} has no counterpart in LANTERN's {self.arch} (RoPE "
                               "scaling tables, experts and other extras cannot be imported)")


def describe_file(reader) -> tuple[ExportArch, LANTERNConfig, Tokenizer]:
    """(architecture, config, tokenizer) from the metadata; tensor types checked, none read."""
    fields = metadata(reader)
    tokenizer = tokenizer_from_gguf(fields)
    arch = file_arch(fields, tokenizer.vocab_size)
    cfg = arch.config_from_gguf(fields, {t.name for t in reader.tensors}, tokenizer.vocab_size)
    check_tensor_types(reader)
    return arch, cfg, tokenizer


def read_description(reader) -> tuple[LANTERNConfig, Tokenizer]:
    """The model config and tokenizer the file's metadata describe, without reading a tensor."""
    _, cfg, tokenizer = describe_file(reader)
    return cfg, tokenizer


def load_gguf(path: str | Path) -> tuple[Any, Tokenizer]:
    """(LANTERNModel in eval mode, Tokenizer) from a GGUF file."""
    from lantern.models.lantern_model import LANTERNModel

    path = Path(path)
    reader = open_gguf(path)
    try:
        arch, cfg, tokenizer = describe_file(reader)
        take = TensorTaker(dequantized(reader), arch.name)
        state = arch.state_from_gguf(take, cfg)
        take.check_all_taken()
    except LanternError as exc:
        raise LanternError(f"{path}: {exc}") from None
    model = LANTERNModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LanternError(f"{path}: the tensors do not match the metadata "
                           f"({str(exc).splitlines()[-1].strip()[:160]})") from None
    return model.eval(), tokenizer
