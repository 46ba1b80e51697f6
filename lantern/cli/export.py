"""`lantern export RUN --format hf|gguf --output PATH`: the model in transformers or llama.cpp form."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lantern.errors import LanternError
from lantern.export.gguf_export import OUTTYPES, check_outtype


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to a transformers directory or a GGUF file (llama.cpp)",
        description="Write a run's model as a transformers directory (Llama, Mistral or GPT-2, "
        "with its tokenizer and chat template) or as one GGUF file for llama.cpp. Recursive "
        "blocks are unrolled into layers; a feature with no exact standard equivalent is refused.",
    )
    p.add_argument("source", metavar="RUN", help="a run directory or .pt checkpoint")
    p.add_argument("--format", required=True, choices=("hf", "gguf"), help="what to write")
    p.add_argument("--output", required=True, help="directory (hf) or FILE.gguf (gguf)")
    p.add_argument("--outtype", default=None, metavar="TYPE",
                   help=f"GGUF tensor type: {', '.join(OUTTYPES)} [f16]")
    p.add_argument("--depth", type=int, default=None,
                   help="recursion steps per block to unroll [the model's own]")
    p.add_argument("--ema", action="store_true", help="export the EMA weights of the checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from lantern.export.architecture import plan_export
    from lantern.export.output import check_output
    from lantern.export.source import load_for_export

    output = Path(args.output)
    if args.format == "hf" and args.outtype is not None:
        raise LanternError("--outtype is for --format gguf; a transformers export keeps float32")
    outtype = (args.outtype or "f16").lower()
    if args.format == "gguf":
        if output.suffix != ".gguf":
            raise LanternError(f"--output for --format gguf is a .gguf file (got {output})")
        if outtype not in OUTTYPES:
            raise LanternError(f"unknown --outtype {args.outtype!r}; choose one of: {', '.join(OUTTYPES)}")
    check_output(output, args.overwrite, Path(args.source), directory=args.format == "hf")
    model, tokenizer, data = load_for_export(args.source, args.ema)
    training = {"steps_trained": data.get("step"), "val_loss": data.get("val_loss")}
    plan = plan_export(model.config, args.depth, args.format)  # refuse before any work
    if args.format == "gguf":
        from lantern.export.gguf_export import export_gguf

        check_outtype(outtype, model.config)
        source = Path(args.source).resolve()
        name = source.name if source.is_dir() else source.parent.name
        export_gguf(model, tokenizer, output, outtype, args.depth, name=name, training=training)
    else:
        from lantern.export.hf_export import export_hf

        export_hf(model, tokenizer, output, args.depth, training=training)
    kind = f"GGUF {outtype}" if args.format == "gguf" else "transformers"
    print(f"wrote {output} ({kind}, {plan.arch.name}, {plan.num_layers} layers at depth {plan.depth})",
          file=sys.stderr)
    return 0
