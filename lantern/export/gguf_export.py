"""A LANTERN model as one GGUF file for llama.cpp.

Written with the `gguf` package, following llama.cpp's own converter: the export plan's
architecture (`arches`) names the graph, writes its hyper-parameters and gives the tensors in
(out, in) shape under llama.cpp's names; norms and biases are kept F32, and the tokenizer is
stored whole (tokens, types, merges, special ids, chat template).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lantern.chat_template import JINJA_TEMPLATE
from lantern.errors import LanternError
from lantern.export.architecture import ExportPlan, plan_export
from lantern.export.hf_tokenizer import char_vocabulary, special_tokens
from lantern.export.output import write_file
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter, Tokenizer
from lantern.tokenizers.gguf_vocab import pre_tokenizer_name

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
SPM_SPACE = "\u2581"  # SentencePiece's visible space: llama.cpp's SPM vocabularies store " " as this


def check_outtype(outtype: str, config) -> None:
    """Refuse an unknown type, or a block-quantized type on rows it cannot split."""
    if outtype not in OUTTYPES:
        raise LanternError(f"unknown --outtype {outtype!r}; choose one of: {', '.join(OUTTYPES)}")
    if outtype in ("q8_0", "q4_0"):
        for name, width in (("hidden_size", config.hidden_size), ("mlp_hidden_size", config.ffn_size)):
            if width % 32:
                raise LanternError(
                    f"--outtype {outtype} quantizes rows in blocks of 32 values, but {name} is "
                    f"{width}; use f32, f16 or bf16 for this model"
                )


def encode_tensor(name: str, w: np.ndarray, outtype: str):
    """(array, raw dtype or None) of one tensor at `outtype`; 1-D tensors and the position
    table stay F32, as in llama.cpp's converter."""
    import gguf

    q = gguf.GGMLQuantizationType
    if w.ndim < 2 or outtype == "f32" or name == "position_embd.weight":
        return w.astype(np.float32), None
    if outtype == "f16":
        return w.astype(np.float16), None
    kind = {"bf16": q.BF16, "q8_0": q.Q8_0, "q4_0": q.Q4_0}[outtype]
    return gguf.quants.quantize(w.astype(np.float32), kind), kind


def file_type(outtype: str) -> int:
    import gguf

    t = gguf.LlamaFileType
    return {"f32": t.ALL_F32, "f16": t.MOSTLY_F16, "bf16": t.MOSTLY_BF16, "q8_0": t.MOSTLY_Q8_0,
            "q4_0": t.MOSTLY_Q4_0}[outtype]


def add_vocabulary(writer, tokenizer: Tokenizer) -> None:
    """Character vocabularies as a SentencePiece-style ("llama") vocabulary with byte tokens;
    byte-level BPE as a "gpt2" vocabulary with its merges. Special tokens are control tokens:
    parsed in prompts, never shown in output (LANTERN's output skips them too)."""
    import gguf

    types = gguf.TokenType
    specials = set(special_tokens(tokenizer))
    if isinstance(tokenizer, CharTokenizer):
        tokens, _, fallback = char_vocabulary(tokenizer)
        if not fallback:
            raise LanternError(
                "llama.cpp needs byte fallback for a character vocabulary, and this one has none; "
                "re-train the tokenizer (byte fallback is the default) or export with --format hf"
            )
        if SPM_SPACE in tokens:
            raise LanternError(f"the vocabulary holds {SPM_SPACE!r}, which llama.cpp reserves for space")
        kinds = [types.CONTROL if t in specials else types.BYTE if i >= len(tokens) - 256
                 else types.NORMAL for i, t in enumerate(tokens)]
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list([t.replace(" ", SPM_SPACE) for t in tokens])
        writer.add_token_scores([0.0] * len(tokens))
        writer.add_add_space_prefix(False)
    elif isinstance(tokenizer, HFTokenizerAdapter) and tokenizer.kind == "bpe":
        data = json.loads(tokenizer.to_json())
        vocab = {**data["model"]["vocab"], **{t["content"]: t["id"] for t in data["added_tokens"]}}
        tokens = [""] * tokenizer.vocab_size
        for token, i in vocab.items():
            tokens[i] = token
        merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
        kinds = [types.CONTROL if t in specials else types.NORMAL for t in tokens]
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer.hf))
        writer.add_token_list(tokens)
        writer.add_token_merges(merges)
    else:
        raise LanternError(
            f"llama.cpp has no exact equivalent of a {tokenizer.kind} tokenizer; char (with byte "
            "fallback) and BPE tokenizers export to GGUF, and --format hf takes this one"
        )
    writer.add_token_types([int(k) for k in kinds])
    for role, token_id in (("bos", tokenizer.bos_id), ("eos", tokenizer.eos_id),
                           ("eot", tokenizer.end_of_turn_id), ("pad", tokenizer.pad_id),
                           ("unk", tokenizer.token_to_id("<unk>"))):
        if token_id is not None:
            getattr(writer, f"add_{role}_token_id")(token_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(tokenizer.chat_template or JINJA_TEMPLATE)  # an imported model's own


def export_gguf(model, tokenizer: Tokenizer, output: Path, outtype: str = "f16",
                depth: int | None = None, name: str = "lantern",
                training: dict[str, Any] | None = None) -> ExportPlan:
    """Write `output` (a .gguf file) atomically; returns the export plan. `training`
    (steps_trained, val_loss) is kept as metadata llama.cpp ignores and `lantern info` shows."""
    import gguf

    from lantern.export.describe import GGUF_STEP, GGUF_VAL_LOSS

    check_outtype(outtype, model.config)
    plan = plan_export(model.config, depth, "gguf")
    tensors = plan.arch.gguf_tensors(model, plan)

    def fill(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), plan.arch.gguf_name)
        writer.add_name(name)
        writer.add_file_type(file_type(outtype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        plan.arch.add_gguf_hyperparameters(writer, model, plan)
        add_vocabulary(writer, tokenizer)
        facts = training or {}
        if facts.get("steps_trained") is not None:
            writer.add_uint64(GGUF_STEP, int(facts["steps_trained"]))
        if facts.get("val_loss") is not None:
            writer.add_float32(GGUF_VAL_LOSS, float(facts["val_loss"]))
        for tensor_name, w in tensors.items():
            data, raw = encode_tensor(tensor_name, w, outtype)
            writer.add_tensor(tensor_name, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    write_file(output, fill)
    return plan
