"""`lantern convert MODEL --output RUN`: a GGUF file, known name or transformers directory as a
LANTERN run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="write a GGUF file, known model name or transformers directory as a LANTERN run",
        description="Import a pretrained model (a .gguf file: llama or gpt2, tensors F32, F16, BF16, "
        "Q8_0, Q4_0 or Q4_1, dequantized to float32; a known name, see `lantern pull --list`; or a "
        "transformers Llama/Mistral/GPT-2 directory) and write it as a run directory: "
        "final_model.pt, config.json, tokenizer.json, model.safetensors.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="FILE.gguf, a known model name, or a transformers directory")
    p.add_argument("--output", required=True, help="the run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from lantern.pretrained.convert import convert

    model, tokenizer = convert(args.model, Path(args.output), args.overwrite)
    cfg = model.config
    print(f"wrote {args.output} ({cfg.num_blocks} layers, width {cfg.hidden_size}, "
          f"{model.num_parameters():,} parameters, vocabulary {tokenizer.vocab_size})", file=sys.stderr)
    return 0
