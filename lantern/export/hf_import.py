"""A local `transformers` Llama, Mistral or GPT-2 directory as a LANTERN model + tokenizer.

The inverse of `hf_export`: each layer becomes one LANTERN block (steps_per_block 1), so a
LANTERN export at any depth comes back as the same function. Anything LANTERN cannot compute
exactly is refused, naming the setting; the norm epsilon travels into the config (`norm_eps`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.architecture import GELU_ACTIVATION
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter, Tokenizer

SUPPORTED = ("llama", "mistral", "gpt2")
TANH_GELUS = (GELU_ACTIVATION, "gelu_new", "gelu_python_tanh", "gelu_fast")


def warn(message: str) -> None:
    print(f"lantern: warning: {message}", file=sys.stderr)


def read_config(directory: Path) -> dict[str, Any]:
    file = directory / "config.json"
    if not file.is_file():
        raise LanternError(f"{directory} is not a transformers model directory (no config.json)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise LanternError(f"{file} is not valid JSON") from None
    if not isinstance(config, dict) or config.get("model_type") not in SUPPORTED:
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise LanternError(f"model_type {kind!r} cannot be imported; supported: {', '.join(SUPPORTED)}")
    return config


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the directory's safetensors files (or its pytorch_model.bin, read safely)."""
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if files:
        weights: dict[str, torch.Tensor] = {}
        for file in files:
            weights |= load_file(str(file))
        return weights
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise LanternError(f"{directory} holds no weights (*.safetensors or pytorch_model.bin)")


def llama_config(c: dict[str, Any]) -> LANTERNConfig:
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
    window = c.get("sliding_window") if c["model_type"] == "mistral" else None
    context = c.get("max_position_embeddings", 2048)
    return LANTERNConfig(
        vocab_size=c["vocab_size"], context_length=context, hidden_size=c["hidden_size"],
        num_heads=heads, num_kv_heads=c.get("num_key_value_heads") or heads,
        num_blocks=c["num_hidden_layers"], mlp_hidden_size=c["intermediate_size"], mlp="swiglu",
        norm="rmsnorm", position="rope",
        rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
        norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        bias=bool(c.get("attention_bias") or c.get("mlp_bias")),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        attention_window=window if window and window < context else None,
    )


def gpt2_config(c: dict[str, Any]) -> LANTERNConfig:
    act = c.get("activation_function", "gelu_new")
    if act == "gelu":
        warn("activation gelu (exact) is imported as LANTERN's tanh GELU; outputs differ slightly")
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


def llama_weights(w: dict[str, torch.Tensor], cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
    def get(name: str, like: int | None = None) -> torch.Tensor:
        if name in w:
            return w[name]
        if like is not None:  # an absent bias is a zero bias
            return torch.zeros(like)
        raise LanternError(f"the weights lack {name}")

    out = {"embed_tokens.weight": get("model.embed_tokens.weight"),
           "transformer.norm.weight": get("model.norm.weight")}
    out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else get("lm_head.weight")
    for i in range(cfg.num_blocks):
        p, q = f"model.layers.{i}.", f"transformer.blocks.{i}."
        a = p + "self_attn."
        out[q + "attn.qkv.weight"] = torch.cat([get(a + f"{n}_proj.weight") for n in "qkv"])
        out[q + "attn.proj.weight"] = get(a + "o_proj.weight")
        out[q + "mlp.up.weight"] = torch.cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")])
        out[q + "mlp.down.weight"] = get(p + "mlp.down_proj.weight")
        out[q + "attn_norm.weight"] = get(p + "input_layernorm.weight")
        out[q + "mlp_norm.weight"] = get(p + "post_attention_layernorm.weight")
        if cfg.bias:
            widths = [cfg.num_heads * cfg.head_dim] + [cfg.kv_heads * cfg.head_dim] * 2
            out[q + "attn.qkv.bias"] = torch.cat(
                [get(a + f"{n}_proj.bias", width) for n, width in zip("qkv", widths, strict=True)])
            out[q + "attn.proj.bias"] = get(a + "o_proj.bias", cfg.hidden_size)
            out[q + "mlp.up.bias"] = torch.cat([get(p + "mlp.gate_proj.bias", cfg.ffn_size),
                                                get(p + "mlp.up_proj.bias", cfg.ffn_size)])
            out[q + "mlp.down.bias"] = get(p + "mlp.down_proj.bias", cfg.hidden_size)
    return out


def gpt2_weights(w: dict[str, torch.Tensor], cfg: LANTERNConfig) -> dict[str, torch.Tensor]:
    """GPT-2's Conv1D weights are (in, out): transposed back to linear layers' (out, in)."""
    def get(name: str) -> torch.Tensor:
        for key in (name, name.removeprefix("transformer.")):
            if key in w:
                return w[key]
        raise LanternError(f"the weights lack {name}")

    out = {"embed_tokens.weight": get("transformer.wte.weight"),
           "positions.table": get("transformer.wpe.weight"),
           "transformer.norm.weight": get("transformer.ln_f.weight"),
           "transformer.norm.bias": get("transformer.ln_f.bias")}
    out["lm_head.weight"] = out["embed_tokens.weight"] if cfg.tie_embeddings else get("lm_head.weight")
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
             "ln_2": "mlp_norm", "mlp.c_fc": "mlp.up", "mlp.c_proj": "mlp.down"}
    for i in range(cfg.num_blocks):
        for theirs, ours in names.items():
            weight = get(f"transformer.h.{i}.{theirs}.weight")
            out[f"transformer.blocks.{i}.{ours}.weight"] = weight if theirs.startswith("ln") else weight.t()
            out[f"transformer.blocks.{i}.{ours}.bias"] = get(f"transformer.h.{i}.{theirs}.bias")
    return out


def char_tokenizer(data: dict[str, Any]) -> CharTokenizer | None:
    """The character tokenizer `hf_tokenizer` exported (a BPE with no merges), or None."""
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("merges") or data.get("pre_tokenizer") is not None:
        return None
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    specials = [t["content"] for t in sorted(data.get("added_tokens", []), key=lambda t: t["id"])
                if t.get("special")]
    fallback = bool(model.get("byte_fallback"))
    chars = [t for t in tokens if t not in specials][: len(tokens) - len(specials) - 256 * fallback]
    try:
        tokenizer = CharTokenizer(chars, specials, fallback)
    except (KeyError, LanternError):
        return None
    return tokenizer if tokenizer.tokens == tokens and all(len(c) == 1 for c in chars) else None


def load_tokenizer_dir(directory: Path) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    file = directory / "tokenizer.json"
    if not file.is_file():
        raise LanternError(f"{directory} has no tokenizer.json (a fast tokenizer is needed)")
    text = file.read_text(encoding="utf-8")
    data = json.loads(text)
    char = char_tokenizer(data)
    if char is not None:
        return char
    return HFTokenizerAdapter(HFTokenizer.from_str(text), kind=str(data["model"]["type"]).lower())


def load_hf_checkpoint(directory: str | Path):
    """(LANTERNModel in eval mode, Tokenizer) from a local transformers Llama/Mistral/GPT-2
    directory (config.json, safetensors weights, tokenizer.json)."""
    from lantern.models.lantern_model import LANTERNModel

    directory = Path(directory)
    if not directory.is_dir():
        raise LanternError(f"not a directory: {directory}")
    c = read_config(directory)
    cfg = gpt2_config(c) if c["model_type"] == "gpt2" else llama_config(c)
    tokenizer = load_tokenizer_dir(directory)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise LanternError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model "
                           f"{cfg.vocab_size}; LANTERN needs them equal")
    weights = read_weights(directory)
    convert = gpt2_weights if c["model_type"] == "gpt2" else llama_weights
    state = {k: v.float() for k, v in convert(weights, cfg).items()}
    model = LANTERNModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise LanternError(f"{directory}: weights do not match config.json ({first})") from None
    return model.eval(), tokenizer
