"""GPT-2 (`GPT2LMHeadModel`, GGUF `gpt2`): learned or sinusoidal positions, LayerNorm, GELU.

GPT-2's `Conv1D` layers store weights as (in, out), so linear weights transpose; it has no
grouped-query attention, so key/value heads are repeated to one per query head; absent biases
are written as zeros (the same function); a sinusoidal table is written as the position
embedding. LANTERN's GELU is the tanh form: `gelu_pytorch_tanh` in transformers (GPT-2's own
default `gelu_new` is the same formula), and the GELU of llama.cpp's `gpt2` graph.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.arches.base import ExportArch, Take, effective_window, register
from lantern.export.arches.parts import (
    float32_array,
    float32_value,
    norm_eps,
    required,
    split_qkv,
    token_ids,
)

if TYPE_CHECKING:
    from lantern.export.architecture import ExportPlan
    from lantern.tokenizers import Tokenizer

GELU_ACTIVATION = "gelu_pytorch_tanh"
TANH_GELUS = (GELU_ACTIVATION, "gelu_new", "gelu_python_tanh", "gelu_fast")
# GPT-2's module names in transformers, LANTERN's and llama.cpp's, per layer
LANTERN_NAMES = {"ln_1": "attn_norm", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
                 "ln_2": "mlp_norm", "mlp.c_fc": "mlp.up", "mlp.c_proj": "mlp.down"}
GGUF_NAMES = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
              "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


def expand_kv(w: torch.Tensor, model) -> torch.Tensor:
    """Grouped-query keys/values repeated to one head per query head."""
    cfg = model.config
    heads = w.reshape(cfg.kv_heads, cfg.head_dim, *w.shape[1:])
    return heads.repeat_interleave(cfg.num_heads // cfg.kv_heads, dim=0).reshape(-1, *w.shape[1:])


def layer_parts(model, block: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(weight (out, in), bias) of every GPT-2 tensor of one block; absent biases are zeros,
    which is exactly what a layer without bias computes."""
    b = model.transformer.blocks[block]

    def with_bias(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return weight.detach(), (bias.detach() if bias is not None
                                 else torch.zeros(weight.shape[0], dtype=weight.dtype))

    (q, qb), (k, kb), (v, vb) = [with_bias(w, bias) for w, bias in split_qkv(model, block)]
    return {
        "ln_1": with_bias(b.attn_norm.weight, b.attn_norm.bias),
        "attn.c_attn": (torch.cat([q, expand_kv(k, model), expand_kv(v, model)]),
                        torch.cat([qb, expand_kv(kb, model), expand_kv(vb, model)])),
        "attn.c_proj": with_bias(b.attn.proj.weight, b.attn.proj.bias),
        "ln_2": with_bias(b.mlp_norm.weight, b.mlp_norm.bias),
        "mlp.c_fc": with_bias(b.mlp.up.weight, b.mlp.up.bias),
        "mlp.c_proj": with_bias(b.mlp.down.weight, b.mlp.down.bias),
    }


def final_norm(model) -> tuple[torch.Tensor, torch.Tensor]:
    norm = model.transformer.norm
    return norm.weight, norm.bias if norm.bias is not None else torch.zeros_like(norm.weight)


@register
class GPT2(ExportArch):
    name = "gpt2"
    settings = "position learned|sinusoidal + norm layernorm + mlp gelu (GPT-2)"
    hf_model_type = "gpt2"
    gguf_name = "gpt2"
    hf_aliases = {"num_hidden_layers": "n_layer", "hidden_size": "n_embd",
                  "num_attention_heads": "n_head", "max_position_embeddings": "n_positions"}
    positions_shift = False

    def matches(self, config: LANTERNConfig) -> bool:
        return (config.position in ("learned", "sinusoidal")
                and (config.norm, config.mlp) == ("layernorm", "gelu"))

    def refusal(self, config: LANTERNConfig) -> str | None:
        window = effective_window(config)
        if window is not None:
            return (f"a sliding window (attention_window {window}) with {config.position} positions "
                    "has no standard equivalent; position rope + norm rmsnorm + mlp swiglu with a "
                    "window exports as Mistral")
        return None

    # --- transformers -------------------------------------------------------------------------

    def hf_config(self, model, plan: ExportPlan, tokenizer: Tokenizer) -> Any:
        from transformers import GPT2Config

        cfg = model.config
        return GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.hidden_size,
            n_layer=plan.num_layers, n_head=cfg.num_heads, n_inner=cfg.ffn_size,
            activation_function=GELU_ACTIVATION, layer_norm_epsilon=norm_eps(model),
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            tie_word_embeddings=cfg.tie_embeddings, **token_ids(tokenizer),
        )

    def hf_state_dict(self, model, plan: ExportPlan) -> dict[str, torch.Tensor]:
        norm_w, norm_b = final_norm(model)
        out = {"transformer.wte.weight": model.embed_tokens.weight,
               "transformer.wpe.weight": model.positions.table.detach(),  # learned or sinusoidal
               "transformer.ln_f.weight": norm_w, "transformer.ln_f.bias": norm_b}
        if not model.config.tie_embeddings:
            out["lm_head.weight"] = model.lm_head.weight
        for i, b in enumerate(plan.layers):
            for name, (w, bias) in layer_parts(model, b).items():
                out[f"transformer.h.{i}.{name}.weight"] = w if name.startswith("ln") else w.t()
                out[f"transformer.h.{i}.{name}.bias"] = bias
        return out

    def config_from_hf(self, c: dict[str, Any]) -> LANTERNConfig:
        act = c.get("activation_function", "gelu_new")
        if act == "gelu":
            print("lantern: warning: activation gelu (exact) is imported as LANTERN's tanh GELU; "
                  "outputs differ slightly", file=sys.stderr)
        elif act not in TANH_GELUS:
            raise LanternError(f"activation_function {act!r} cannot be imported; tanh GELU can")
        if c.get("scale_attn_by_inverse_layer_idx") or not c.get("scale_attn_weights", True):
            raise LanternError("GPT-2 attention scaling other than 1/sqrt(head size) cannot be imported")
        return LANTERNConfig(
            vocab_size=c["vocab_size"], context_length=c["n_positions"], hidden_size=c["n_embd"],
            num_heads=c["n_head"], num_blocks=c["n_layer"], mlp_hidden_size=c.get("n_inner"),
            mlp="gelu", norm="layernorm", position="learned", bias=True,
            norm_eps=float(c.get("layer_norm_epsilon", 1e-5)),
            tie_embeddings=bool(c.get("tie_word_embeddings", True)),
        )

    def state_from_hf(self, weights: dict[str, torch.Tensor], cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
        def get(name: str) -> torch.Tensor:
            for key in (name, name.removeprefix("transformer.")):
                if key in weights:
                    return weights[key]
            raise LanternError(f"the weights lack {name}")

        out = {"embed_tokens.weight": get("transformer.wte.weight"),
               "positions.table": get("transformer.wpe.weight"),
               "transformer.norm.weight": get("transformer.ln_f.weight"),
               "transformer.norm.bias": get("transformer.ln_f.bias")}
        out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else get("lm_head.weight")
        for i in range(cfg.num_blocks):
            for theirs, ours in LANTERN_NAMES.items():
                weight = get(f"transformer.h.{i}.{theirs}.weight")
                linear = not theirs.startswith("ln")
                out[f"transformer.blocks.{i}.{ours}.weight"] = weight.t() if linear else weight
                out[f"transformer.blocks.{i}.{ours}.bias"] = get(f"transformer.h.{i}.{theirs}.bias")
        return out

    # --- GGUF ---------------------------------------------------------------------------------

    def gguf_tensors(self, model, plan: ExportPlan) -> dict[str, np.ndarray]:
        norm_w, norm_b = final_norm(model)
        out = {"token_embd.weight": float32_array(model.embed_tokens.weight),
               "position_embd.weight": float32_array(model.positions.table),
               "output_norm.weight": float32_array(norm_w), "output_norm.bias": float32_array(norm_b)}
        if not model.config.tie_embeddings:
            out["output.weight"] = float32_array(model.lm_head.weight)
        for i, b in enumerate(plan.layers):
            for name, (w, bias) in layer_parts(model, b).items():
                out[f"blk.{i}.{GGUF_NAMES[name]}.weight"] = float32_array(w)
                out[f"blk.{i}.{GGUF_NAMES[name]}.bias"] = float32_array(bias)
        return out

    def add_gguf_hyperparameters(self, writer, model, plan: ExportPlan) -> None:
        cfg = model.config
        writer.add_context_length(cfg.context_length)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(plan.num_layers)
        writer.add_feed_forward_length(cfg.ffn_size)
        writer.add_head_count(cfg.num_heads)
        writer.add_head_count_kv(cfg.num_heads)  # keys/values expanded to one head per query head
        writer.add_layer_norm_eps(norm_eps(model))

    def config_from_gguf(self, fields: dict[str, Any], names: set[str], vocab_size: int) -> LANTERNConfig:
        key = self.key
        return LANTERNConfig(
            vocab_size=vocab_size, context_length=int(required(fields, key("context_length"))),
            hidden_size=int(required(fields, key("embedding_length"))),
            num_heads=int(required(fields, key("attention.head_count"))),
            num_blocks=int(required(fields, key("block_count"))),
            mlp_hidden_size=int(required(fields, key("feed_forward_length"))),
            mlp="gelu", norm="layernorm", position="learned", bias=True,
            norm_eps=float32_value(required(fields, key("attention.layer_norm_epsilon"))),
            tie_embeddings="output.weight" not in names,
        )

    def state_from_gguf(self, take: Take, cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
        out = {"embed_tokens.weight": take("token_embd.weight"),
               "positions.table": take("position_embd.weight"),
               "transformer.norm.weight": take("output_norm.weight"),
               "transformer.norm.bias": take("output_norm.bias")}
        out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else take("output.weight")
        for i in range(cfg.num_blocks):
            for theirs, ours in LANTERN_NAMES.items():
                for kind in ("weight", "bias"):
                    tensor = take(f"blk.{i}.{GGUF_NAMES[theirs]}.{kind}")
                    out[f"transformer.blocks.{i}.{ours}.{kind}"] = tensor
        return out
