"""`lantern info MODEL`: what a checkpoint holds, without generating anything."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lantern.checkpoint import load_model, model_file


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="describe a checkpoint: config, size, training state",
        description="Show a model's config, parameter count, vocabulary, context, steps "
        "trained, validation loss, file size and weight dtype.",
    )
    p.add_argument("model", help="a .pt checkpoint or a run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(run=run_info)


def model_info(path: str) -> dict[str, Any]:
    file = model_file(path)
    model, tokenizer, data = load_model(file)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in data["model_state_dict"].values()})
    return {
        "file": str(file),
        "file_size_bytes": file.stat().st_size,
        "parameters": model.num_parameters(),
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": tokenizer.kind,
        "context_length": model.config.context_length,
        "steps_trained": data.get("step"),
        "val_loss": data.get("val_loss"),
        "best_val_loss": data.get("best_val_loss"),
        "dtype": ", ".join(dtypes),
        "config": model.config.to_dict(),
    }


def human_size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{num_bytes} B"
        size /= 1024
    return f"{num_bytes} B"


def run_info(args: argparse.Namespace) -> int:
    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    def loss(value: float | None) -> str:
        return "-" if value is None or value == float("inf") else f"{value:.4f}"

    rows = [
        ("file", info["file"]),
        ("file size", human_size(info["file_size_bytes"])),
        ("parameters", f"{info['parameters']:,}"),
        ("vocabulary", f"{info['vocab_size']:,} tokens ({info['tokenizer']})"),
        ("context", f"{info['context_length']} tokens"),
        ("steps trained", "-" if info["steps_trained"] is None else f"{info['steps_trained']:,}"),
        ("validation loss", f"{loss(info['val_loss'])} (best {loss(info['best_val_loss'])})"),
        ("dtype", info["dtype"]),
    ]
    rows += [("config", "")] + [(f"  {key}", str(value)) for key, value in info["config"].items()]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return 0
