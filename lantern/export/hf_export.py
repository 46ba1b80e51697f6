"""A LANTERN model as a `transformers` directory: Llama, Mistral or GPT-2, same function.

The weights are renamed and reshaped here (one function per architecture); `transformers`
itself builds the model from the config and writes the directory, so what is written is
exactly what `from_pretrained` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lantern.errors import LanternError
from lantern.export.architecture import GELU_ACTIVATION, ExportPlan, plan_export
from lantern.export.hf_tokenizer import save_hf_tokenizer
from lantern.export.output import write_directory
from lantern.tokenizers import Tokenizer


def norm_eps(model) -> float:
    return float(model.transformer.norm.eps)


def split_qkv(model, block: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of the query, key and value projections of one block."""
    cfg = model.config
    attn = model.transformer.blocks[block].attn
    widths = [cfg.num_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim]
    weights = attn.qkv.weight.detach().split(widths)
    biases = attn.qkv.bias.detach().split(widths) if attn.qkv.bias is not None else [None] * 3
    return list(zip(weights, biases, strict=True))


def token_ids(tokenizer: Tokenizer) -> dict[str, int | None]:
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id}


def llama_config(model, plan: ExportPlan, tokenizer: Tokenizer):
    from transformers import LlamaConfig, MistralConfig

    cfg = model.config
    values: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_size,
        num_hidden_layers=plan.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.context_length, rms_norm_eps=norm_eps(model),
        tie_word_embeddings=cfg.tie_embeddings, attention_dropout=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        **token_ids(tokenizer),
    )
    if plan.arch == "mistral":
        return MistralConfig(sliding_window=cfg.attention_window, **values)
    return LlamaConfig(attention_bias=cfg.bias, mlp_bias=cfg.bias, **values)


def llama_state_dict(model, plan: ExportPlan) -> dict[str, torch.Tensor]:
    """LANTERN's fused qkv and gate|value projections split into Llama's separate ones.

    Both use the rotate-half RoPE layout, so queries and keys need no permutation."""
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


def gpt2_config(model, plan: ExportPlan, tokenizer: Tokenizer):
    from transformers import GPT2Config

    cfg = model.config
    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.hidden_size,
        n_layer=plan.num_layers, n_head=cfg.num_heads, n_inner=cfg.ffn_size,
        activation_function=GELU_ACTIVATION, layer_norm_epsilon=norm_eps(model),
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=cfg.tie_embeddings, **token_ids(tokenizer),
    )


def expand_kv(w: torch.Tensor, model) -> torch.Tensor:
    """Grouped-query keys/values repeated to one head per query head (GPT-2 has no GQA)."""
    cfg = model.config
    heads = w.reshape(cfg.kv_heads, cfg.head_dim, *w.shape[1:])
    return heads.repeat_interleave(cfg.num_heads // cfg.kv_heads, dim=0).reshape(-1, *w.shape[1:])


def gpt2_parts(model, block: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(weight (out, in), bias) of every GPT-2 tensor of one block; absent biases are zeros,
    which is exactly what a layer without bias computes."""
    b = model.transformer.blocks[block]

    def with_bias(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return weight.detach(), (bias.detach() if bias is not None
                                 else torch.zeros(weight.shape[0], dtype=weight.dtype))

    (q, qb), (k, kb), (v, vb) = [with_bias(w, bias) for w, bias in split_qkv(model, block)]
    qkv = torch.cat([q, expand_kv(k, model), expand_kv(v, model)])
    qkv_bias = torch.cat([qb, expand_kv(kb, model), expand_kv(vb, model)])
    return {
        "ln_1": with_bias(b.attn_norm.weight, b.attn_norm.bias),
        "attn.c_attn": (qkv, qkv_bias),
        "attn.c_proj": with_bias(b.attn.proj.weight, b.attn.proj.bias),
        "ln_2": with_bias(b.mlp_norm.weight, b.mlp_norm.bias),
        "mlp.c_fc": with_bias(b.mlp.up.weight, b.mlp.up.bias),
        "mlp.c_proj": with_bias(b.mlp.down.weight, b.mlp.down.bias),
    }


def positions_table(model) -> torch.Tensor:
    """The learned table, or the fixed sinusoidal one, as a (context, hidden) tensor."""
    return model.positions.table.detach()


def gpt2_state_dict(model, plan: ExportPlan) -> dict[str, torch.Tensor]:
    """GPT-2 names; its Conv1D layers store weights as (in, out), so linear weights transpose."""
    norm = model.transformer.norm
    out = {"transformer.wte.weight": model.embed_tokens.weight,
           "transformer.wpe.weight": positions_table(model),
           "transformer.ln_f.weight": norm.weight,
           "transformer.ln_f.bias": norm.bias if norm.bias is not None else torch.zeros_like(norm.weight)}
    if not model.config.tie_embeddings:
        out["lm_head.weight"] = model.lm_head.weight
    for i, b in enumerate(plan.layers):
        for name, (w, bias) in gpt2_parts(model, b).items():
            conv = name != "ln_1" and name != "ln_2"
            out[f"transformer.h.{i}.{name}.weight"] = w.t() if conv else w
            out[f"transformer.h.{i}.{name}.bias"] = bias
    return out


def build_hf_model(model, plan: ExportPlan, tokenizer: Tokenizer):
    """The `transformers` model holding `model`'s weights (fp32, eval mode)."""
    from transformers import AutoModelForCausalLM

    if plan.arch == "gpt2":
        config, weights = gpt2_config(model, plan, tokenizer), gpt2_state_dict(model, plan)
    else:
        config, weights = llama_config(model, plan, tokenizer), llama_state_dict(model, plan)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    weights = {name: t.detach().float().contiguous().clone() for name, t in weights.items()}
    missing, unexpected = hf.load_state_dict(weights, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise LanternError(f"internal export mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    hf.tie_weights()
    return hf.eval()


def export_hf(model, tokenizer: Tokenizer, output: Path, depth: int | None = None,
              training: dict[str, Any] | None = None) -> ExportPlan:
    """Write `output/` (config, weights, tokenizer, chat template); returns the export plan.
    `training` (steps_trained, val_loss) is kept in config.json for `lantern info`."""
    from lantern.export.describe import HF_TRAINING

    plan = plan_export(model.config, depth, "hf")
    hf = build_hf_model(model, plan, tokenizer)
    facts = {k: v for k, v in (training or {}).items() if v is not None}
    if facts:
        setattr(hf.config, HF_TRAINING, facts)

    def fill(directory: Path) -> None:
        hf.save_pretrained(str(directory))
        save_hf_tokenizer(tokenizer, directory)

    write_directory(output, fill)
    return plan
