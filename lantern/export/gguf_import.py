"""A GGUF file (llama.cpp's format, architectures `llama` and `gpt2`) as a LANTERN model and
tokenizer.

The inverse of `gguf_export`, and the way in for models published as GGUF. Each layer becomes
one LANTERN block; tensors are dequantized to float32 by the `gguf` package; llama.cpp's
interleaved query/key rows are put back in the rotate-half order LANTERN's RoPE uses; width,
heads (grouped-query included), norm epsilon, RoPE base, context and tied embeddings come from
the metadata. Whatever LANTERN cannot compute exactly is refused, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.describe import open_gguf
from lantern.tokenizers import Tokenizer
from lantern.tokenizers.gguf_vocab import tokenizer_from_gguf

ARCHITECTURES = ("llama", "gpt2")
TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")


def metadata(reader) -> dict[str, Any]:
    """Every metadata key of the file with its value (numbers, strings, lists)."""
    return {name: field.contents() for name, field in reader.fields.items()}


def float32_value(value: float) -> float:
    """A float32 from the file as the number it was written as (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(value)))


def required(fields: dict[str, Any], key: str) -> Any:
    if fields.get(key) is None:
        raise LanternError(f"the file lacks {key}")
    return fields[key]


def llama_config(fields: dict[str, Any], names: set[str], vocab_size: int) -> LANTERNConfig:
    heads = int(required(fields, "llama.attention.head_count"))
    width = int(required(fields, "llama.embedding_length"))
    kv_heads = fields.get("llama.attention.head_count_kv", heads)
    if isinstance(kv_heads, list):
        raise LanternError("per-layer key/value head counts cannot be imported")
    if fields.get("llama.expert_count"):
        raise LanternError("mixture-of-experts layers (llama.expert_count) cannot be imported")
    scaling = fields.get("llama.rope.scaling.type")
    if scaling not in (None, "none"):
        raise LanternError(f"RoPE scaling {scaling!r} cannot be imported; only plain RoPE can")
    head_dim = width // heads
    for key in ("llama.rope.dimension_count", "llama.attention.key_length", "llama.attention.value_length"):
        if fields.get(key) not in (None, head_dim):
            raise LanternError(f"{key} is {fields[key]}, not the head size {head_dim} (width / heads); "
                               "LANTERN rotates and attends over whole heads")
    return LANTERNConfig(
        vocab_size=vocab_size, context_length=int(required(fields, "llama.context_length")),
        hidden_size=width, num_heads=heads, num_kv_heads=None if kv_heads == heads else int(kv_heads),
        num_blocks=int(required(fields, "llama.block_count")),
        mlp_hidden_size=int(required(fields, "llama.feed_forward_length")),
        mlp="swiglu", norm="rmsnorm", position="rope",
        rope_theta=float32_value(fields.get("llama.rope.freq_base", 10000.0)),
        norm_eps=float32_value(required(fields, "llama.attention.layer_norm_rms_epsilon")),
        bias=any(name.endswith(".bias") for name in names), tie_embeddings="output.weight" not in names,
    )


def gpt2_config(fields: dict[str, Any], names: set[str], vocab_size: int) -> LANTERNConfig:
    return LANTERNConfig(
        vocab_size=vocab_size, context_length=int(required(fields, "gpt2.context_length")),
        hidden_size=int(required(fields, "gpt2.embedding_length")),
        num_heads=int(required(fields, "gpt2.attention.head_count")),
        num_blocks=int(required(fields, "gpt2.block_count")),
        mlp_hidden_size=int(required(fields, "gpt2.feed_forward_length")),
        mlp="gelu", norm="layernorm", position="learned", bias=True,
        norm_eps=float32_value(required(fields, "gpt2.attention.layer_norm_epsilon")),
        tie_embeddings="output.weight" not in names,
    )


def model_config(fields: dict[str, Any], names: set[str], vocab_size: int) -> LANTERNConfig:
    arch = fields.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise LanternError(f"architecture {arch!r} cannot be imported; supported: {', '.join(ARCHITECTURES)}")
    if fields.get(f"{arch}.vocab_size") not in (None, vocab_size):
        raise LanternError(f"{arch}.vocab_size is {fields[f'{arch}.vocab_size']} but the vocabulary "
                           f"holds {vocab_size} tokens")
    return (llama_config if arch == "llama" else gpt2_config)(fields, names, vocab_size)


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


def rope_unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's interleaved query/key rows back to rotate-half (first half, second half of
    each head): the inverse of `gguf_export.rope_permute`."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


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


def llama_state(take: TensorTaker, cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
    out = {"embed_tokens.weight": take("token_embd.weight"),
           "transformer.norm.weight": take("output_norm.weight")}
    out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else take("output.weight")
    heads = {"q": cfg.num_heads, "k": cfg.kv_heads, "v": None}
    widths = {"q": cfg.num_heads * cfg.head_dim, "k": cfg.kv_heads * cfg.head_dim,
              "v": cfg.kv_heads * cfg.head_dim}
    for i in range(cfg.num_blocks):
        p, q = f"blk.{i}.", f"transformer.blocks.{i}."

        def qkv(kind: str, p: str = p) -> torch.Tensor:
            parts = []
            for n in "qkv":
                w = take(f"{p}attn_{n}.{kind}", widths[n] if kind == "bias" else None)
                parts.append(w if heads[n] is None else rope_unpermute(w, heads[n]))
            return torch.cat(parts)

        out[q + "attn.qkv.weight"] = qkv("weight")
        out[q + "attn.proj.weight"] = take(p + "attn_output.weight")
        out[q + "mlp.up.weight"] = torch.cat([take(p + "ffn_gate.weight"), take(p + "ffn_up.weight")])
        out[q + "mlp.down.weight"] = take(p + "ffn_down.weight")
        out[q + "attn_norm.weight"] = take(p + "attn_norm.weight")
        out[q + "mlp_norm.weight"] = take(p + "ffn_norm.weight")
        if cfg.bias:
            out[q + "attn.qkv.bias"] = qkv("bias")
            out[q + "attn.proj.bias"] = take(p + "attn_output.bias", cfg.hidden_size)
            out[q + "mlp.up.bias"] = torch.cat([take(p + "ffn_gate.bias", cfg.ffn_size),
                                                take(p + "ffn_up.bias", cfg.ffn_size)])
            out[q + "mlp.down.bias"] = take(p + "ffn_down.bias", cfg.hidden_size)
    return out


def gpt2_state(take: TensorTaker, cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
    out = {"embed_tokens.weight": take("token_embd.weight"), "positions.table": take("position_embd.weight"),
           "transformer.norm.weight": take("output_norm.weight"),
           "transformer.norm.bias": take("output_norm.bias")}
    out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else take("output.weight")
    names = {"attn_norm": "attn_norm", "attn_qkv": "attn.qkv", "attn_output": "attn.proj",
             "ffn_norm": "mlp_norm", "ffn_up": "mlp.up", "ffn_down": "mlp.down"}
    for i in range(cfg.num_blocks):
        for theirs, ours in names.items():
            for kind in ("weight", "bias"):
                out[f"transformer.blocks.{i}.{ours}.{kind}"] = take(f"blk.{i}.{theirs}.{kind}")
    return out


def read_description(reader) -> tuple[LANTERNConfig, Tokenizer]:
    """The model config and tokenizer the file's metadata describe, without reading a tensor."""
    fields = metadata(reader)
    tokenizer = tokenizer_from_gguf(fields)
    cfg = model_config(fields, {t.name for t in reader.tensors}, tokenizer.vocab_size)
    check_tensor_types(reader)
    return cfg, tokenizer


def load_gguf(path: str | Path) -> tuple[Any, Tokenizer]:
    """(LANTERNModel in eval mode, Tokenizer) from a GGUF file."""
    from lantern.models.lantern_model import LANTERNModel

    path = Path(path)
    reader = open_gguf(path)
    try:
        cfg, tokenizer = read_description(reader)
        arch = "llama" if cfg.position == "rope" else "gpt2"
        take = TensorTaker(dequantized(reader), arch)
        state = (llama_state if arch == "llama" else gpt2_state)(take, cfg)
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
