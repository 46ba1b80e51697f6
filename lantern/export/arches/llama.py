"""Llama (`LlamaForCausalLM`, GGUF `llama`): RoPE, RMSNorm, SwiGLU; and Mistral, Llama with
a sliding window (`MistralForCausalLM`, transformers only).

LANTERN's fused qkv and gate|value projections are split into Llama's separate ones. Both use
the rotate-half RoPE layout, so transformers needs no permutation; llama.cpp's `llama` graph
rotates interleaved pairs, so the GGUF gets the query/key row permutation llama.cpp's own
`convert_hf_to_gguf.py` applies, and the importer undoes it.
"""

from __future__ import annotations

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

KINDS = ("rope", "rmsnorm", "swiglu")  # position, norm, mlp
# transformers' module names and llama.cpp's tensor names, per layer
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def rope_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Rotate-half rows (first half, second half of each head) to llama.cpp's interleaved pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's interleaved query/key rows back to rotate-half: the inverse of `rope_permute`."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def is_llama_family(config: LANTERNConfig) -> bool:
    return (config.position, config.norm, config.mlp) == KINDS


@register
class Llama(ExportArch):
    """Every projection has a bias or none does (`attention_bias` and `mlp_bias` together)."""

    name = "llama"
    settings = "position rope + norm rmsnorm + mlp swiglu (Llama)"
    hf_model_type = "llama"
    gguf_name = "llama"

    def matches(self, config: LANTERNConfig) -> bool:
        return (is_llama_family(config) and effective_window(config) is None
                and (config.bias or not config.qkv_bias))

    # --- transformers -------------------------------------------------------------------------

    def hf_values(self, model, plan: ExportPlan, tokenizer: Tokenizer) -> dict[str, Any]:
        """The config values Llama and its variants share."""
        cfg = model.config
        return dict(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_size,
            num_hidden_layers=plan.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
            max_position_embeddings=cfg.context_length, rms_norm_eps=norm_eps(model),
            tie_word_embeddings=cfg.tie_embeddings, attention_dropout=0.0,
            rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
            **token_ids(tokenizer),
        )

    def hf_config(self, model, plan: ExportPlan, tokenizer: Tokenizer) -> Any:
        from transformers import LlamaConfig

        bias = model.config.bias
        return LlamaConfig(attention_bias=bias, mlp_bias=bias, **self.hf_values(model, plan, tokenizer))

    def hf_state_dict(self, model, plan: ExportPlan) -> dict[str, torch.Tensor]:
        cfg = model.config
        out = {"model.embed_tokens.weight": model.embed_tokens.weight,
               "model.norm.weight": model.transformer.norm.weight}
        if not cfg.tie_embeddings:
            out["lm_head.weight"] = model.lm_head.weight
        for i, b in enumerate(plan.layers):
            block, p = model.transformer.blocks[b], f"model.layers.{i}."
            for name, (w, bias) in zip(("q_proj", "k_proj", "v_proj"), split_qkv(model, b), strict=True):
                out[f"{p}self_attn.{name}.weight"] = w
                if bias is not None:
                    out[f"{p}self_attn.{name}.bias"] = bias
            gate, up = block.mlp.up.weight.chunk(2, dim=0)
            out |= {f"{p}self_attn.o_proj.weight": block.attn.proj.weight,
                    f"{p}mlp.gate_proj.weight": gate, f"{p}mlp.up_proj.weight": up,
                    f"{p}mlp.down_proj.weight": block.mlp.down.weight,
                    f"{p}input_layernorm.weight": block.attn_norm.weight,
                    f"{p}post_attention_layernorm.weight": block.mlp_norm.weight}
            if cfg.bias:
                gate_b, up_b = block.mlp.up.bias.chunk(2)
                out |= {f"{p}self_attn.o_proj.bias": block.attn.proj.bias,
                        f"{p}mlp.gate_proj.bias": gate_b, f"{p}mlp.up_proj.bias": up_b,
                        f"{p}mlp.down_proj.bias": block.mlp.down.bias}
        return out

    def fields_from_hf(self, c: dict[str, Any]) -> dict[str, Any]:
        """The LANTERNConfig values of a config.json, which subclasses amend."""
        if c.get("hidden_act", "silu") != "silu":
            raise LanternError(f"hidden_act {c['hidden_act']!r} cannot be imported; silu (SwiGLU) can")
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise LanternError(f"rope scaling {rope.get('rope_type', rope.get('type'))!r} cannot be "
                               "imported; only plain RoPE (rope_type default) can")
        heads = c["num_attention_heads"]
        if c.get("head_dim") not in (None, c["hidden_size"] // heads):
            raise LanternError(f"head_dim {c['head_dim']} is not hidden_size / num_attention_heads; "
                               "LANTERN needs it to be")
        return dict(
            vocab_size=c["vocab_size"], context_length=c.get("max_position_embeddings", 2048),
            hidden_size=c["hidden_size"], num_heads=heads,
            num_kv_heads=c.get("num_key_value_heads") or heads, num_blocks=c["num_hidden_layers"],
            mlp_hidden_size=c["intermediate_size"], mlp="swiglu", norm="rmsnorm", position="rope",
            rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
            norm_eps=float(c.get("rms_norm_eps", 1e-6)),
            bias=bool(c.get("attention_bias") or c.get("mlp_bias")),
            tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        )

    def config_from_hf(self, c: dict[str, Any]) -> LANTERNConfig:
        return LANTERNConfig(**self.fields_from_hf(c))

    def state_from_hf(self, weights: dict[str, torch.Tensor], cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
        def get(name: str, like: int | None = None) -> torch.Tensor:
            if name in weights:
                return weights[name]
            if like is not None:  # an absent bias is a zero bias
                return torch.zeros(like)
            raise LanternError(f"the weights lack {name}")

        out = {"embed_tokens.weight": get("model.embed_tokens.weight"),
               "transformer.norm.weight": get("model.norm.weight")}
        out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else get("lm_head.weight")
        widths = [cfg.num_heads * cfg.head_dim] + [cfg.kv_heads * cfg.head_dim] * 2
        for i in range(cfg.num_blocks):
            p, q = f"model.layers.{i}.", f"transformer.blocks.{i}."
            a = p + "self_attn."
            out[q + "attn.qkv.weight"] = torch.cat([get(a + f"{n}_proj.weight") for n in "qkv"])
            out[q + "attn.proj.weight"] = get(a + "o_proj.weight")
            out[q + "mlp.up.weight"] = torch.cat([get(p + "mlp.gate_proj.weight"),
                                                  get(p + "mlp.up_proj.weight")])
            out[q + "mlp.down.weight"] = get(p + "mlp.down_proj.weight")
            out[q + "attn_norm.weight"] = get(p + "input_layernorm.weight")
            out[q + "mlp_norm.weight"] = get(p + "post_attention_layernorm.weight")
            if cfg.bias or cfg.qkv_bias:
                out[q + "attn.qkv.bias"] = torch.cat(
                    [get(a + f"{n}_proj.bias", width) for n, width in zip("qkv", widths, strict=True)])
            if cfg.bias:
                out[q + "attn.proj.bias"] = get(a + "o_proj.bias", cfg.hidden_size)
                out[q + "mlp.up.bias"] = torch.cat([get(p + "mlp.gate_proj.bias", cfg.ffn_size),
                                                    get(p + "mlp.up_proj.bias", cfg.ffn_size)])
                out[q + "mlp.down.bias"] = get(p + "mlp.down_proj.bias", cfg.hidden_size)
        return out

    # --- GGUF ---------------------------------------------------------------------------------

    def to_gguf_rows(self, w: np.ndarray, heads: int) -> np.ndarray:
        """Query/key rows in the order this llama.cpp graph rotates them."""
        return rope_permute(w, heads)

    def from_gguf_rows(self, w: torch.Tensor, heads: int) -> torch.Tensor:
        """Query/key rows of the file back in LANTERN's rotate-half order."""
        return rope_unpermute(w, heads)

    def gguf_tensors(self, model, plan: ExportPlan) -> dict[str, np.ndarray]:
        cfg = model.config
        heads = {"self_attn.q_proj": cfg.num_heads, "self_attn.k_proj": cfg.kv_heads}
        out = {}
        for name, t in self.hf_state_dict(model, plan).items():
            w = float32_array(t)
            if name == "model.embed_tokens.weight":
                out["token_embd.weight"] = w
            elif name == "model.norm.weight":
                out["output_norm.weight"] = w
            elif name == "lm_head.weight":
                out["output.weight"] = w
            else:
                _, _, layer, rest = name.split(".", 3)
                module, kind = rest.rsplit(".", 1)
                if module in heads:
                    w = self.to_gguf_rows(w, heads[module])
                out[f"blk.{layer}.{GGUF_NAMES[module]}.{kind}"] = w
        return out

    def add_gguf_hyperparameters(self, writer, model, plan: ExportPlan) -> None:
        cfg = model.config
        writer.add_context_length(cfg.context_length)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(plan.num_layers)
        writer.add_feed_forward_length(cfg.ffn_size)
        writer.add_head_count(cfg.num_heads)
        writer.add_head_count_kv(cfg.kv_heads)
        writer.add_layer_norm_rms_eps(norm_eps(model))
        writer.add_rope_freq_base(float(cfg.rope_theta))
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_vocab_size(cfg.vocab_size)

    def config_from_gguf(self, fields: dict[str, Any], names: set[str], vocab_size: int) -> LANTERNConfig:
        key = self.key
        heads = int(required(fields, key("attention.head_count")))
        width = int(required(fields, key("embedding_length")))
        kv_heads = fields.get(key("attention.head_count_kv"), heads)
        if isinstance(kv_heads, list):
            raise LanternError("per-layer key/value head counts cannot be imported")
        if fields.get(key("expert_count")):
            raise LanternError(f"mixture-of-experts layers ({key('expert_count')}) cannot be imported")
        scaling = fields.get(key("rope.scaling.type"))
        if scaling not in (None, "none"):
            raise LanternError(f"RoPE scaling {scaling!r} cannot be imported; only plain RoPE can")
        head_dim = width // heads
        for k in (key("rope.dimension_count"), key("attention.key_length"), key("attention.value_length")):
            if fields.get(k) not in (None, head_dim):
                raise LanternError(f"{k} is {fields[k]}, not the head size {head_dim} (width / heads); "
                                   "LANTERN rotates and attends over whole heads")
        biases = {name.split(".")[-2] for name in names if name.endswith(".bias")}
        bias = bool(biases - {"attn_q", "attn_k", "attn_v"})
        return LANTERNConfig(
            vocab_size=vocab_size, context_length=int(required(fields, key("context_length"))),
            hidden_size=width, num_heads=heads, num_kv_heads=None if kv_heads == heads else int(kv_heads),
            num_blocks=int(required(fields, key("block_count"))),
            mlp_hidden_size=int(required(fields, key("feed_forward_length"))),
            mlp="swiglu", norm="rmsnorm", position="rope",
            rope_theta=float32_value(fields.get(key("rope.freq_base"), 10000.0)),
            norm_eps=float32_value(required(fields, key("attention.layer_norm_rms_epsilon"))),
            bias=bias, qkv_bias=bool(biases) and not bias, tie_embeddings="output.weight" not in names,
        )

    def state_from_gguf(self, take: Take, cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
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
                    parts.append(w if heads[n] is None else self.from_gguf_rows(w, heads[n]))
                return torch.cat(parts)

            out[q + "attn.qkv.weight"] = qkv("weight")
            out[q + "attn.proj.weight"] = take(p + "attn_output.weight")
            out[q + "mlp.up.weight"] = torch.cat([take(p + "ffn_gate.weight"), take(p + "ffn_up.weight")])
            out[q + "mlp.down.weight"] = take(p + "ffn_down.weight")
            out[q + "attn_norm.weight"] = take(p + "attn_norm.weight")
            out[q + "mlp_norm.weight"] = take(p + "ffn_norm.weight")
            if cfg.bias or cfg.qkv_bias:
                out[q + "attn.qkv.bias"] = qkv("bias")
            if cfg.bias:
                out[q + "attn.proj.bias"] = take(p + "attn_output.bias", cfg.hidden_size)
                out[q + "mlp.up.bias"] = torch.cat([take(p + "ffn_gate.bias", cfg.ffn_size),
                                                    take(p + "ffn_up.bias", cfg.ffn_size)])
                out[q + "mlp.down.bias"] = take(p + "ffn_down.bias", cfg.hidden_size)
        return out


@register
class Mistral(Llama):
    """Llama with a sliding window; no biases. llama.cpp's `llama` graph has no window."""

    name = "mistral"
    settings = "position rope + norm rmsnorm + mlp swiglu + attention_window W, no bias (Mistral)"
    hf_model_type = "mistral"
    gguf_name = None

    def matches(self, config: LANTERNConfig) -> bool:
        return is_llama_family(config) and effective_window(config) is not None

    def refusal(self, config: LANTERNConfig) -> str | None:
        if config.bias or config.qkv_bias:
            return (f"bias terms with a sliding window (attention_window {config.attention_window}) "
                    "have no standard equivalent (Mistral has no biases); bias false, or no window, "
                    "exports")
        return None

    def gguf_refusal(self, config: LANTERNConfig) -> str | None:
        return (f"a sliding window (attention_window {config.attention_window}) cannot run in "
                "llama.cpp's llama architecture; export it with --format hf (Mistral), or train "
                "with no window")

    def hf_config(self, model, plan: ExportPlan, tokenizer: Tokenizer) -> Any:
        from transformers import MistralConfig

        return MistralConfig(sliding_window=model.config.attention_window,
                             **self.hf_values(model, plan, tokenizer))

    def fields_from_hf(self, c: dict[str, Any]) -> dict[str, Any]:
        fields = super().fields_from_hf(c)
        window = c.get("sliding_window")
        limits = window is not None and 0 < window < fields["context_length"]
        return fields | dict(attention_window=window if limits else None)
