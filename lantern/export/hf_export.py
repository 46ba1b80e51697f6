"""A LANTERN model as a `transformers` directory computing the same function.

The export plan's architecture (`arches`) gives the config and renames and reshapes the
weights; `transformers` itself builds the model from the config and writes the directory, so
what is written is exactly what `from_pretrained` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lantern.errors import LanternError
from lantern.export.architecture import ExportPlan, plan_export
from lantern.export.hf_tokenizer import save_hf_tokenizer
from lantern.export.output import write_directory
from lantern.tokenizers import Tokenizer


def build_hf_model(model, plan: ExportPlan, tokenizer: Tokenizer):
    """The `transformers` model holding `model`'s weights (fp32, eval mode)."""
    from transformers import AutoModelForCausalLM

    config = plan.arch.hf_config(model, plan, tokenizer)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    weights = {name: t.detach().float().contiguous().clone()
               for name, t in plan.arch.hf_state_dict(model, plan).items()}
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
